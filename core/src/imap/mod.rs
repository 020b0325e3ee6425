//! IMAP (RFC 3501, RFC 4959 SASL-IR, RFC 7888 LITERAL+) as nginx's imap
//! module speaks it before login, and the LOGIN dialogue with the backend.

mod capabilities;
pub mod id;
mod parser;
mod session;
mod upstream;

pub use capabilities::{Capabilities, DEFAULT_CAPABILITIES};
pub use parser::{Command, Event, Parser, Verb};
pub use session::{Config, ImapSession, CONTINUE};
pub use upstream::LoginDialogue;

pub const GREETING: &[u8] = b"* OK IMAP4 ready\r\n";
pub const INTERNAL_SERVER_ERROR: &[u8] = b"* BAD internal server error\r\n";
pub const CERT_ERROR: &[u8] = b"* BYE SSL certificate error\r\n";
pub const NO_CERT: &[u8] = b"* BYE No required SSL certificate\r\n";
