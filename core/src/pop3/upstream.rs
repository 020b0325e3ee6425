//! The login dialogue with a POP3 backend (`ngx_mail_proxy_pop3_handler`):
//! greeting, USER, PASS; then the backend's last reply goes to the client.
//! With `proxy_pass_client_info`, a backend whose greeting offers
//! `[XCLIENT]` (Dovecot, to trusted peers) is told the client's address
//! first.

use core::ffi::CStr;

use crate::upstream::{reply_line, ClientInfo, UpstreamStep};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Xclient,
    User,
    Pass,
    Done,
}

#[derive(Debug)]
pub struct LoginDialogue {
    state: State,
    login: Vec<u8>,
    passwd: Vec<u8>,
    client_info: Option<ClientInfo>,
}

impl LoginDialogue {
    pub fn new(login: &[u8], passwd: &[u8], client_info: Option<ClientInfo>) -> Self {
        LoginDialogue {
            state: State::Greeting,
            login: login.to_vec(),
            passwd: passwd.to_vec(),
            client_info,
        }
    }

    /// The log action of the step in progress, as nginx names it.
    pub fn action(&self) -> &'static CStr {
        match self.state {
            State::Greeting | State::Done => c"reading response from upstream",
            State::Xclient => c"sending XCLIENT to upstream",
            State::User => c"sending user name to upstream",
            State::Pass => c"sending password to upstream",
        }
    }

    /// `buf` is everything the backend sent since the last step; `full` says
    /// the buffer has no room left.
    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        let content = match reply_line(buf, full) {
            Ok((content, _)) => content,
            Err(step) => return step,
        };
        if !content.starts_with(b"+OK") {
            return UpstreamStep::Refused {
                line: content.to_vec(),
            };
        }
        match self.state {
            // every source of the two (USER/PASS, SASL, the auth server's
            // Auth-User/Auth-Pass) is checked already; this is the last line
            // of defence against a second backend command (nginx PR 1620)
            State::Greeting if !plain(&self.login) || !plain(&self.passwd) => {
                UpstreamStep::Failed("upstream POP3 credential contains CR, LF or NUL")
            }
            State::Greeting => {
                let offers_xclient = content.windows(9).any(|w| w == b"[XCLIENT]");
                match self.client_info.take() {
                    Some(info) if offers_xclient => {
                        self.state = State::Xclient;
                        UpstreamStep::Send(info.pop3_xclient())
                    }
                    _ => {
                        self.state = State::User;
                        UpstreamStep::Send(command(b"USER ", &self.login))
                    }
                }
            }
            State::Xclient => {
                self.state = State::User;
                UpstreamStep::Send(command(b"USER ", &self.login))
            }
            State::User => {
                self.state = State::Pass;
                UpstreamStep::Send(command(b"PASS ", &self.passwd))
            }
            State::Pass | State::Done => {
                self.state = State::Done;
                self.passwd.fill(0);
                UpstreamStep::LoggedIn
            }
        }
    }
}

/// Whether a value can go on a command line as it is.
fn plain(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

fn command(verb: &[u8], arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(verb.len().saturating_add(arg.len()).saturating_add(2));
    out.extend_from_slice(verb);
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogue() {
        let mut d = LoginDialogue::new(b"joe", b"pw", None);
        assert_eq!(d.on_data(b"+OK", false), UpstreamStep::NeedMore);
        assert_eq!(
            d.on_data(b"+OK hi\r\n", false),
            UpstreamStep::Send(b"USER joe\r\n".to_vec())
        );
        assert_eq!(
            d.on_data(b"+OK\r\n", false),
            UpstreamStep::Send(b"PASS pw\r\n".to_vec())
        );
        assert_eq!(
            d.on_data(b"+OK logged in\r\n", false),
            UpstreamStep::LoggedIn
        );
    }

    fn info() -> ClientInfo {
        ClientInfo {
            addr: b"192.0.2.7".to_vec(),
            port: 40000,
            local_addr: b"192.0.2.1".to_vec(),
            local_port: 110,
            session: b"42".to_vec(),
        }
    }

    #[test]
    fn client_info_only_where_xclient_is_offered() {
        let mut d = LoginDialogue::new(b"joe", b"pw", Some(info()));
        assert_eq!(
            d.on_data(b"+OK [XCLIENT] Dovecot ready.\r\n", false),
            UpstreamStep::Send(b"XCLIENT ADDR=192.0.2.7 PORT=40000\r\n".to_vec())
        );
        assert_eq!(d.action(), c"sending XCLIENT to upstream");
        assert_eq!(
            d.on_data(b"+OK\r\n", false),
            UpstreamStep::Send(b"USER joe\r\n".to_vec())
        );
        let mut d = LoginDialogue::new(b"joe", b"pw", Some(info()));
        assert_eq!(
            d.on_data(b"+OK Dovecot ready.\r\n", false),
            UpstreamStep::Send(b"USER joe\r\n".to_vec())
        );
        let mut d = LoginDialogue::new(b"joe", b"pw", Some(info()));
        let _ = d.on_data(b"+OK [XCLIENT] ready\r\n", false);
        assert!(matches!(
            d.on_data(b"-ERR not trusted\r\n", false),
            UpstreamStep::Refused { .. }
        ));
    }

    #[test]
    fn line_breaks_and_nul_never_reach_the_backend() {
        for (login, passwd) in [
            (&b"joe\r\nDELE 1"[..], &b"pw"[..]),
            (b"joe", b"pw\nDELE 1"),
            (b"joe", b"p\0w"),
            (b"j\0oe", b"pw"),
        ] {
            let mut d = LoginDialogue::new(login, passwd, None);
            assert!(matches!(
                d.on_data(b"+OK hi\r\n", false),
                UpstreamStep::Failed(_)
            ));
        }
    }

    #[test]
    fn refusals() {
        let mut d = LoginDialogue::new(b"joe", b"pw", None);
        assert_eq!(
            d.on_data(b"-ERR go away\r\n", false),
            UpstreamStep::Refused {
                line: b"-ERR go away".to_vec()
            }
        );
        assert_eq!(
            d.on_data(b"garbage without end", true),
            UpstreamStep::TooLong
        );
        assert_eq!(
            d.on_data(b"\r\n", false),
            UpstreamStep::Refused { line: Vec::new() }
        );
    }
}
