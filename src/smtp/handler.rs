//! The SMTP session before the backend (`ngx_mail_smtp_handler.c`'s job):
//! the greeting (after the resolver and any `smtp_greeting_delay`), then one
//! client command per read event, answered through `s->out`.

use mail_core::auth_bits;
use mail_core::smtp::SmtpSession;
use nginx_sys::ngx_connection_t;

use super::{conf, resolver};
use crate::apply::{self, ClientProtocol};
use crate::bindings::ngx_mail_session_t;
use crate::client;
use crate::ffi::{shown_rejected, LOG_INFO};
use crate::mail_log;
use crate::nginx::{Event, Io};
use crate::session::Session;
use crate::state::{smtp_dialogue, ClientDialogue};

const INVALID_PIPELINING: &[u8] = b"503 5.5.0 Improper use of SMTP command pipelining\r\n";

pub unsafe extern "C" fn init_session(s: *mut ngx_mail_session_t, _c: *mut ngx_connection_t) {
    // SAFETY: nginx calls init_session with a live session of this server.
    let sess = unsafe { Session::from_raw(s) };
    sess.watch_end();
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
    sess.set_state(SmtpState::default());
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
#[derive(Default)]
pub struct SmtpState {
    session: SmtpSession,
    /// Commands read so far, for `max_commands`.
    commands: usize,
}

impl ClientProtocol for SmtpState {
    fn handover(&self) -> ClientDialogue {
        smtp_dialogue(&self.session)
    }

    fn reset(&mut self) {
        self.session.reset();
    }

    fn sasl_refused(&mut self, refusal: mail_core::sasl::Refusal) {
        self.session.sasl_refused(refusal);
    }

    fn too_long(&mut self) -> mail_core::Action<'static> {
        self.session.too_long()
    }

    fn commands_read(&mut self) -> &mut usize {
        &mut self.commands
    }

    fn step(&mut self, sess: Session, buf: &[u8]) -> Option<mail_core::Step<'static>> {
        let sscf = conf::conf(sess);
        let cfg = client::config(sess, sscf.auth_methods, sscf.replies()?);
        Some(self.session.step(buf, &cfg))
    }
}

crate::event_handler!(pub auth_state => apply::commands::<SmtpState>);
