//! The SMTP session before the backend (`ngx_mail_smtp_handler.c`'s job):
//! the greeting (after the resolver and any `smtp_greeting_delay`), then one
//! client command per read event, answered through `s->out`.

use mail_core::smtp::{self, Action, Envelope, SmtpSession, Step};
use mail_core::{auth_bits, AuthMethod};
use nginx_sys::ngx_connection_t;

use super::{conf, resolver};
use crate::bindings::ngx_mail_session_t;
use crate::client::{self, Next};
use crate::ffi::{shown_rejected, LOG_INFO};
use crate::mail_log;
use crate::nginx::{Event, Io};
use crate::session::Session;
use crate::state::{smtp_dialogue, ClientDialogue, Handover};

const INVALID_PIPELINING: &[u8] = b"503 5.5.0 Improper use of SMTP command pipelining\r\n";

pub unsafe extern "C" fn init_session(s: *mut ngx_mail_session_t, _c: *mut ngx_connection_t) {
    // SAFETY: nginx calls init_session with a live session of this server.
    let sess = unsafe { Session::from_raw(s) };
    // stock makes the salt on the first AUTH CRAM-MD5; its value is random
    // either way
    if conf::conf(sess).auth_methods & auth_bits::CRAM_MD5 != 0 && !client::make_salt(sess) {
        return sess.internal_server_error();
    }
    resolver::resolve_client(sess, greeting);
}

/// Once the client's name is known: the banner now, or after
/// `smtp_greeting_delay`, refusing a client that talks first.
fn greeting(sess: Session) {
    sess.set_state(SmtpState(SmtpSession::default()));
    let rev = sess.read_event();
    let sscf = conf::conf(sess);
    let timeout = if sscf.greeting_delay != 0 {
        sscf.greeting_delay
    } else {
        sess.core_conf().timeout
    };
    rev.add_timer(timeout);
    if !rev.handle_read() {
        return sess.close();
    }
    // what the client sent while we resolved is read now
    if rev.ready() {
        rev.post();
    }
    if sscf.greeting_delay != 0 {
        rev.set_handler(invalid_pipelining);
        return;
    }
    rev.set_handler(init_protocol);
    let Some(replies) = sscf.replies() else {
        return sess.internal_server_error();
    };
    sess.set_out_static(&replies.greeting);
    sess.send();
}

crate::event_handler!(
    /// During `smtp_greeting_delay`: the delay's end sends the banner; a
    /// client that talks before it is refused and disconnected.
    invalid_pipelining => delay_event
);

fn delay_event(sess: Session, rev: Event) {
    sess.set_action(c"in delay pipelining state");
    if sess.ends_at_shutdown() {
        return;
    }
    let Some(replies) = conf::conf(sess).replies() else {
        return sess.internal_server_error();
    };
    if rev.timedout() {
        rev.set_timedout(false);
        rev.set_handler(init_protocol);
        rev.add_timer(sess.core_conf().timeout);
        if !rev.handle_read() {
            return sess.close();
        }
        sess.set_out_static(&replies.greeting);
        return sess.send();
    }
    if !client::create_buffer(sess, conf::conf(sess).client_buffer_size) {
        return;
    }
    match discard_input(sess) {
        Discard::Gone => return,
        Discard::Again => {
            let _ = client::wait_for_more(sess);
            return;
        }
        Discard::Dropped => {}
    }
    sess.set_out_static(INVALID_PIPELINING);
    sess.set_quit();
    sess.send();
}

enum Discard {
    /// The connection was closed.
    Gone,
    Again,
    /// What the client had sent was logged and dropped.
    Dropped,
}

/// Reads what the client sent and drops it (`ngx_mail_smtp_discard_command`).
fn discard_input(sess: Session) -> Discard {
    let Some(b) = sess.buffer() else {
        sess.close();
        return Discard::Gone;
    };
    match b.read_from(sess.client()) {
        Io::Error | Io::Closed => {
            sess.close();
            return Discard::Gone;
        }
        Io::Again => return Discard::Again,
        Io::Done(_) => {}
    }
    mail_log!(
        LOG_INFO,
        sess.log(),
        "client was rejected before greeting: \"{}\"",
        shown_rejected(b.all())
    );
    b.reset();
    Discard::Dropped
}

crate::event_handler!(pub init_protocol => first_command);

fn first_command(sess: Session, rev: Event) {
    client::init_protocol(sess, rev, conf::conf(sess).client_buffer_size, auth_state);
}

/// The smtp module's per-session state once greeted: the session before
/// the backend. (Until the greeting the slot holds the client-name lookup.)
pub struct SmtpState(pub SmtpSession);

crate::event_handler!(pub auth_state => commands);

fn commands(sess: Session, rev: Event) {
    client::command_loop(sess, rev, command);
}

/// One buffered command before the backend.
fn command(sess: Session, buf: &[u8], state: &mut SmtpState) -> Next {
    let smtp = &mut state.0;
    let sscf = conf::conf(sess);
    let Some(replies) = sscf.replies() else {
        return Next::Error;
    };
    let cfg = client::config(sess, sscf.auth_methods, replies);
    let (consumed, action) = match smtp.step(buf, &cfg) {
        Step::Done { consumed, action } => (consumed, action),
        Step::Incomplete => {
            if client::command_too_long(sess) {
                smtp.reset();
                sess.set_out_static(smtp::INVALID_COMMAND);
                return Next::Reply;
            }
            return Next::Wait;
        }
    };
    client::consume(sess, consumed);
    match action {
        Action::Reply(reply) => sess.set_out_static(reply),
        Action::ReplyOwned(reply) => {
            if !sess.set_out(&reply) {
                return Next::Error;
            }
        }
        Action::Rejected { reply, .. } => {
            // stock logs the whole buffer, pipelined commands included
            mail_log!(
                LOG_INFO,
                sess.log(),
                "client was rejected: \"{}\"",
                shown_rejected(buf)
            );
            sess.set_out_static(reply);
        }
        Action::Quit(reply) => {
            sess.set_out_static(reply);
            sess.set_quit();
        }
        Action::StartTls(reply) => {
            sess.set_out_static(reply);
            client::start_tls(sess);
        }
        Action::Invalid(reason) => {
            client::invalid(sess, reason);
            sess.set_out_static(smtp::INVALID_COMMAND);
        }
        Action::Authenticate(creds) => {
            let client = smtp_dialogue(smtp);
            smtp.reset();
            return client::authenticate(sess, &creds, client);
        }
        Action::Relay(envelope) => {
            let client = smtp_dialogue(smtp);
            smtp.reset();
            return relay(sess, &envelope, client);
        }
    }
    Next::Reply
}

/// `smtp_auth none`: the envelope goes to the auth server with no login or
/// password at all, whatever an earlier AUTH left (CVE-2025-53859).
fn relay(sess: Session, envelope: &Envelope, client: ClientDialogue) -> Next {
    if !sess.set_envelope(&envelope.helo, &envelope.from, &envelope.to) {
        return Next::Error;
    }
    Next::Login(Handover::new(AuthMethod::None, client))
}
