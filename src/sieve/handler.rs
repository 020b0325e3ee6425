//! The ManageSieve session before login: the capability block as the
//! greeting, replies and SASL challenges through `s->out` and
//! `ngx_mail_send`, and the block again once a STARTTLS handshake is done
//! (RFC 5804 2.2).

use mail_core::auth_bits;
use mail_core::sieve::{self, SieveSession};
use mail_core::{Action, Step};
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
    sess.set_state(SieveState::default());
    let scf = conf::conf(sess);
    if scf.auth_methods & auth_bits::CRAM_MD5 != 0 && !client::make_salt(sess) {
        return sess.internal_server_error();
    }
    let Some(caps) = scf.replies() else {
        return sess.internal_server_error();
    };
    // with `listen ... ssl` the handshake is done: no STARTTLS in the block
    let cfg = client::config(sess, scf.auth_methods, caps);
    sess.set_out_static(sieve::greeting(&cfg));
    client::greet(sess, init_protocol);
}

crate::event_handler!(
    /// The first read, and nginx's call once a STARTTLS handshake is done.
    pub init_protocol => first_command
);

fn first_command(sess: Session, rev: Event) {
    let after_starttls = sess
        .with_state(|state: &mut SieveState| core::mem::take(&mut state.starttls))
        .unwrap_or(false);
    if !after_starttls {
        return client::init_protocol(sess, rev, crate::ffi::page_size(), auth_state);
    }
    sess.set_action(c"in auth state");
    if client::timed_out(rev, sess) {
        return;
    }
    let scf = conf::conf(sess);
    let Some(caps) = scf.replies() else {
        return sess.internal_server_error();
    };
    let cfg = client::config(sess, scf.auth_methods, caps);
    rev.set_handler(auth_state);
    sess.set_out_static(sieve::capability(&cfg));
    // once the block is out, ngx_mail_send runs auth_state for whatever
    // the client sent meanwhile (sieve-connect sends NOOP at once)
    sess.set_blocked(true);
    sess.send();
}

/// The sieve module's per-session state: the non-authenticated state.
#[derive(Default)]
pub struct SieveState {
    session: SieveSession,
    /// STARTTLS was accepted: the handshake's end sends the block again.
    starttls: bool,
    /// Commands read so far, for `max_commands`.
    commands: usize,
}

impl ClientProtocol for SieveState {
    fn handover(&self) -> ClientDialogue {
        ClientDialogue::Sieve
    }

    fn reset(&mut self) {
        self.session.reset();
    }

    fn sasl_refused(&mut self, refusal: mail_core::sasl::Refusal) {
        self.session.sasl_refused(refusal);
    }

    fn too_long(&mut self) -> Action<'static> {
        self.session.too_long()
    }

    fn commands_read(&mut self) -> &mut usize {
        &mut self.commands
    }

    fn step(&mut self, sess: Session, buf: &[u8]) -> Option<Step<'static>> {
        let scf = conf::conf(sess);
        let cfg = client::config(sess, scf.auth_methods, scf.replies()?);
        let step = self.session.step(buf, &cfg);
        if let Step::Done {
            action: Action::StartTls(_),
            ..
        } = step
        {
            self.starttls = true;
        }
        Some(step)
    }
}

crate::event_handler!(pub auth_state => apply::commands::<SieveState>);
