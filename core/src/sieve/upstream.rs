//! The login dialogue with a ManageSieve backend: its capability block up
//! to the `OK` that ends it, then `AUTHENTICATE "PLAIN"` with the
//! credentials as the initial response, and its `OK` (response code and
//! text included), which goes to the client as the reply to its own
//! AUTHENTICATE.

use core::ffi::CStr;

use crate::base64;
use crate::line::first_line;
use crate::upstream::UpstreamStep;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Authenticate,
}

#[derive(Debug)]
pub struct LoginDialogue {
    state: State,
    login: Vec<u8>,
    passwd: Vec<u8>,
}

/// A status line: `OK`, `NO` or `BYE`, alone or before a space.
fn status(line: &[u8], word: &[u8]) -> bool {
    line.get(..word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
        && matches!(line.get(word.len()), None | Some(b' '))
}

/// The literal length a line announces at its end (`{n}` or `{n+}`): its
/// data follows the line break and belongs to the same response line.
fn trailing_literal(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = body.get(open.checked_add(1)?..)?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(digits).ok()?.parse().ok()
}

/// The first response of `buf` (past the capability lines with
/// `skip_capabilities`): its first line, or the step to take while there
/// is none.
fn status_line(buf: &[u8], full: bool, skip_capabilities: bool) -> Result<&[u8], UpstreamStep> {
    let mut pos = 0usize;
    // false inside a response line that a literal continues
    let mut at_start = true;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(line) = first_line(rest) else {
            return Err(if full {
                UpstreamStep::TooLong
            } else {
                UpstreamStep::NeedMore
            });
        };
        let content = rest.get(..line.content).unwrap_or_default();
        if at_start && !(skip_capabilities && content.starts_with(b"\"")) {
            return Ok(content);
        }
        let literal = trailing_literal(content);
        pos = pos
            .checked_add(line.consumed)
            .and_then(|p| p.checked_add(literal.unwrap_or(0)))
            .ok_or(UpstreamStep::TooLong)?;
        at_start = literal.is_none();
    }
}

impl LoginDialogue {
    pub fn new(login: &[u8], passwd: &[u8]) -> Self {
        LoginDialogue {
            state: State::Greeting,
            login: login.to_vec(),
            passwd: passwd.to_vec(),
        }
    }

    /// The log action of the step in progress, as nginx names its steps.
    pub fn action(&self) -> &'static CStr {
        match self.state {
            State::Greeting => c"reading response from upstream",
            State::Authenticate => c"sending AUTHENTICATE command to upstream",
        }
    }

    /// `AUTHENTICATE "PLAIN"` with `\0login\0passwd` as its initial
    /// response: quoted, or a literal when longer than a quoted string may
    /// be.
    fn authenticate(&mut self) -> Vec<u8> {
        let mut message = Vec::with_capacity(
            self.login
                .len()
                .saturating_add(self.passwd.len())
                .saturating_add(2),
        );
        message.push(0);
        message.extend_from_slice(&self.login);
        message.push(0);
        message.extend_from_slice(&self.passwd);
        let response = base64::encode(&message);
        message.fill(0);
        self.passwd.fill(0);
        let mut out = b"AUTHENTICATE \"PLAIN\" ".to_vec();
        if response.len() <= super::MAX_QUOTED {
            out.push(b'"');
            out.extend_from_slice(&response);
            out.push(b'"');
        } else {
            out.extend_from_slice(format!("{{{}+}}\r\n", response.len()).as_bytes());
            out.extend_from_slice(&response);
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// `buf` is everything the backend sent since the last step; `full` says
    /// the buffer has no room left.
    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        let line = match status_line(buf, full, self.state == State::Greeting) {
            Ok(line) => line,
            Err(step) => return step,
        };
        if !status(line, b"OK") {
            return UpstreamStep::Refused {
                line: line.to_vec(),
            };
        }
        match self.state {
            // the PLAIN message separates its parts with NUL: one inside
            // would move the boundary (the client's are checked already;
            // this covers the auth server's Auth-User and Auth-Pass)
            State::Greeting if self.login.contains(&0) || self.passwd.contains(&0) => {
                UpstreamStep::Failed("upstream ManageSieve credential contains NUL")
            }
            State::Greeting => {
                self.state = State::Authenticate;
                UpstreamStep::Send(self.authenticate())
            }
            State::Authenticate => UpstreamStep::LoggedIn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: &[u8] = b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\
        \"SIEVE\" \"fileinto reject\"\r\n\"SASL\" \"PLAIN\"\r\n\"VERSION\" \"1.0\"\r\n";

    #[test]
    fn dialogue() {
        let mut d = LoginDialogue::new(b"joe", b"secret");
        assert_eq!(d.action(), c"reading response from upstream");
        assert_eq!(d.on_data(CAPS, false), UpstreamStep::NeedMore);
        let greeting = [CAPS, b"OK \"Dovecot ready.\"\r\n"].concat();
        assert_eq!(
            d.on_data(&greeting, false),
            UpstreamStep::Send(b"AUTHENTICATE \"PLAIN\" \"AGpvZQBzZWNyZXQ=\"\r\n".to_vec())
        );
        assert_eq!(d.action(), c"sending AUTHENTICATE command to upstream");
        assert_eq!(d.on_data(b"OK \"Logged", false), UpstreamStep::NeedMore);
        assert_eq!(
            d.on_data(b"OK \"Logged in.\"\r\n", false),
            UpstreamStep::LoggedIn
        );
        // a response code on the OK, and a bare OK, will do as well
        let mut d = LoginDialogue::new(b"joe", b"secret");
        assert!(matches!(d.on_data(b"OK\r\n", false), UpstreamStep::Send(_)));
        assert_eq!(
            d.on_data(b"ok (SASL \"\") \"fine\"\r\n", false),
            UpstreamStep::LoggedIn
        );
    }

    #[test]
    fn literals_in_the_block() {
        let mut d = LoginDialogue::new(b"joe", b"secret");
        // a value sent as a literal whose data holds what looks like a line
        let block = b"\"SIEVE\" {12}\r\nOK \"x\"\r\nabc\r\n\"SASL\" {0}\r\n\r\n";
        assert_eq!(d.on_data(block, false), UpstreamStep::NeedMore);
        let mut greeting = block.to_vec();
        greeting.extend_from_slice(b"OK\r\n");
        assert!(matches!(d.on_data(&greeting, false), UpstreamStep::Send(_)));
        assert_eq!(trailing_literal(b"\"X\" {12+}"), Some(12));
        assert_eq!(trailing_literal(b"\"X\" {}"), None);
        assert_eq!(trailing_literal(b"\"X\" {1a}"), None);
        assert_eq!(trailing_literal(b"\"X\" \"}\""), None);
    }

    #[test]
    fn long_credentials_go_as_a_literal() {
        let passwd = vec![b'p'; 1000];
        let mut d = LoginDialogue::new(b"joe", &passwd);
        let UpstreamStep::Send(line) = d.on_data(b"OK\r\n", false) else {
            panic!();
        };
        let encoded = base64::encode(&[&b"\0joe\0"[..], &passwd].concat());
        let want = [
            format!("AUTHENTICATE \"PLAIN\" {{{}+}}\r\n", encoded.len()).as_bytes(),
            &encoded,
            b"\r\n",
        ]
        .concat();
        assert_eq!(line, want);
    }

    #[test]
    fn refusals() {
        let mut d = LoginDialogue::new(b"joe", b"secret");
        assert_eq!(
            d.on_data(b"BYE \"Too many connections\"\r\n", false),
            UpstreamStep::Refused {
                line: b"BYE \"Too many connections\"".to_vec()
            }
        );
        let mut d = LoginDialogue::new(b"joe", b"secret");
        assert!(matches!(d.on_data(CAPS, true), UpstreamStep::TooLong));
        assert!(matches!(
            d.on_data(b"OKAY\r\n", false),
            UpstreamStep::Refused { .. }
        ));
        assert!(matches!(d.on_data(b"OK\r\n", false), UpstreamStep::Send(_)));
        assert_eq!(
            d.on_data(b"NO \"Authentication failed.\"\r\n", false),
            UpstreamStep::Refused {
                line: b"NO \"Authentication failed.\"".to_vec()
            }
        );
        // the backend asks for more instead of taking the initial response
        let mut d = LoginDialogue::new(b"joe", b"secret");
        assert!(matches!(d.on_data(b"OK\r\n", false), UpstreamStep::Send(_)));
        assert!(matches!(
            d.on_data(b"\"\"\r\n", false),
            UpstreamStep::Refused { .. }
        ));
        // a NUL from the auth server's Auth-Pass would split the message
        let mut d = LoginDialogue::new(b"joe", b"se\0cret");
        assert!(matches!(
            d.on_data(b"OK\r\n", false),
            UpstreamStep::Failed(_)
        ));
    }
}
