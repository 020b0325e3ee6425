//! What one stage hands the next: data only. The protocol stage hands the
//! auth stage how the client authenticated and what the backend login will
//! need of the client's dialogue; the auth stage hands it on to the proxy.

use mail_core::{imap, pop3, sieve, smtp, AuthMethod};

/// A login the client asked for.
pub struct Handover {
    pub method: AuthMethod,
    pub client: ClientDialogue,
    /// The auth server's `Auth-SMTP-Auth`, overriding `proxy_smtp_auth`.
    pub smtp_auth: Option<smtp::BackendAuth>,
    /// The auth server's `Auth-Server-TLS` and `Auth-Server-Name`,
    /// overriding `proxy_ssl`/`proxy_starttls` and `proxy_ssl_name`.
    pub backend_tls: Option<mail_core::starttls::BackendTls>,
    pub backend_tls_name: Option<Vec<u8>>,
}

/// What the backend login and a refusal need of the client's dialogue.
pub enum ClientDialogue {
    Pop3,
    /// The tag of the LOGIN or AUTHENTICATE command (empty if none).
    Imap {
        tag: Vec<u8>,
    },
    /// The client's HELO/EHLO name, and whether it said EHLO.
    Smtp {
        helo: Vec<u8>,
        esmtp: bool,
    },
    Sieve,
}

impl Handover {
    pub fn new(method: AuthMethod, client: ClientDialogue) -> Self {
        Handover {
            method,
            client,
            smtp_auth: None,
            backend_tls: None,
            backend_tls_name: None,
        }
    }

    /// The client's reply when the auth server refuses the login.
    pub fn refusal(&self, text: &[u8], error_code: Option<&[u8]>) -> Vec<u8> {
        match &self.client {
            ClientDialogue::Pop3 => pop3::auth_error_reply(text),
            ClientDialogue::Imap { tag } => {
                let tag: &[u8] = if tag.is_empty() { b"* " } else { tag };
                [tag, b"NO ", text, b"\r\n"].concat()
            }
            ClientDialogue::Smtp { .. } => smtp::auth_error_reply(text, error_code),
            ClientDialogue::Sieve => sieve::auth_error_reply(text),
        }
    }

    /// Whether the backend login needs a password the auth server or the
    /// client supplied (POP3 and IMAP always log in with one; SMTP only
    /// with `proxy_smtp_auth`, and finds out then).
    pub fn password_required(&self) -> bool {
        !matches!(self.client, ClientDialogue::Smtp { .. })
    }
}

/// The IMAP hand-over of a session whose command just asked to log in.
pub fn imap_dialogue(session: &imap::ImapSession) -> ClientDialogue {
    ClientDialogue::Imap {
        tag: session.tag().to_vec(),
    }
}

/// The SMTP hand-over of a session whose command just asked to log in.
pub fn smtp_dialogue(session: &smtp::SmtpSession) -> ClientDialogue {
    ClientDialogue::Smtp {
        helo: session.helo().to_vec(),
        esmtp: session.esmtp,
    }
}
