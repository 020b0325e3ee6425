//! The IMAP session before login (`ngx_mail_imap_handler.c`'s job): the
//! greeting, tagged replies, `+ OK` for synchronizing literals, SASL
//! continuations, through `s->out` and `ngx_mail_send`.

use mail_core::auth_bits;
use mail_core::imap::{self, Action, ImapSession, Step};
use nginx_sys::ngx_connection_t;

use super::conf;
use crate::bindings::ngx_mail_session_t;
use crate::client::{self, Next};
use crate::nginx::Event;
use crate::session::Session;
use crate::state::imap_dialogue;

pub unsafe extern "C" fn init_session(s: *mut ngx_mail_session_t, _c: *mut ngx_connection_t) {
    // SAFETY: nginx calls init_session with a live session of this server.
    let sess = unsafe { Session::from_raw(s) };
    sess.set_state(ImapState(ImapSession::default()));
    // stock makes the salt on the first AUTHENTICATE CRAM-MD5; its value is
    // random either way
    if conf::conf(sess).auth_methods & auth_bits::CRAM_MD5 != 0 && !client::make_salt(sess) {
        return sess.internal_server_error();
    }
    sess.set_out_static(imap::GREETING);
    client::greet(sess, init_protocol);
}

crate::event_handler!(pub init_protocol => first_command);

fn first_command(sess: Session, rev: Event) {
    client::init_protocol(sess, rev, conf::conf(sess).client_buffer_size, auth_state);
}

/// The imap module's per-session state: the not-authenticated state.
pub struct ImapState(pub ImapSession);

crate::event_handler!(pub auth_state => commands);

fn commands(sess: Session, rev: Event) {
    client::command_loop(sess, rev, command);
}

/// One buffered command (or literal announcement) of the not-authenticated
/// state.
fn command(sess: Session, buf: &[u8], state: &mut ImapState) -> Next {
    let imap = &mut state.0;
    let iscf = conf::conf(sess);
    let Some(replies) = iscf.replies() else {
        return Next::Error;
    };
    let cfg = client::config(sess, iscf.auth_methods, replies);
    let (consumed, action) = match imap.step(buf, &cfg) {
        Step::Done { consumed, action } => (consumed, action),
        Step::Continue => {
            // the literal's bytes stay buffered; the reply is untagged
            sess.set_out_static(imap::CONTINUE);
            return Next::Reply;
        }
        Step::Incomplete => {
            if client::command_too_long(sess) {
                let reply = [imap.tag_or_star(), b"BAD invalid command\r\n"].concat();
                imap.reset();
                if !sess.set_out(&reply) {
                    return Next::Error;
                }
                return Next::Reply;
            }
            return Next::Wait;
        }
    };
    client::consume(sess, consumed);
    let reply = match action {
        Action::Reply(r) => r,
        Action::Quit(r) => {
            sess.set_quit();
            r
        }
        Action::StartTls(r) => {
            client::start_tls(sess);
            r
        }
        Action::Invalid {
            reason,
            reply,
            quit,
        } => {
            client::invalid(sess, reason);
            if quit {
                sess.set_quit();
            }
            reply
        }
        Action::Authenticate(creds) => {
            let client = imap_dialogue(imap);
            imap.reset();
            return client::authenticate(sess, &creds, client);
        }
    };
    if !sess.set_out(&reply) {
        return Next::Error;
    }
    Next::Reply
}
