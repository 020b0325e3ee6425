//! Doing what a session's step asks, for every protocol: the one place
//! where a [`mail_core::Action`] becomes a reply in `s->out`, a closed
//! session, a TLS handshake or an auth request.

use std::borrow::Cow;

use mail_core::{Action, Step};

use crate::client::{self, Next};
use crate::ffi::{shown_rejected, LOG_INFO};
use crate::mail_log;
use crate::nginx::Event;
use crate::session::{Session, SessionState};
use crate::state::ClientDialogue;

/// What `apply` needs of a protocol's per-session state.
pub trait ClientProtocol: SessionState {
    /// What the backend login and a refusal will need of the dialogue so
    /// far, handed over with a login.
    fn handover(&self) -> ClientDialogue;
    /// The login is in the auth stage's hands: back to the start, so that
    /// a refused client may try again.
    fn reset(&mut self);
    /// The auth server's SASL error challenge went out (a bearer token
    /// login refused with `Auth-Error-SASL`): the next line is the
    /// client's dummy response, answered with `refusal`.
    fn sasl_refused(&mut self, refusal: mail_core::sasl::Refusal);
    /// A command too long for the buffer: the refusal that ends the
    /// session, the state back at the start.
    fn too_long(&mut self) -> Action<'static>;
    /// The session's step over the buffered `buf`, with this server's
    /// configuration; `None` when that is missing.
    fn step(&mut self, sess: Session, buf: &[u8]) -> Option<Step<'static>>;
    /// Commands read so far in this session, for `max_commands`.
    fn commands_read(&mut self) -> &mut usize;
}

/// A protocol's auth-state read event: its commands in the client loop.
pub fn commands<T: ClientProtocol>(sess: Session, rev: Event) {
    // handed back by the auth stage with its error challenge
    if let Some(refusal) = sess.take_state::<mail_core::sasl::Refusal>() {
        let _ = sess.with_state(|state: &mut T| state.sasl_refused(refusal));
    }
    client::command_loop(sess, rev, command::<T>);
}

/// One buffered command: the session's step, applied.
fn command<T: ClientProtocol>(sess: Session, buf: &[u8], state: &mut T) -> Next {
    match state.step(sess, buf) {
        Some(step) => apply(sess, state, buf, step),
        None => Next::Error,
    }
}

/// Applies one step of the auth-state session to the client's `buf`.
///
/// `Incomplete` waits for more, unless the buffer is full: then the
/// command is too long.
///
/// A borrowed reply is `'static`: a constant, or one of the server's
/// prebuilt replies in the cycle's configuration pool, so `s->out` points
/// at it; a reply built for this command is copied into the session pool.
pub fn apply<T: ClientProtocol>(
    sess: Session,
    state: &mut T,
    buf: &[u8],
    step: Step<'static>,
) -> Next {
    let (consumed, action) = match step {
        Step::Done { consumed, action } => (consumed, action),
        // a full buffer without a whole command is logged and dropped, and
        // the protocol's refusal ends the session
        Step::Incomplete if client::command_too_long(sess) => (0, state.too_long()),
        Step::Incomplete => return Next::Wait,
    };
    client::consume(sess, consumed);
    let action = if action.is_command() && too_many_commands(sess, state) {
        // as freenginx: refused before it runs, with the refusal that ends
        // the session
        state.too_long()
    } else {
        action
    };
    let reply = match action {
        Action::Reply(reply) | Action::Continue(reply) => reply,
        Action::Quit(reply) => {
            sess.set_quit();
            reply
        }
        Action::StartTls(reply) => {
            client::start_tls(sess);
            reply
        }
        Action::Invalid {
            reason,
            reply,
            quit,
            counted,
        } => {
            client::invalid(sess, reason, counted);
            if quit {
                sess.set_quit();
            }
            reply
        }
        Action::Rejected { reply } => {
            // stock logs the whole buffer, pipelined commands included
            mail_log!(
                LOG_INFO,
                sess.log(),
                "client was rejected: \"{}\"",
                shown_rejected(buf)
            );
            reply
        }
        Action::Authenticate(creds) => {
            let dialogue = state.handover();
            state.reset();
            return client::authenticate(sess, &creds, dialogue);
        }
        Action::Relay(envelope) => {
            let dialogue = state.handover();
            state.reset();
            return client::relay(sess, &envelope, dialogue);
        }
    };
    match reply {
        Cow::Borrowed(bytes) => sess.set_out_static(bytes),
        Cow::Owned(bytes) => {
            if !sess.set_out(&bytes) {
                return Next::Error;
            }
        }
    }
    Next::Reply
}

/// Counts one command; true (and logged) once the session has read more
/// than `max_commands`.
fn too_many_commands<T: ClientProtocol>(sess: Session, state: &mut T) -> bool {
    let read = state.commands_read();
    *read = read.saturating_add(1);
    let max = crate::proxy::conf::conf(sess).max_commands;
    if usize::try_from(max).is_ok_and(|max| *read <= max) {
        return false;
    }
    mail_log!(LOG_INFO, sess.log(), "client sent too many commands");
    true
}
