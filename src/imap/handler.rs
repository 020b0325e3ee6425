//! The IMAP session before login (`ngx_mail_imap_handler.c`'s job): the
//! greeting, tagged replies, `+ OK` for synchronizing literals, SASL
//! continuations, through `s->out` and `ngx_mail_send`.

use mail_core::auth_bits;
use mail_core::imap::{self, ImapSession};
use nginx_sys::ngx_connection_t;

use super::conf;
use crate::apply::{self, ClientProtocol};
use crate::bindings::ngx_mail_session_t;
use crate::client;
use crate::nginx::Event;
use crate::session::Session;
use crate::state::{imap_dialogue, ClientDialogue};

pub unsafe extern "C" fn init_session(s: *mut ngx_mail_session_t, _c: *mut ngx_connection_t) {
    // SAFETY: nginx calls init_session with a live session of this server.
    let sess = unsafe { Session::from_raw(s) };
    sess.watch_end();
    sess.set_state(ImapState::default());
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
#[derive(Default)]
pub struct ImapState {
    session: ImapSession,
    /// Commands read so far, for `max_commands`.
    commands: usize,
}

impl ClientProtocol for ImapState {
    fn handover(&self) -> ClientDialogue {
        imap_dialogue(&self.session)
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
        let iscf = conf::conf(sess);
        let cfg = client::config(sess, iscf.auth_methods, iscf.replies()?);
        Some(self.session.step(buf, &cfg))
    }
}

crate::event_handler!(pub auth_state => apply::commands::<ImapState>);
