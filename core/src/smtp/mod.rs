//! SMTP (RFC 5321, RFC 4954 AUTH, RFC 3207 STARTTLS) as nginx's smtp module
//! speaks it before the backend takes over: HELO/EHLO, AUTH, and with
//! `smtp_auth none` the envelope (MAIL FROM, RCPT TO) that goes to the auth
//! server and is replayed to the backend.

mod capabilities;
mod parser;
pub mod resolve;
mod session;
mod upstream;

pub use capabilities::Replies;
pub use parser::{parse_line, Parsed, Verb};
pub use session::{Config, Envelope, SmtpSession, INVALID_COMMAND};
pub use upstream::{xtext, BackendAuth, Login, LoginDialogue};

pub const INTERNAL_SERVER_ERROR: &[u8] = b"451 4.3.2 Internal server error\r\n";
pub const CERT_ERROR: &[u8] = b"421 4.7.1 SSL certificate error\r\n";
pub const NO_CERT: &[u8] = b"421 4.7.1 No required SSL certificate\r\n";
/// `Auth-Error-Code` when the auth server sends none.
pub const DEFAULT_AUTH_ERROR_CODE: &[u8] = b"535 5.7.0";

/// The auth server's refusal: `<code> <text>`.
pub fn auth_error_reply(text: &[u8], error_code: Option<&[u8]>) -> Vec<u8> {
    let mut out = error_code.unwrap_or(DEFAULT_AUTH_ERROR_CODE).to_vec();
    out.push(b' ');
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_errors() {
        assert_eq!(auth_error_reply(b"bad", None), b"535 5.7.0 bad\r\n");
        assert_eq!(
            auth_error_reply(b"later", Some(b"451 4.3.0")),
            b"451 4.3.0 later\r\n"
        );
    }
}
