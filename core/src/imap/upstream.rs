//! The LOGIN dialogue with an IMAP backend (`ngx_mail_proxy_imap_handler`):
//! the greeting, then `tag LOGIN {n}`, the user name as a literal, the
//! password as a literal, and the tagged OK, which (with an untagged
//! CAPABILITY line before it, if the backend sends one) goes to the client.

use core::ffi::CStr;

use crate::line::first_line;
use crate::upstream::{reply_line, UpstreamStep};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Login,
    User,
    Passwd,
}

#[derive(Debug)]
pub struct LoginDialogue {
    state: State,
    tag: Vec<u8>,
    login: Vec<u8>,
    passwd: Vec<u8>,
}

fn literal_header(prefix: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len().saturating_add(24));
    out.extend_from_slice(prefix);
    out.push(b'{');
    let digits = len.to_string();
    out.extend_from_slice(digits.as_bytes());
    out.extend_from_slice(b"}\r\n");
    out
}

impl LoginDialogue {
    /// `tag` is the client's, with its trailing space.
    pub fn new(tag: &[u8], login: &[u8], passwd: &[u8]) -> Self {
        LoginDialogue {
            state: State::Greeting,
            tag: tag.to_vec(),
            login: login.to_vec(),
            passwd: passwd.to_vec(),
        }
    }

    pub fn action(&self) -> &'static CStr {
        match self.state {
            State::Greeting | State::Passwd => c"reading response from upstream",
            State::Login => c"sending LOGIN command to upstream",
            State::User => c"sending user name to upstream",
        }
    }

    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        let (first, line) = match reply_line(buf, full) {
            Ok(found) => found,
            Err(step) => return step,
        };
        let refused = || UpstreamStep::Refused {
            line: first.to_vec(),
        };
        match self.state {
            State::Greeting => {
                if !first.starts_with(b"* OK") {
                    return refused();
                }
                self.state = State::Login;
                let mut prefix = self.tag.clone();
                prefix.extend_from_slice(b"LOGIN ");
                UpstreamStep::Send(literal_header(&prefix, self.login.len()))
            }
            State::Login => {
                if !first.starts_with(b"+") {
                    return refused();
                }
                self.state = State::User;
                let mut prefix = self.login.clone();
                prefix.push(b' ');
                UpstreamStep::Send(literal_header(&prefix, self.passwd.len()))
            }
            State::User => {
                if !first.starts_with(b"+") {
                    return refused();
                }
                self.state = State::Passwd;
                let mut out = std::mem::take(&mut self.passwd);
                out.extend_from_slice(b"\r\n");
                UpstreamStep::Send(out)
            }
            State::Passwd => {
                // one untagged line (a CAPABILITY) may come before the tagged OK
                let tagged = if first.starts_with(b"* ") {
                    let rest = buf.get(line.consumed..).unwrap_or_default();
                    match first_line(rest) {
                        Some(l) => rest.get(..l.content).unwrap_or_default(),
                        None if full => return UpstreamStep::TooLong,
                        None => return UpstreamStep::NeedMore,
                    }
                } else {
                    first
                };
                // as stock, a refusal with our tag is logged from after the tag
                match tagged.strip_prefix(self.tag.as_slice()) {
                    Some(status) if status.starts_with(b"OK") => UpstreamStep::LoggedIn,
                    Some(status) => UpstreamStep::Refused {
                        line: status.to_vec(),
                    },
                    None => UpstreamStep::Refused {
                        line: tagged.to_vec(),
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogue_with_literals() {
        let mut d = LoginDialogue::new(b"a1 ", b"user", b"pa ss");
        assert_eq!(
            d.on_data(b"* OK ready\r\n", false),
            UpstreamStep::Send(b"a1 LOGIN {4}\r\n".to_vec())
        );
        assert_eq!(
            d.on_data(b"+ go\r\n", false),
            UpstreamStep::Send(b"user {5}\r\n".to_vec())
        );
        assert_eq!(
            d.on_data(b"+ go\r\n", false),
            UpstreamStep::Send(b"pa ss\r\n".to_vec())
        );
        assert_eq!(
            d.on_data(b"* CAPABILITY IMAP4rev1\r\n", false),
            UpstreamStep::NeedMore
        );
        assert_eq!(
            d.on_data(b"* CAPABILITY IMAP4rev1\r\na1 OK done\r\n", false),
            UpstreamStep::LoggedIn
        );
    }

    #[test]
    fn refusals() {
        let mut d = LoginDialogue::new(b"a1 ", b"u", b"p");
        assert!(matches!(
            d.on_data(b"* BYE no\r\n", false),
            UpstreamStep::Refused { .. }
        ));
        let mut d = LoginDialogue::new(b"a1 ", b"u", b"p");
        for reply in [&b"* OK\r\n"[..], b"+\r\n", b"+\r\n"] {
            assert!(matches!(d.on_data(reply, false), UpstreamStep::Send(_)));
        }
        assert_eq!(
            d.on_data(b"a1 NO bad\r\n", false),
            UpstreamStep::Refused {
                line: b"NO bad".to_vec()
            }
        );
        let mut d = LoginDialogue::new(b"a1 ", b"u", b"p");
        assert!(matches!(
            d.on_data(b"* OK\r\n", false),
            UpstreamStep::Send(_)
        ));
        assert!(matches!(
            d.on_data(b"a1 BAD\r\n", false),
            UpstreamStep::Refused { .. }
        ));
        assert_eq!(d.on_data(b"no line end", true), UpstreamStep::TooLong);
    }
}
