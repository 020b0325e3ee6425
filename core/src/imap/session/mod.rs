//! The IMAP not-authenticated state of `ngx_mail_imap_auth_state`: which
//! commands are allowed, the tagged and untagged replies, SASL exchanges,
//! and when the client has said enough to ask the auth server.

use super::parser::{Event, Parser, Verb};
use super::Capabilities;
use crate::sasl::{self, Mechanism};
use crate::{auth_bits, AuthMethod, Credentials, Invalid, StartTls};

const OK: &[u8] = b"OK completed\r\n";
const BAD: &[u8] = b"BAD invalid command\r\n";
const BYE: &[u8] = b"* BYE\r\n";
pub const CONTINUE: &[u8] = b"+ OK\r\n";
const PLAIN_NEXT: &[u8] = b"+ \r\n";
const USERNAME: &[u8] = b"+ VXNlcm5hbWU6\r\n";
const PASSWORD: &[u8] = b"+ UGFzc3dvcmQ6\r\n";

/// An IMAP session's view of its server's configuration.
pub type Config<'a> = crate::Config<'a, Capabilities>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Start,
    AuthLoginUsername,
    AuthLoginPassword(Vec<u8>),
    AuthPlain,
    AuthCramMd5,
    AuthExternal,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this and read the next command.
    Reply(Vec<u8>),
    /// Ask the auth server; the tag stays for the backend LOGIN and replies.
    Authenticate(Credentials),
    /// Send this (the tagged OK), drop anything pipelined, start TLS.
    StartTls(Vec<u8>),
    /// Send this and close.
    Quit(Vec<u8>),
    /// Send this, log the reason, count the error; `quit` closes after.
    Invalid {
        reason: Invalid,
        reply: Vec<u8>,
        quit: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not a whole command yet.
    Incomplete,
    /// A synchronizing literal: send `+ OK`, consume nothing.
    Continue,
    Done {
        consumed: usize,
        action: Action,
    },
}

#[derive(Debug, Default)]
pub struct ImapSession {
    parser: Parser,
    state: Option<State>,
}

impl ImapSession {
    /// The tag of the command being answered, with its space (`a1 `).
    pub fn tag(&self) -> &[u8] {
        self.parser.tag()
    }

    /// Back to the start after a refused login the client may retry.
    pub fn reset(&mut self) {
        self.state = None;
        self.parser.reset();
    }

    /// The tag, or `* ` when the command had none, as replies use it.
    pub fn tag_or_star(&self) -> &[u8] {
        if self.tag().is_empty() {
            b"* "
        } else {
            self.tag()
        }
    }

    fn tagged(&self, text: &[u8], body: &[u8]) -> Vec<u8> {
        [text, self.tag_or_star(), body].concat()
    }

    /// The auth server's refusal: `tag NO text`.
    pub fn auth_error_reply(&self, text: &[u8]) -> Vec<u8> {
        let mut body = b"NO ".to_vec();
        body.extend_from_slice(text);
        body.extend_from_slice(b"\r\n");
        self.tagged(b"", &body)
    }

    /// Handles what is buffered of the current command.
    pub fn step(&mut self, buf: &[u8], cfg: &Config<'_>) -> Step {
        match self.parser.feed(buf) {
            Event::Incomplete => Step::Incomplete,
            Event::Continue => Step::Continue,
            Event::Invalid { consumed, quit } => {
                self.state = None;
                self.parser.reset();
                Step::Done {
                    consumed,
                    action: Action::Invalid {
                        reason: Invalid(None),
                        reply: self.tagged(b"", BAD),
                        quit,
                    },
                }
            }
            Event::Command(cmd) => {
                let state = self.state.take().unwrap_or(State::Start);
                let action = match (state, cmd.verb) {
                    (State::Start, Some(verb)) => self.command(verb, &cmd.args, cfg),
                    (State::Start, None) => self.invalid(Invalid(None)),
                    (state, _) => self.sasl(
                        state,
                        cmd.args.first().map(Vec::as_slice).unwrap_or_default(),
                    ),
                };
                if self.state.is_some() {
                    self.parser.expect_continuation();
                } else if let Action::Invalid { .. } = action {
                    self.parser.reset();
                }
                Step::Done {
                    consumed: cmd.consumed,
                    action,
                }
            }
        }
    }

    fn invalid(&mut self, reason: Invalid) -> Action {
        self.state = None;
        Action::Invalid {
            reason,
            reply: self.tagged(b"", BAD),
            quit: false,
        }
    }

    fn challenge(&mut self, state: State, line: &[u8]) -> Action {
        self.state = Some(state);
        Action::Reply(line.to_vec())
    }

    fn command(&mut self, verb: Verb, args: &[Vec<u8>], cfg: &Config<'_>) -> Action {
        match verb {
            Verb::Login => match args {
                [login, passwd] if !login.is_empty() && !cfg.login_needs_tls() => {
                    Action::Authenticate(Credentials {
                        method: AuthMethod::Plain,
                        login: login.clone(),
                        passwd: passwd.clone(),
                    })
                }
                _ => self.invalid(Invalid(None)),
            },
            Verb::Authenticate => self.authenticate(args, cfg),
            Verb::Capability => {
                let caps = cfg.capabilities;
                let text = match (cfg.tls, cfg.starttls) {
                    (false, StartTls::On) => &caps.starttls,
                    (false, StartTls::Only) => &caps.starttls_only,
                    _ => &caps.plain,
                };
                Action::Reply(self.tagged(text, OK))
            }
            Verb::Logout => Action::Quit(self.tagged(BYE, OK)),
            Verb::Noop => Action::Reply(self.tagged(b"", OK)),
            Verb::Starttls if !cfg.tls && cfg.starttls != StartTls::Off => {
                Action::StartTls(self.tagged(b"", OK))
            }
            Verb::Starttls => self.invalid(Invalid(None)),
        }
    }

    fn authenticate(&mut self, args: &[Vec<u8>], cfg: &Config<'_>) -> Action {
        if cfg.login_needs_tls() {
            return self.invalid(Invalid(None));
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        match sasl::mechanism(&args) {
            Some(Mechanism::Login) => self.challenge(State::AuthLoginUsername, USERNAME),
            Some(Mechanism::LoginUsername(user)) => match sasl::login_username(user) {
                Ok(login) => self.challenge(State::AuthLoginPassword(login), PASSWORD),
                Err(e) => self.invalid(e),
            },
            Some(Mechanism::Plain) => self.challenge(State::AuthPlain, PLAIN_NEXT),
            Some(Mechanism::PlainResponse(resp)) => self.finish(sasl::plain(resp)),
            Some(Mechanism::CramMd5) if cfg.enabled(auth_bits::CRAM_MD5) => match cfg.salt {
                Some(salt) => {
                    let line = sasl::cram_md5_challenge(b"+ ", salt);
                    self.challenge(State::AuthCramMd5, &line)
                }
                None => self.invalid(Invalid(None)),
            },
            Some(Mechanism::External) if cfg.enabled(auth_bits::EXTERNAL) => {
                self.challenge(State::AuthExternal, USERNAME)
            }
            // hardening: stock accepts this even without `external`
            Some(Mechanism::ExternalResponse(resp)) if cfg.enabled(auth_bits::EXTERNAL) => {
                self.finish(sasl::external(resp))
            }
            _ => self.invalid(Invalid(None)),
        }
    }

    fn finish(&mut self, result: Result<Credentials, Invalid>) -> Action {
        match result {
            Ok(creds) => Action::Authenticate(creds),
            Err(e) => self.invalid(e),
        }
    }

    fn sasl(&mut self, state: State, response: &[u8]) -> Action {
        match state {
            State::AuthLoginUsername => match sasl::login_username(response) {
                Ok(login) => self.challenge(State::AuthLoginPassword(login), PASSWORD),
                Err(e) => self.invalid(e),
            },
            State::AuthLoginPassword(login) => match sasl::login_password(response) {
                Ok(passwd) => Action::Authenticate(Credentials {
                    method: AuthMethod::Plain,
                    login,
                    passwd,
                }),
                Err(e) => self.invalid(e),
            },
            State::AuthPlain => self.finish(sasl::plain(response)),
            State::AuthCramMd5 => self.finish(sasl::cram_md5(response)),
            State::AuthExternal => self.finish(sasl::external(response)),
            State::Start => self.invalid(Invalid(None)),
        }
    }
}

#[cfg(test)]
mod tests;
