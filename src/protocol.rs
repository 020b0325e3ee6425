//! The few places where the shared session, auth and proxy layers need the
//! protocol: a refusal's wording, the upstream login dialogue, and where a
//! session goes back to after a refused login. A new protocol adds a variant
//! here and a module of its own.

use mail_core::pop3::{self, LoginDialogue, Pop3Session, UpstreamStep};

use crate::bindings::ngx_mail_auth_state_pt;

pub enum ProtocolState {
    Pop3(Pop3Session),
}

pub enum Dialogue {
    Pop3(LoginDialogue),
}

impl ProtocolState {
    /// The client's reply when the auth server refuses the login.
    pub fn auth_error_reply(&self, text: &[u8], _error_code: Option<&[u8]>) -> Vec<u8> {
        match self {
            ProtocolState::Pop3(_) => pop3::auth_error_reply(text),
        }
    }

    /// Back to the start of the authorization state after a refusal.
    pub fn reset(&mut self) {
        match self {
            ProtocolState::Pop3(p) => p.reset(),
        }
    }

    /// Whether the upstream needs a password even when the client logged in
    /// without one the proxy can reuse.
    pub fn password_required(&self) -> bool {
        match self {
            ProtocolState::Pop3(_) => true,
        }
    }

    pub fn auth_state(&self) -> ngx_mail_auth_state_pt {
        match self {
            ProtocolState::Pop3(_) => Some(crate::pop3::handler::auth_state),
        }
    }

    pub fn dialogue(&self, login: &[u8], passwd: &[u8]) -> Dialogue {
        match self {
            ProtocolState::Pop3(_) => Dialogue::Pop3(LoginDialogue::new(login, passwd)),
        }
    }
}

impl Dialogue {
    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        match self {
            Dialogue::Pop3(d) => d.on_data(buf, full),
        }
    }

    pub fn action(&self) -> &'static core::ffi::CStr {
        match self {
            Dialogue::Pop3(d) => match d.action() {
                "sending user name to upstream" => c"sending user name to upstream",
                "sending password to upstream" => c"sending password to upstream",
                _ => c"reading response from upstream",
            },
        }
    }
}
