//! POP3 (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH, RFC 2595 STLS) as nginx's
//! pop3 module speaks it before login, and the login dialogue with the
//! backend.

mod capabilities;
mod parser;
mod session;
mod upstream;

pub use capabilities::{Capabilities, DEFAULT_CAPABILITIES};
pub use parser::{parse_line, Parsed, Verb};
pub use session::{Config, Pop3Session};
pub use upstream::LoginDialogue;

pub const GREETING: &[u8] = b"+OK POP3 ready\r\n";
pub const OK: &[u8] = b"+OK\r\n";
pub const INVALID_COMMAND: &[u8] = b"-ERR invalid command\r\n";
pub const INTERNAL_SERVER_ERROR: &[u8] = b"-ERR internal server error\r\n";
pub const CERT_ERROR: &[u8] = b"-ERR SSL certificate error\r\n";
pub const NO_CERT: &[u8] = b"-ERR No required SSL certificate\r\n";
/// The size of the client command buffer, fixed in stock nginx; the
/// default of `pop3_client_buffer` unless a bearer token mechanism is on.
pub const COMMAND_BUFFER: usize = 128;

/// The greeting, with the APOP/CRAM-MD5 salt when one of them is enabled.
pub fn greeting(salt: Option<&[u8]>) -> Vec<u8> {
    match salt {
        Some(salt) => {
            let mut g = b"+OK POP3 ready ".to_vec();
            g.extend_from_slice(salt);
            g
        }
        None => GREETING.to_vec(),
    }
}

/// The auth server's refusal as the client sees it.
pub fn auth_error_reply(text: &[u8]) -> Vec<u8> {
    let mut out = b"-ERR ".to_vec();
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
    out
}
