//! The LOGIN dialogue with an IMAP backend (`ngx_mail_proxy_imap_handler`):
//! the greeting, then `tag LOGIN {n}`, the user name as a literal, the
//! password as a literal, and the tagged OK, which (with an untagged
//! CAPABILITY line before it, if the backend sends one) goes to the client.
//! With `proxy_pass_client_info`, an `ID` with the client's address comes
//! first, and its reply is read to its tagged line before LOGIN.

use core::ffi::CStr;

use crate::line::first_line;
use crate::upstream::{reply_line, ClientInfo, UpstreamStep};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Id,
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
    client_info: Option<ClientInfo>,
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
    pub fn new(tag: &[u8], login: &[u8], passwd: &[u8], client_info: Option<ClientInfo>) -> Self {
        LoginDialogue {
            state: State::Greeting,
            tag: tag.to_vec(),
            login: login.to_vec(),
            passwd: passwd.to_vec(),
            client_info,
        }
    }

    fn login_command(&mut self) -> UpstreamStep {
        self.state = State::Login;
        let mut prefix = self.tag.clone();
        prefix.extend_from_slice(b"LOGIN ");
        UpstreamStep::Send(literal_header(&prefix, self.login.len()))
    }

    /// Whether the reply to our ID is complete: its tagged line is in `buf`
    /// behind any untagged ones. Its status does not matter: a backend
    /// that refuses ID still takes the login.
    fn id_done(&self, buf: &[u8]) -> bool {
        let mut rest = buf;
        while let Some(line) = first_line(rest) {
            if rest.starts_with(&self.tag) {
                return true;
            }
            rest = rest.get(line.consumed..).unwrap_or_default();
        }
        false
    }

    pub fn action(&self) -> &'static CStr {
        match self.state {
            State::Greeting | State::Passwd => c"reading response from upstream",
            State::Id => c"sending client info to upstream",
            State::Login => c"sending LOGIN command to upstream",
            State::User => c"sending user name to upstream",
        }
    }

    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        if self.state == State::Id {
            return match (self.id_done(buf), full) {
                (true, _) => self.login_command(),
                (false, true) => UpstreamStep::TooLong,
                (false, false) => UpstreamStep::NeedMore,
            };
        }
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
                match self.client_info.take() {
                    Some(info) => {
                        self.state = State::Id;
                        UpstreamStep::Send(info.imap_id(&self.tag))
                    }
                    None => self.login_command(),
                }
            }
            State::Id => self.login_command(),
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
        let mut d = LoginDialogue::new(b"a1 ", b"user", b"pa ss", None);
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
    fn client_info_as_id_before_login() {
        let info = ClientInfo {
            addr: b"2001:db8::7".to_vec(),
            port: 40000,
            local_addr: b"192.0.2.1".to_vec(),
            local_port: 143,
            session: b"42".to_vec(),
        };
        let mut d = LoginDialogue::new(b"a1 ", b"user", b"pw", Some(info));
        assert_eq!(
            d.on_data(b"* OK ready\r\n", false),
            UpstreamStep::Send(
                b"a1 ID (\"x-originating-ip\" \"2001:db8::7\" \"x-originating-port\" \"40000\" \"x-connected-ip\" \"192.0.2.1\" \"x-connected-port\" \"143\" \"x-session-id\" \"42\")\r\n".to_vec()
            )
        );
        assert_eq!(d.action(), c"sending client info to upstream");
        assert_eq!(
            d.on_data(b"* ID (\"name\" \"Dovecot\")\r\n", false),
            UpstreamStep::NeedMore
        );
        assert_eq!(
            d.on_data(
                b"* ID (\"name\" \"Dovecot\")\r\na1 OK ID completed.\r\n",
                false
            ),
            UpstreamStep::Send(b"a1 LOGIN {4}\r\n".to_vec())
        );
        // a backend without ID still gets the login
        let mut d = LoginDialogue::new(b"a1 ", b"user", b"pw", Some(ClientInfo::default()));
        let _ = d.on_data(b"* OK ready\r\n", false);
        assert_eq!(
            d.on_data(b"a1 BAD unknown command\r\n", false),
            UpstreamStep::Send(b"a1 LOGIN {4}\r\n".to_vec())
        );
        let mut d = LoginDialogue::new(b"a1 ", b"user", b"pw", Some(ClientInfo::default()));
        let _ = d.on_data(b"* OK ready\r\n", false);
        assert_eq!(
            d.on_data(b"* ID NIL\r\n* no end", true),
            UpstreamStep::TooLong
        );
    }

    #[test]
    fn refusals() {
        let mut d = LoginDialogue::new(b"a1 ", b"u", b"p", None);
        assert!(matches!(
            d.on_data(b"* BYE no\r\n", false),
            UpstreamStep::Refused { .. }
        ));
        let mut d = LoginDialogue::new(b"a1 ", b"u", b"p", None);
        for reply in [&b"* OK\r\n"[..], b"+\r\n", b"+\r\n"] {
            assert!(matches!(d.on_data(reply, false), UpstreamStep::Send(_)));
        }
        assert_eq!(
            d.on_data(b"a1 NO bad\r\n", false),
            UpstreamStep::Refused {
                line: b"NO bad".to_vec()
            }
        );
        let mut d = LoginDialogue::new(b"a1 ", b"u", b"p", None);
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
