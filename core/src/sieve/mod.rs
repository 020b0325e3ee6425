//! ManageSieve (RFC 5804) as nginx's mail proxy speaks it before login: the
//! capability block, CAPABILITY, NOOP, LOGOUT, STARTTLS and AUTHENTICATE
//! with quoted strings and literals, and the AUTHENTICATE PLAIN dialogue
//! with the backend.

mod capabilities;
mod parser;
mod session;
mod upstream;

pub use capabilities::{line_ok, Capabilities, DEFAULT_CAPABILITIES};
pub use parser::{Command, Event, Parser, Verb};
pub use session::{capability, greeting, Config, SieveSession};
pub use upstream::LoginDialogue;

/// The protocol's replies that close the session; nginx sends them from
/// its protocol table.
pub const INTERNAL_SERVER_ERROR: &[u8] = b"BYE \"internal server error\"\r\n";
pub const CERT_ERROR: &[u8] = b"BYE \"SSL certificate error\"\r\n";
pub const NO_CERT: &[u8] = b"BYE \"No required SSL certificate\"\r\n";

/// `limit_conn`'s refusal (RFC 5804's TRYLATER response code).
pub const LIMIT_REFUSAL: &[u8] = b"NO (TRYLATER) \"Too many connections\"\r\n";

/// The longest quoted string RFC 5804 allows, in octets between the quotes.
pub const MAX_QUOTED: usize = 1024;

/// Whether `value` can be sent as a quoted string: short enough, UTF-8,
/// and no NUL, CR or LF (`"` and `\` are escaped).
fn quotable(value: &[u8]) -> bool {
    value.len() <= MAX_QUOTED
        && !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        && core::str::from_utf8(value).is_ok()
}

/// `value` as a ManageSieve string: quoted, with `"` and `\` escaped, or a
/// literal `{n}` CRLF value when it cannot be quoted.
pub fn string(value: &[u8]) -> Vec<u8> {
    if !quotable(value) {
        let mut out = format!("{{{}}}\r\n", value.len()).into_bytes();
        out.extend_from_slice(value);
        return out;
    }
    let mut out = Vec::with_capacity(value.len().saturating_add(2));
    out.push(b'"');
    for &b in value {
        if matches!(b, b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// The auth server's refusal (its `Auth-Status` text) as the client sees
/// it: `NO "text"`.
pub fn auth_error_reply(text: &[u8]) -> Vec<u8> {
    [&b"NO "[..], &string(text), b"\r\n"].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        assert_eq!(string(b"plain"), b"\"plain\"");
        assert_eq!(string(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(string("caf\u{e9}".as_bytes()), "\"caf\u{e9}\"".as_bytes());
        assert_eq!(string(b""), b"\"\"");
        // what a quoted string cannot hold goes as a literal
        assert_eq!(string(b"a\r\nb"), b"{4}\r\na\r\nb");
        assert_eq!(string(b"\xff"), b"{1}\r\n\xff");
        assert_eq!(string(&[b'a'; MAX_QUOTED]).len(), MAX_QUOTED + 2);
        assert!(string(&[b'a'; MAX_QUOTED + 1]).starts_with(b"{1025}\r\n"));
    }

    #[test]
    fn refusal() {
        assert_eq!(
            auth_error_reply(b"Invalid login or password"),
            b"NO \"Invalid login or password\"\r\n"
        );
        assert_eq!(
            auth_error_reply(b"say \"no\""),
            b"NO \"say \\\"no\\\"\"\r\n"
        );
    }
}
