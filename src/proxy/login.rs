//! The backend login dialogues of every protocol, as nginx keeps them
//! in its proxy module: whoever connects to the backend builds the login,
//! from what the auth server decided (`s->login`, `s->passwd`) and what the
//! protocol stage handed over of the client's dialogue.

use core::ffi::CStr;

use mail_core::upstream::UpstreamStep;
use mail_core::{imap, pop3, sieve, smtp, AuthMethod};

use super::conf;
use crate::session::Session;
use crate::state::{ClientDialogue, Handover};

/// The proxy module's per-session state during the backend login.
pub enum LoginState {
    Pop3(pop3::LoginDialogue),
    Imap(imap::LoginDialogue),
    Smtp(smtp::LoginDialogue),
    Sieve(sieve::LoginDialogue),
}

impl LoginState {
    pub fn new(sess: Session, handover: &Handover) -> LoginState {
        let (login, passwd) = (sess.login(), sess.passwd().unwrap_or_default());
        let client_info = || {
            (conf::conf(sess).pass_client_info != 0)
                .then(|| sess.client_info())
                .flatten()
        };
        match &handover.client {
            ClientDialogue::Pop3 => {
                LoginState::Pop3(pop3::LoginDialogue::new(login, passwd, client_info()))
            }
            ClientDialogue::Imap { tag } => {
                LoginState::Imap(imap::LoginDialogue::new(tag, login, passwd, client_info()))
            }
            ClientDialogue::Smtp { helo, esmtp } => LoginState::Smtp(smtp::LoginDialogue::new(
                smtp_login(sess, helo, *esmtp, handover),
            )),
            ClientDialogue::Sieve => LoginState::Sieve(sieve::LoginDialogue::new(login, passwd)),
        }
    }

    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        match self {
            LoginState::Pop3(d) => d.on_data(buf, full),
            LoginState::Imap(d) => d.on_data(buf, full),
            LoginState::Smtp(d) => d.on_data(buf, full),
            LoginState::Sieve(d) => d.on_data(buf, full),
        }
    }

    /// The log action of the step just taken.
    pub fn action(&self) -> &'static CStr {
        match self {
            LoginState::Pop3(d) => d.action(),
            LoginState::Imap(d) => d.action(),
            LoginState::Smtp(d) => d.action(),
            LoginState::Sieve(d) => d.action(),
        }
    }
}

/// What the SMTP backend dialogue needs: our name, the proxy switches, the
/// client's address, name and greeting, and the login or (`relay`, for
/// `smtp_auth none`) the envelope.
fn smtp_login(sess: Session, helo: &[u8], esmtp: bool, handover: &Handover) -> smtp::Login {
    let pcf = conf::conf(sess);
    let relay = handover.method == AuthMethod::None;
    let (_, from, to) = sess.envelope();
    smtp::Login {
        server_name: sess.server_name().to_vec(),
        xclient: pcf.xclient != 0,
        smtp_auth: handover.smtp_auth.unwrap_or(match pcf.smtp_auth {
            0 => smtp::BackendAuth::Off,
            conf::SMTP_AUTH_LOGIN => smtp::BackendAuth::Login,
            _ => smtp::BackendAuth::Plain,
        }),
        client_addr: sess.client_addr().to_vec(),
        client_ipv6: sess.client_is_ipv6(),
        client_host: sess.host().to_vec(),
        helo: helo.to_vec(),
        esmtp,
        login: sess.login().to_vec(),
        passwd: sess.passwd().map(<[u8]>::to_vec),
        envelope: relay.then(|| (from.to_vec(), to.to_vec())),
    }
}
