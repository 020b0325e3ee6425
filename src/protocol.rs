//! The few places where the shared session, auth and proxy layers need the
//! protocol: a refusal's wording, the upstream login dialogue, and where a
//! session goes back to after a refused login. A new protocol adds a variant
//! here and a module of its own.

use core::ffi::CStr;

use mail_core::imap::{self, ImapSession};
use mail_core::pop3::{self, Pop3Session, UpstreamStep};
use mail_core::smtp::{self, SmtpSession};
use mail_core::AuthMethod;

use crate::bindings::ngx_mail_auth_state_pt;
use crate::ffi::bytes;
use crate::session::Session;

pub enum ProtocolState {
    Pop3(Pop3Session),
    Imap(ImapSession),
    Smtp(SmtpSession),
}

pub enum Dialogue {
    Pop3(pop3::LoginDialogue),
    Imap(imap::LoginDialogue),
    Smtp(smtp::LoginDialogue),
}

impl ProtocolState {
    /// The client's reply when the auth server refuses the login.
    pub fn auth_error_reply(&self, text: &[u8], error_code: Option<&[u8]>) -> Vec<u8> {
        match self {
            ProtocolState::Pop3(_) => pop3::auth_error_reply(text),
            ProtocolState::Imap(s) => s.auth_error_reply(text),
            ProtocolState::Smtp(_) => smtp::auth_error_reply(text, error_code),
        }
    }

    /// Back to the start of the authorization state after a refusal.
    pub fn reset(&mut self) {
        match self {
            ProtocolState::Pop3(p) => p.reset(),
            ProtocolState::Imap(s) => s.reset(),
            ProtocolState::Smtp(s) => s.reset(),
        }
    }

    /// Whether the backend login needs a password the auth server or the
    /// client supplied (POP3 and IMAP always log in with one; SMTP only
    /// with `proxy_smtp_auth`, and finds out then).
    pub fn password_required(&self) -> bool {
        match self {
            ProtocolState::Pop3(_) | ProtocolState::Imap(_) => true,
            ProtocolState::Smtp(_) => false,
        }
    }

    pub fn auth_state(&self) -> ngx_mail_auth_state_pt {
        match self {
            ProtocolState::Pop3(_) => Some(crate::pop3::handler::auth_state),
            ProtocolState::Imap(_) => Some(crate::imap::handler::auth_state),
            ProtocolState::Smtp(_) => Some(crate::smtp::handler::auth_state),
        }
    }

    /// The backend login for what the auth server decided (`s->login`,
    /// `s->passwd`), what the session learned, and how it authenticated.
    pub fn dialogue(&self, sess: Session, method: AuthMethod) -> Dialogue {
        // SAFETY: s is live; login and passwd are empty or pool strings.
        let (login, passwd) = unsafe {
            let s = sess.raw();
            (bytes(&(*s).login), bytes(&(*s).passwd))
        };
        match self {
            ProtocolState::Pop3(_) => Dialogue::Pop3(pop3::LoginDialogue::new(login, passwd)),
            ProtocolState::Imap(s) => {
                Dialogue::Imap(imap::LoginDialogue::new(s.tag(), login, passwd))
            }
            ProtocolState::Smtp(s) => Dialogue::Smtp(smtp::LoginDialogue::new(
                crate::smtp::handler::login(sess, s, method == AuthMethod::None),
            )),
        }
    }
}

impl Dialogue {
    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        match self {
            Dialogue::Pop3(d) => d.on_data(buf, full),
            Dialogue::Imap(d) => d.on_data(buf, full),
            Dialogue::Smtp(d) => d.on_data(buf, full),
        }
    }

    /// The log action of the step just taken.
    pub fn action(&self) -> &'static CStr {
        match self {
            Dialogue::Pop3(d) => d.action(),
            Dialogue::Imap(d) => d.action(),
            Dialogue::Smtp(d) => d.action(),
        }
    }
}
