//! The backend login dialogues of all three protocols, as nginx keeps them
//! in its proxy module: whoever connects to the backend builds the login,
//! from what the auth server decided (`s->login`, `s->passwd`) and what the
//! protocol stage handed over of the client's dialogue.

use core::ffi::CStr;

use mail_core::upstream::UpstreamStep;
use mail_core::{imap, pop3, smtp, AuthMethod};

use super::conf;
use crate::ffi::bytes;
use crate::session::Session;
use crate::state::{ClientDialogue, Handover};

/// The proxy module's per-session state during the backend login.
pub enum LoginState {
    Pop3(pop3::LoginDialogue),
    Imap(imap::LoginDialogue),
    Smtp(smtp::LoginDialogue),
}

impl LoginState {
    pub fn new(sess: Session, handover: &Handover) -> LoginState {
        // SAFETY: s is live; login and passwd are empty or pool strings.
        let (login, passwd) = unsafe {
            let s = sess.raw();
            (bytes(&(*s).login), bytes(&(*s).passwd))
        };
        match &handover.client {
            ClientDialogue::Pop3 => LoginState::Pop3(pop3::LoginDialogue::new(login, passwd)),
            ClientDialogue::Imap { tag } => {
                LoginState::Imap(imap::LoginDialogue::new(tag, login, passwd))
            }
            ClientDialogue::Smtp { helo, esmtp } => LoginState::Smtp(smtp::LoginDialogue::new(
                smtp_login(sess, helo, *esmtp, handover.method == AuthMethod::None),
            )),
        }
    }

    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        match self {
            LoginState::Pop3(d) => d.on_data(buf, full),
            LoginState::Imap(d) => d.on_data(buf, full),
            LoginState::Smtp(d) => d.on_data(buf, full),
        }
    }

    /// The log action of the step just taken.
    pub fn action(&self) -> &'static CStr {
        match self {
            LoginState::Pop3(d) => d.action(),
            LoginState::Imap(d) => d.action(),
            LoginState::Smtp(d) => d.action(),
        }
    }
}

/// What the SMTP backend dialogue needs: our name, the proxy switches, the
/// client's address, name and greeting, and the login or (`relay`, for
/// `smtp_auth none`) the envelope.
fn smtp_login(sess: Session, helo: &[u8], esmtp: bool, relay: bool) -> smtp::Login {
    let s = sess.raw();
    let c = sess.connection();
    let pcf = conf::conf(sess);
    // SAFETY: s, c and the strings read are live pool or config strings.
    unsafe {
        smtp::Login {
            server_name: bytes(&sess.core_conf().server_name).to_vec(),
            xclient: pcf.xclient != 0,
            smtp_auth: pcf.smtp_auth != 0,
            client_addr: bytes(&(*c).addr_text).to_vec(),
            client_ipv6: u32::from((*(*c).sockaddr).sa_family) == nginx_sys::AF_INET6,
            client_host: bytes(&(*s).host).to_vec(),
            helo: helo.to_vec(),
            esmtp,
            login: bytes(&(*s).login).to_vec(),
            passwd: (!(*s).passwd.data.is_null()).then(|| bytes(&(*s).passwd).to_vec()),
            envelope: relay.then(|| {
                (
                    bytes(&(*s).smtp_from).to_vec(),
                    bytes(&(*s).smtp_to).to_vec(),
                )
            }),
        }
    }
}
