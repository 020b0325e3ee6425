//! The dialogue with an SMTP backend before pass-through
//! (`ngx_mail_proxy_smtp_handler`): greeting, EHLO/HELO with our
//! server_name, XCLIENT (ADDR, LOGIN, NAME, xtext-encoded), the client's own
//! HELO/EHLO, AUTH PLAIN or LOGIN (`proxy_smtp_auth`), and for `smtp_auth none` the
//! client's MAIL FROM and RCPT TO replayed.

use crate::base64;
use core::ffi::CStr;

use crate::line::first_line;
use crate::upstream::UpstreamStep;

const AUTH_OK: &[u8] = b"235 2.0.0 OK\r\n";

/// How the proxy logs in to the SMTP backend (`proxy_smtp_auth`, or the
/// auth server's `Auth-SMTP-Auth` for one session).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendAuth {
    /// No login: the backend trusts the proxy (XCLIENT LOGIN= says who).
    #[default]
    Off,
    /// `AUTH PLAIN` with the credentials as one initial response.
    Plain,
    /// `AUTH LOGIN`, user name and password each answering a 334 prompt,
    /// for backends without PLAIN (Exchange).
    Login,
}

impl BackendAuth {
    /// A directive or header value: `on` is `plain`, as in stock.
    pub fn parse(value: &[u8]) -> Option<BackendAuth> {
        let is = |name: &[u8]| value.eq_ignore_ascii_case(name);
        if is(b"off") {
            Some(BackendAuth::Off)
        } else if is(b"on") || is(b"plain") {
            Some(BackendAuth::Plain)
        } else if is(b"login") {
            Some(BackendAuth::Login)
        } else {
            None
        }
    }
}

/// What the proxy knows when it starts the dialogue.
#[derive(Clone, Debug, Default)]
pub struct Login {
    /// Our `server_name`, for EHLO/HELO.
    pub server_name: Vec<u8>,
    /// `xclient on`
    pub xclient: bool,
    /// `proxy_smtp_auth`
    pub smtp_auth: BackendAuth,
    /// The client address as text, and whether it is IPv6.
    pub client_addr: Vec<u8>,
    pub client_ipv6: bool,
    /// The client's hostname from the resolver, or `[UNAVAILABLE]`.
    pub client_host: Vec<u8>,
    /// The client's HELO/EHLO argument, and whether it used EHLO.
    pub helo: Vec<u8>,
    pub esmtp: bool,
    pub login: Vec<u8>,
    /// `None` when the auth server sent no `Auth-Pass` and there is none.
    pub passwd: Option<Vec<u8>>,
    /// `smtp_auth none`: the client's MAIL FROM and RCPT TO lines.
    pub envelope: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    Helo,
    HeloXclient,
    HeloFrom,
    HeloAuth,
    Xclient,
    XclientFrom,
    XclientHelo,
    XclientAuth,
    AuthPlain,
    /// `AUTH LOGIN` sent: the user name prompt is due.
    AuthLoginUser,
    /// The user name sent: the password prompt is due.
    AuthLoginPass,
    From,
    To,
}

/// xtext (RFC 3461): `+XX` for controls, space, `+`, `=` and non-ASCII.
pub fn xtext(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let special = |b: &u8| *b <= 0x20 || *b >= 0x7f || *b == b'+' || *b == b'=';
    let mut rest = value;
    // runs of plain characters go in whole
    while let Some(at) = rest.iter().position(special) {
        let (run, tail) = rest.split_at(at);
        out.extend_from_slice(run);
        let Some((&b, after)) = tail.split_first() else {
            return;
        };
        out.push(b'+');
        out.extend(HEX.get(usize::from(b >> 4)));
        out.extend(HEX.get(usize::from(b & 15)));
        rest = after;
    }
    out.extend_from_slice(rest);
}

/// A complete reply (all lines of a multi-line one): its first line's code.
fn complete_reply(buf: &[u8]) -> Option<&[u8]> {
    let mut rest = buf;
    loop {
        let line = first_line(rest)?;
        let content = rest.get(..line.content)?;
        if content.get(3) != Some(&b'-') {
            return buf.get(..3.min(buf.len()));
        }
        rest = rest.get(line.consumed..)?;
    }
}

#[derive(Debug)]
pub struct LoginDialogue {
    state: State,
    login: Login,
}

impl LoginDialogue {
    pub fn new(login: Login) -> Self {
        LoginDialogue {
            state: State::Start,
            login,
        }
    }

    pub fn action(&self) -> &'static CStr {
        match self.state {
            State::Start => c"reading response from upstream",
            State::Helo | State::HeloXclient | State::HeloFrom | State::HeloAuth => {
                c"sending HELO/EHLO to upstream"
            }
            State::Xclient | State::XclientFrom | State::XclientHelo | State::XclientAuth => {
                c"sending XCLIENT to upstream"
            }
            State::AuthPlain | State::AuthLoginUser | State::AuthLoginPass => {
                c"sending AUTH to upstream"
            }
            State::From => c"sending MAIL FROM to upstream",
            State::To => c"sending RCPT TO to upstream",
        }
    }

    fn expected(&self, code: &[u8]) -> bool {
        match self.state {
            State::Start => code == b"220",
            State::Helo | State::HeloXclient | State::HeloFrom | State::HeloAuth | State::From => {
                code == b"250"
            }
            State::Xclient | State::XclientFrom | State::XclientHelo | State::XclientAuth => {
                code == b"220" || code == b"250"
            }
            State::AuthPlain => code == b"235",
            State::AuthLoginUser | State::AuthLoginPass => code == b"334",
            State::To => true,
        }
    }

    fn line(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = parts.concat();
        out.extend_from_slice(b"\r\n");
        out
    }

    /// After EHLO/HELO or XCLIENT: what comes next for this session.
    fn next_after_greeting(&self, from: State, auth: State, plain: State) -> State {
        if self.login.envelope.is_some() {
            from
        } else if self.login.smtp_auth != BackendAuth::Off {
            auth
        } else {
            plain
        }
    }

    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        let Some(code) = complete_reply(buf) else {
            return if full {
                UpstreamStep::TooLong
            } else {
                UpstreamStep::NeedMore
            };
        };
        if !self.expected(code) {
            let line = first_line(buf)
                .and_then(|l| buf.get(..l.content))
                .unwrap_or(buf);
            return UpstreamStep::Refused {
                line: line.to_vec(),
            };
        }
        let l = &self.login;
        match self.state {
            State::Start => {
                let verb: &[u8] = if l.esmtp || l.xclient {
                    b"EHLO "
                } else {
                    b"HELO "
                };
                let out = Self::line(&[verb, &l.server_name]);
                self.state = if l.xclient {
                    State::HeloXclient
                } else {
                    self.next_after_greeting(State::HeloFrom, State::HeloAuth, State::Helo)
                };
                UpstreamStep::Send(out)
            }
            State::HeloXclient => {
                // room for every value xtext-encoded whole: one allocation
                let values = l
                    .client_addr
                    .len()
                    .saturating_add(l.login.len())
                    .saturating_add(l.client_host.len());
                let mut out = Vec::with_capacity(values.saturating_mul(3).saturating_add(48));
                out.extend_from_slice(b"XCLIENT ADDR=");
                if l.client_ipv6 {
                    out.extend_from_slice(b"IPV6:");
                }
                xtext(&l.client_addr, &mut out);
                if !l.login.is_empty() && l.smtp_auth == BackendAuth::Off {
                    out.extend_from_slice(b" LOGIN=");
                    xtext(&l.login, &mut out);
                }
                out.extend_from_slice(b" NAME=");
                xtext(&l.client_host, &mut out);
                out.extend_from_slice(b"\r\n");
                self.state = if !l.helo.is_empty() {
                    State::XclientHelo
                } else {
                    self.next_after_greeting(State::XclientFrom, State::XclientAuth, State::Xclient)
                };
                UpstreamStep::Send(out)
            }
            State::XclientHelo => {
                let verb: &[u8] = if l.esmtp { b"EHLO " } else { b"HELO " };
                let out = Self::line(&[verb, &l.helo]);
                self.state =
                    self.next_after_greeting(State::HeloFrom, State::HeloAuth, State::Helo);
                UpstreamStep::Send(out)
            }
            State::HeloAuth | State::XclientAuth => {
                let Some(passwd) = &l.passwd else {
                    return UpstreamStep::Failed("no password available");
                };
                if l.smtp_auth == BackendAuth::Login {
                    self.state = State::AuthLoginUser;
                    return UpstreamStep::Send(b"AUTH LOGIN\r\n".to_vec());
                }
                let plain = [b"\0", l.login.as_slice(), b"\0", passwd.as_slice()].concat();
                self.state = State::AuthPlain;
                UpstreamStep::Send(Self::line(&[b"AUTH PLAIN ", &base64::encode(&plain)]))
            }
            State::AuthLoginUser => {
                self.state = State::AuthLoginPass;
                UpstreamStep::Send(Self::line(&[&base64::encode(&l.login)]))
            }
            State::AuthLoginPass => {
                let Some(passwd) = &l.passwd else {
                    return UpstreamStep::Failed("no password available");
                };
                self.state = State::AuthPlain;
                UpstreamStep::Send(Self::line(&[&base64::encode(passwd)]))
            }
            State::HeloFrom | State::XclientFrom => {
                let Some((from, _)) = &l.envelope else {
                    return UpstreamStep::Failed("no envelope to replay");
                };
                let out = Self::line(&[from]);
                self.state = State::From;
                UpstreamStep::Send(out)
            }
            State::From => {
                let Some((_, to)) = &l.envelope else {
                    return UpstreamStep::Failed("no envelope to replay");
                };
                let out = Self::line(&[to]);
                self.state = State::To;
                UpstreamStep::Send(out)
            }
            // the backend's reply to RCPT goes to the client as it is
            State::To => UpstreamStep::LoggedIn,
            State::Helo | State::Xclient | State::AuthPlain => {
                UpstreamStep::LoggedInReplacing(AUTH_OK)
            }
        }
    }
}

#[cfg(test)]
mod tests;
