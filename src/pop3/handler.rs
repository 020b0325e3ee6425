//! The POP3 session before login (`ngx_mail_pop3_handler.c`'s job): the
//! greeting, then one client command per read event, answered through
//! `s->out` and `ngx_mail_send`.

use mail_core::auth_bits;
use mail_core::pop3::{self, Pop3Session};
use nginx_sys::ngx_connection_t;

use super::conf;
use crate::apply::{self, ClientProtocol};
use crate::bindings::ngx_mail_session_t;
use crate::client;
use crate::nginx::Event;
use crate::session::Session;
use crate::state::ClientDialogue;

pub unsafe extern "C" fn init_session(s: *mut ngx_mail_session_t, _c: *mut ngx_connection_t) {
    // SAFETY: nginx calls init_session with a live session of this server.
    let sess = unsafe { Session::from_raw(s) };
    sess.watch_end();
    sess.set_state(Pop3State::default());
    if conf::conf(sess).auth_methods & (auth_bits::APOP | auth_bits::CRAM_MD5) != 0 {
        if !client::make_salt(sess) || !sess.set_out(&pop3::greeting(sess.salt())) {
            return sess.internal_server_error();
        }
    } else {
        sess.set_out_static(pop3::GREETING);
    }
    client::greet(sess, init_protocol);
}

crate::event_handler!(pub init_protocol => first_command);

fn first_command(sess: Session, rev: Event) {
    client::init_protocol(sess, rev, conf::conf(sess).client_buffer_size, auth_state);
}

/// The pop3 module's per-session state: the authorization state.
#[derive(Default)]
pub struct Pop3State {
    session: Pop3Session,
    /// Commands read so far, for `max_commands`.
    commands: usize,
}

impl ClientProtocol for Pop3State {
    fn handover(&self) -> ClientDialogue {
        ClientDialogue::Pop3
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
        let pscf = conf::conf(sess);
        let cfg = client::config(sess, pscf.auth_methods, pscf.replies()?);
        Some(self.session.step(buf, &cfg))
    }
}

crate::event_handler!(pub auth_state => apply::commands::<Pop3State>);
