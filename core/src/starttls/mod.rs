//! The upgrade of a plain backend connection before the login dialogue
//! (`proxy_starttls`, ours): the greeting, the backend's capabilities, its
//! STLS/STARTTLS, then the handshake; after it the login dialogue starts
//! as it would have on the greeting, which is handed to it again (POP3,
//! IMAP, SMTP: the backend sends none after the handshake; the SMTP login
//! dialogue then says EHLO again), or reads the capabilities a ManageSieve
//! backend sends anew.
//!
//! A backend whose capabilities lack the upgrade is refused: no credential
//! may go out in plain text. Whatever follows the backend's positive reply
//! to STARTTLS in the same read was sent in plain text, and an attacker on
//! the path can put it there (CVE-2011-0411, CVE-2021-33515): the shell
//! drops its buffer on [`UpstreamStep::StartTls`], and this machine never
//! looks past that reply.

use core::ffi::CStr;

use crate::line::first_line;
use crate::upstream::UpstreamStep;

/// How the backend connection is protected: `proxy_ssl`/`proxy_starttls`,
/// or the auth server's `Auth-Server-TLS` for one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendTls {
    Off,
    /// TLS from the first byte.
    Implicit,
    /// STLS/STARTTLS before the login.
    StartTls,
}

impl BackendTls {
    /// An `Auth-Server-TLS` value: `on`, `starttls` or `off`.
    pub fn parse(value: &[u8]) -> Option<BackendTls> {
        let is = |name: &[u8]| value.eq_ignore_ascii_case(name);
        if is(b"on") {
            Some(BackendTls::Implicit)
        } else if is(b"starttls") {
            Some(BackendTls::StartTls)
        } else if is(b"off") {
            Some(BackendTls::Off)
        } else {
            None
        }
    }
}

/// The backend's protocol, with what its commands need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pop3,
    /// The client's tag, with its trailing space (our commands use it too,
    /// as stock's LOGIN does).
    Imap {
        tag: Vec<u8>,
    },
    /// Our `server_name`, for the first EHLO.
    Smtp {
        server_name: Vec<u8>,
    },
    Sieve,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    /// POP3 CAPA, IMAP CAPABILITY, SMTP EHLO sent.
    Capabilities,
    /// STLS / STARTTLS sent.
    Upgrade,
    /// The handshake may start: the shell holds no plain byte any more.
    Ready,
}

#[derive(Debug)]
pub struct StartTls {
    protocol: Protocol,
    state: State,
    greeting: Vec<u8>,
}

/// Why the upgrade is refused, as logged at `error`.
pub const NOT_OFFERED: &str = "upstream does not offer STARTTLS";

fn line(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = parts.concat();
    out.extend_from_slice(b"\r\n");
    out
}

/// The complete lines of `buf`, each without its line end.
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    core::iter::from_fn(move || {
        let l = first_line(rest)?;
        let content = rest.get(..l.content)?;
        rest = rest.get(l.consumed..)?;
        Some(content)
    })
}

fn has_word(line: &[u8], word: &[u8]) -> bool {
    line.split(|&b| b == b' ' || b == b'-')
        .any(|w| w.eq_ignore_ascii_case(word))
}

impl StartTls {
    pub fn new(protocol: Protocol) -> Self {
        StartTls {
            protocol,
            state: State::Greeting,
            greeting: Vec::new(),
        }
    }

    pub fn action(&self) -> &'static CStr {
        match self.state {
            State::Greeting | State::Ready => c"reading response from upstream",
            State::Capabilities => c"sending capability request to upstream",
            State::Upgrade => c"sending STARTTLS to upstream",
        }
    }

    /// Whether the handshake is due or done: the login dialogue takes over.
    pub fn ready(&self) -> bool {
        self.state == State::Ready
    }

    /// After the handshake: what the login dialogue reads first, the
    /// greeting again, or nothing (ManageSieve sends its capabilities anew).
    pub fn take_greeting(&mut self) -> Option<Vec<u8>> {
        match self.protocol {
            Protocol::Sieve => None,
            _ => Some(core::mem::take(&mut self.greeting)),
        }
    }

    /// `buf` is everything the backend sent since our last command.
    pub fn on_data(&mut self, buf: &[u8], full: bool) -> UpstreamStep {
        let wait = || {
            if full {
                UpstreamStep::TooLong
            } else {
                UpstreamStep::NeedMore
            }
        };
        let Some(first) = lines(buf).next() else {
            return wait();
        };
        let refused = || UpstreamStep::Refused {
            line: first.to_vec(),
        };
        match (self.state, &self.protocol) {
            (State::Ready, _) => UpstreamStep::Failed("upstream STARTTLS dialogue already over"),

            (State::Greeting, Protocol::Pop3) => {
                if !first.starts_with(b"+OK") {
                    return refused();
                }
                self.greeting_then(buf, first, b"CAPA\r\n".to_vec())
            }
            (State::Capabilities, Protocol::Pop3) => {
                if !first.starts_with(b"+OK") {
                    return UpstreamStep::Failed(NOT_OFFERED);
                }
                let mut capa = lines(buf).skip(1);
                let mut offered = false;
                loop {
                    match capa.next() {
                        None => return wait(),
                        Some(b".") => break,
                        Some(l) => offered |= has_word(l, b"STLS"),
                    }
                }
                self.upgrade(offered, b"STLS\r\n".to_vec())
            }
            (State::Upgrade, Protocol::Pop3) => self.upgraded(first.starts_with(b"+OK"), first),

            (State::Greeting, Protocol::Imap { tag }) => {
                if !first.starts_with(b"* OK") {
                    return refused();
                }
                let command = line(&[tag, b"CAPABILITY"]);
                self.greeting_then(buf, first, command)
            }
            (State::Capabilities, Protocol::Imap { tag }) => {
                let mut offered = false;
                for l in lines(buf) {
                    if let Some(status) = l.strip_prefix(tag.as_slice()) {
                        let ok = status
                            .get(..2)
                            .is_some_and(|s| s.eq_ignore_ascii_case(b"OK"));
                        let command = line(&[tag, b"STARTTLS"]);
                        return self.upgrade(ok && offered, command);
                    }
                    let untagged_capability = l
                        .get(..13)
                        .is_some_and(|p| p.eq_ignore_ascii_case(b"* CAPABILITY "));
                    offered |= untagged_capability && has_word(l, b"STARTTLS");
                }
                wait()
            }
            (State::Upgrade, Protocol::Imap { tag }) => {
                // untagged lines may come first; the tagged one decides
                for l in lines(buf) {
                    if let Some(status) = l.strip_prefix(tag.as_slice()) {
                        let ok = status
                            .get(..2)
                            .is_some_and(|s| s.eq_ignore_ascii_case(b"OK"));
                        return self.upgraded(ok, l);
                    }
                }
                wait()
            }

            (State::Greeting, Protocol::Smtp { server_name }) => {
                let Some(reply) = smtp_reply(buf) else {
                    return wait();
                };
                if !first.starts_with(b"220") {
                    return refused();
                }
                let command = line(&[b"EHLO ", server_name]);
                let greeting = reply.to_vec();
                self.state = State::Capabilities;
                self.greeting = greeting;
                UpstreamStep::Send(command)
            }
            (State::Capabilities, Protocol::Smtp { .. }) => {
                let Some(reply) = smtp_reply(buf) else {
                    return wait();
                };
                if !first.starts_with(b"250") {
                    return refused();
                }
                let offered = lines(reply).any(|l| {
                    l.get(4..)
                        .is_some_and(|kw| kw.trim_ascii_end().eq_ignore_ascii_case(b"STARTTLS"))
                });
                self.upgrade(offered, b"STARTTLS\r\n".to_vec())
            }
            (State::Upgrade, Protocol::Smtp { .. }) => {
                if smtp_reply(buf).is_none() {
                    return wait();
                }
                self.upgraded(first.starts_with(b"220"), first)
            }

            (State::Greeting, Protocol::Sieve) => {
                // capability lines are quoted; the first other line ends them
                let mut offered = false;
                for l in lines(buf) {
                    if l.starts_with(b"\"") {
                        offered |= l
                            .get(..10)
                            .is_some_and(|c| c.eq_ignore_ascii_case(b"\"STARTTLS\""));
                        continue;
                    }
                    if !sieve_ok(l) {
                        return UpstreamStep::Refused { line: l.to_vec() };
                    }
                    return self.upgrade(offered, b"STARTTLS\r\n".to_vec());
                }
                wait()
            }
            (State::Capabilities, Protocol::Sieve) => {
                UpstreamStep::Failed("upstream STARTTLS dialogue out of order")
            }
            (State::Upgrade, Protocol::Sieve) => self.upgraded(sieve_ok(first), first),
        }
    }

    /// The greeting is kept for the login dialogue; `command` asks for the
    /// capabilities.
    fn greeting_then(&mut self, buf: &[u8], first: &[u8], command: Vec<u8>) -> UpstreamStep {
        let end = first.len();
        let with_crlf = buf.get(..end.saturating_add(2)).unwrap_or(first);
        self.greeting = if with_crlf.ends_with(b"\r\n") {
            with_crlf.to_vec()
        } else {
            line(&[first])
        };
        self.state = State::Capabilities;
        UpstreamStep::Send(command)
    }

    fn upgrade(&mut self, offered: bool, command: Vec<u8>) -> UpstreamStep {
        if !offered {
            return UpstreamStep::Failed(NOT_OFFERED);
        }
        self.state = State::Upgrade;
        UpstreamStep::Send(command)
    }

    fn upgraded(&mut self, ok: bool, reply: &[u8]) -> UpstreamStep {
        if !ok {
            return UpstreamStep::Refused {
                line: reply.to_vec(),
            };
        }
        self.state = State::Ready;
        UpstreamStep::StartTls
    }
}

/// A ManageSieve `OK` response line.
fn sieve_ok(line: &[u8]) -> bool {
    line.get(..2).is_some_and(|s| s.eq_ignore_ascii_case(b"OK"))
        && matches!(line.get(2), None | Some(b' '))
}

/// A complete SMTP reply at the start of `buf` (every line of a multi-line
/// one), with its line ends.
fn smtp_reply(buf: &[u8]) -> Option<&[u8]> {
    let mut at = 0usize;
    loop {
        let rest = buf.get(at..)?;
        let l = first_line(rest)?;
        let content = rest.get(..l.content)?;
        at = at.checked_add(l.consumed)?;
        if content.get(3) != Some(&b'-') {
            return buf.get(..at);
        }
    }
}

#[cfg(test)]
mod tests;
