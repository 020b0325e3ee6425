//! The SMTP session before the backend (`ngx_mail_smtp_handler.c`'s job):
//! the greeting (after the resolver and any `smtp_greeting_delay`), then one
//! client command per read event, answered through `s->out`.

use mail_core::smtp::{self, Action, Envelope, SmtpSession, Step};
use mail_core::{auth_bits, AuthMethod};
use nginx_sys::{
    ngx_add_timer, ngx_connection_t, ngx_event_t, ngx_handle_read_event, ngx_post_event,
    ngx_posted_events, ngx_str_t,
};

use super::{conf, resolver};
use crate::bindings::ngx_mail_session_t;
use crate::client::{self, Next};
use crate::ffi::{pool_str, shown_rejected, LOG_INFO, NGX_AGAIN, NGX_ERROR};
use crate::mail_log;
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
    let c = sess.connection();
    let sscf = conf::conf(sess);
    let timeout = if sscf.greeting_delay != 0 {
        sscf.greeting_delay
    } else {
        sess.core_conf().timeout
    };
    // SAFETY: c and its events are live.
    unsafe {
        ngx_add_timer((*c).read, timeout);
        if ngx_handle_read_event((*c).read, 0) != 0 {
            return sess.close();
        }
        // what the client sent while we resolved is read now
        if (*(*c).read).ready() != 0 {
            ngx_post_event((*c).read, core::ptr::addr_of_mut!(ngx_posted_events));
        }
        if sscf.greeting_delay != 0 {
            (*(*c).read).handler = Some(invalid_pipelining);
            return;
        }
        (*(*c).read).handler = Some(init_protocol);
    }
    let Some(replies) = sscf.replies() else {
        return sess.internal_server_error();
    };
    sess.set_out_static(&replies.greeting);
    sess.send();
}

/// During `smtp_greeting_delay`: the delay's end sends the banner; a client
/// that talks before it is refused and disconnected.
unsafe extern "C" fn invalid_pipelining(rev: *mut ngx_event_t) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast()) };
    sess.set_action(c"in delay pipelining state");
    if sess.ends_at_shutdown() {
        return;
    }
    let Some(replies) = conf::conf(sess).replies() else {
        return sess.internal_server_error();
    };
    // SAFETY: rev, c and s are live.
    unsafe {
        if (*rev).timedout() != 0 {
            (*rev).set_timedout(0);
            (*rev).handler = Some(init_protocol);
            ngx_add_timer(rev, sess.core_conf().timeout);
            if ngx_handle_read_event(rev, 0) != 0 {
                return sess.close();
            }
            sess.set_out_static(&replies.greeting);
            return sess.send();
        }
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
    let c = sess.connection();
    // SAFETY: c and s->buffer are live; recv writes at most end - last.
    unsafe {
        let b = (*sess.raw()).buffer;
        let Some(recv) = (*c).recv else {
            sess.close();
            return Discard::Gone;
        };
        let n = recv(c, (*b).last, (*b).end.offset_from((*b).last) as usize);
        if n == NGX_ERROR || n == 0 {
            sess.close();
            return Discard::Gone;
        }
        if n == NGX_AGAIN {
            return Discard::Again;
        }
        (*b).last = (*b).last.add(n as usize);
        let read =
            core::slice::from_raw_parts((*b).start, (*b).last.offset_from((*b).start) as usize);
        mail_log!(
            LOG_INFO,
            sess.log(),
            "client was rejected before greeting: \"{}\"",
            shown_rejected(read)
        );
        (*b).pos = (*b).start;
        (*b).last = (*b).start;
        Discard::Dropped
    }
}

pub unsafe extern "C" fn init_protocol(rev: *mut ngx_event_t) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast()) };
    client::init_protocol(rev, conf::conf(sess).client_buffer_size, auth_state);
}

/// The smtp module's per-session state once greeted: the session before
/// the backend. (Until the greeting the slot holds the client-name lookup.)
pub struct SmtpState(pub SmtpSession);

pub unsafe extern "C" fn auth_state(rev: *mut ngx_event_t) {
    client::command_loop(rev, command);
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
    let s = sess.raw();
    let pool = sess.pool();
    // SAFETY: s and its pool are live.
    unsafe {
        let (Some(helo), Some(from), Some(to)) = (
            pool_str(pool, &envelope.helo),
            pool_str(pool, &envelope.from),
            pool_str(pool, &envelope.to),
        ) else {
            return Next::Error;
        };
        (*s).smtp_helo = helo;
        (*s).smtp_from = from;
        (*s).smtp_to = to;
        let empty = ngx_str_t {
            len: 0,
            data: core::ptr::null_mut(),
        };
        (*s).login = empty;
        (*s).passwd = empty;
    }
    Next::Login(Handover::new(AuthMethod::None, client))
}
