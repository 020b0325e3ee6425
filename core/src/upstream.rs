//! What a backend login dialogue asks the proxy to do next, for every
//! protocol.

use crate::line::{first_line, Line};

/// What to do with the backend's buffered reply.
#[must_use = "the backend is waiting for this step"]
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamStep {
    /// No complete reply yet.
    NeedMore,
    /// The reply was good: clear the buffer and send this line.
    Send(Vec<u8>),
    /// Logged in: the buffered reply goes to the client, then pass-through.
    LoggedIn,
    /// The buffer filled up without a line end.
    TooLong,
    /// The backend refused; `line` is its reply without the line end.
    Refused { line: Vec<u8> },
    /// Logged in, but the client is told this instead of the backend's
    /// last reply (SMTP after a login: `235 2.0.0 OK`).
    LoggedInReplacing(&'static [u8]),
    /// The dialogue cannot go on; log this at `error`.
    Failed(&'static str),
    /// The backend agreed to STARTTLS: drop everything buffered (it came
    /// in plain text), run the handshake, then go on.
    StartTls,
}

/// The first complete line of a backend's reply: its content and where it
/// ends; when there is none yet, the step to take (wait, or give up on a
/// full buffer).
pub fn reply_line(buf: &[u8], full: bool) -> Result<(&[u8], Line), UpstreamStep> {
    match first_line(buf) {
        Some(line) => Ok((buf.get(..line.content).unwrap_or_default(), line)),
        None if full => Err(UpstreamStep::TooLong),
        None => Err(UpstreamStep::NeedMore),
    }
}

/// The client's identity for a backend that trusts the proxy to tell it
/// (`proxy_pass_client_info`): Dovecot logs these instead of the proxy's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's IP address as text, and its port.
    pub addr: Vec<u8>,
    pub port: u16,
    /// The address and port the client connected to.
    pub local_addr: Vec<u8>,
    pub local_port: u16,
    /// nginx's number for the connection, as the session's id.
    pub session: Vec<u8>,
}

impl ClientInfo {
    /// IMAP `ID` (RFC 2971) with the fields Dovecot reads from trusted
    /// proxies; `tag` ends with its space.
    pub fn imap_id(&self, tag: &[u8]) -> Vec<u8> {
        let mut out = tag.to_vec();
        out.extend_from_slice(b"ID (");
        let (port, local_port) = (self.port.to_string(), self.local_port.to_string());
        let fields: [(&[u8], &[u8]); 5] = [
            (b"x-originating-ip", &self.addr),
            (b"x-originating-port", port.as_bytes()),
            (b"x-connected-ip", &self.local_addr),
            (b"x-connected-port", local_port.as_bytes()),
            (b"x-session-id", &self.session),
        ];
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            quoted(name, &mut out);
            out.push(b' ');
            quoted(value, &mut out);
        }
        out.extend_from_slice(b")\r\n");
        out
    }

    /// POP3 `XCLIENT` as Dovecot takes it from trusted proxies.
    pub fn pop3_xclient(&self) -> Vec<u8> {
        let mut out = b"XCLIENT ADDR=".to_vec();
        crate::smtp::xtext(&self.addr, &mut out);
        out.extend_from_slice(b" PORT=");
        out.extend_from_slice(self.port.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// An IMAP quoted string: `"` and `\` escaped, anything but a printable
/// ASCII byte left out (none of our values has one).
fn quoted(value: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in value {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {}
        }
    }
    out.push(b'"');
}
