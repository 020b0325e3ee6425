//! The few places where the shared session, auth and proxy layers need the
//! protocol: a refusal's wording, the upstream login dialogue, and where a
//! session goes back to after a refused login. A new protocol adds a variant
//! here and a module of its own.

use core::ffi::CStr;

use mail_core::imap::{self, ImapSession};
use mail_core::pop3::{self, Pop3Session, UpstreamStep};

use crate::bindings::ngx_mail_auth_state_pt;

pub enum ProtocolState {
    Pop3(Pop3Session),
    Imap(ImapSession),
}

pub enum Dialogue {
    Pop3(pop3::LoginDialogue),
    Imap(imap::LoginDialogue),
}

impl ProtocolState {
    /// The client's reply when the auth server refuses the login.
    pub fn auth_error_reply(&self, text: &[u8], _error_code: Option<&[u8]>) -> Vec<u8> {
        match self {
            ProtocolState::Pop3(_) => pop3::auth_error_reply(text),
            ProtocolState::Imap(s) => s.auth_error_reply(text),
        }
    }

    /// Back to the start of the authorization state after a refusal.
    pub fn reset(&mut self) {
        match self {
            ProtocolState::Pop3(p) => p.reset(),
            ProtocolState::Imap(s) => s.reset(),
        }
    }

    /// Whether the backend login needs a password the auth server or the
    /// client supplied (POP3 and IMAP always log in with one).
    pub fn password_required(&self) -> bool {
        match self {
            ProtocolState::Pop3(_) | ProtocolState::Imap(_) => true,
        }
    }

    pub fn auth_state(&self) -> ngx_mail_auth_state_pt {
        match self {
            ProtocolState::Pop3(_) => Some(crate::pop3::handler::auth_state),
            ProtocolState::Imap(_) => Some(crate::imap::handler::auth_state),
        }
    }

    pub fn dialogue(&self, login: &[u8], passwd: &[u8]) -> Dialogue {
        match self {
            ProtocolState::Pop3(_) => Dialogue::Pop3(pop3::LoginDialogue::new(login, passwd)),
            ProtocolState::Imap(s) => {
                Dialogue::Imap(imap::LoginDialogue::new(s.tag(), login, passwd))
            }
        }
    }
}

impl Dialogue {
    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        match self {
            Dialogue::Pop3(d) => d.on_data(buf, full),
            Dialogue::Imap(d) => d.on_data(buf, full),
        }
    }

    /// The log action of the step just taken.
    pub fn action(&self) -> &'static CStr {
        match self {
            Dialogue::Pop3(d) => d.action(),
            Dialogue::Imap(d) => d.action(),
        }
    }
}
