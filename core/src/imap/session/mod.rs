//! The IMAP not-authenticated state of `ngx_mail_imap_auth_state`: which
//! commands are allowed, the tagged and untagged replies, SASL exchanges,
//! and when the client has said enough to ask the auth server.

use std::borrow::Cow;

use super::parser::{Event, Parser, Verb};
use super::Capabilities;
use crate::sasl::{self, Exchange, Next, Refusal};
use crate::{Action, AuthMethod, Credentials, Invalid, Reply, StartTls, Step};

const OK: &[u8] = b"OK completed\r\n";
const BAD: &[u8] = b"BAD invalid command\r\n";
const BYE: &[u8] = b"* BYE\r\n";
pub const CONTINUE: &[u8] = b"+ OK\r\n";

/// An IMAP session's view of its server's configuration.
pub type Config<'a> = crate::Config<'a, Capabilities>;

#[derive(Debug, Default)]
pub struct ImapSession {
    parser: Parser,
    /// A SASL exchange in progress (the next line is a response to it).
    sasl: Option<Exchange>,
}

impl ImapSession {
    /// The tag of the command being answered, with its space (`a1 `).
    pub fn tag(&self) -> &[u8] {
        self.parser.tag()
    }

    /// Back to the start after a refused login the client may retry.
    pub fn reset(&mut self) {
        self.sasl = None;
        self.parser.reset();
    }

    /// The auth server's SASL error challenge went out: the next line is
    /// the client's dummy response, answered with the AUTHENTICATE's tag.
    pub fn sasl_refused(&mut self, refusal: Refusal) {
        self.sasl = Some(Exchange::Refused(refusal));
        self.parser.expect_continuation();
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

    fn tagged_reply(&self, text: &[u8], body: &[u8]) -> Reply<'static> {
        Cow::Owned(self.tagged(text, body))
    }

    /// The auth server's refusal: `tag NO text`.
    pub fn auth_error_reply(&self, text: &[u8]) -> Vec<u8> {
        let mut body = b"NO ".to_vec();
        body.extend_from_slice(text);
        body.extend_from_slice(b"\r\n");
        self.tagged(b"", &body)
    }

    /// The buffer filled up with no whole command in it (a literal
    /// included): `tag BAD`, after which the session ends.
    pub fn too_long(&mut self) -> Action<'static> {
        let reply = self.tagged_reply(b"", BAD);
        self.reset();
        Action::Quit(reply)
    }

    /// Handles what is buffered of the current command.
    pub fn step<'c>(&mut self, buf: &[u8], cfg: &Config<'c>) -> Step<'c> {
        match self.parser.feed(buf) {
            Event::Incomplete => Step::Incomplete,
            // the literal's bytes stay buffered; the reply is untagged
            Event::Continue => Step::Done {
                consumed: 0,
                action: Action::Continue(Cow::Borrowed(CONTINUE)),
            },
            Event::Invalid { consumed, quit } => {
                self.sasl = None;
                self.parser.reset();
                Step::Done {
                    consumed,
                    action: Action::Invalid {
                        reason: Invalid(None),
                        reply: self.tagged_reply(b"", BAD),
                        quit,
                        counted: true,
                    },
                }
            }
            Event::Command(cmd) => {
                let action = match (self.sasl.take(), cmd.verb) {
                    (None, Some(verb)) => self.command(verb, &cmd.args, cfg),
                    (None, None) => self.refused(Invalid(None)),
                    (Some(exchange), _) => {
                        let args: Vec<&[u8]> = cmd.args.iter().map(Vec::as_slice).collect();
                        self.next(exchange.respond(&args), cfg)
                    }
                };
                if self.sasl.is_some() {
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

    /// `tag BAD` for an ID list that is not RFC 2971's: a syntax error,
    /// counted toward `max_errors` as the parser's are.
    fn malformed(&mut self) -> Action<'static> {
        self.sasl = None;
        Action::malformed(self.tagged_reply(b"", BAD))
    }

    /// `tag BAD` for a well-formed command refused here, with the reason to
    /// log; stock does not count it toward `max_errors`.
    fn refused(&mut self, reason: Invalid) -> Action<'static> {
        self.sasl = None;
        Action::refused(reason, self.tagged_reply(b"", BAD))
    }

    fn command(&mut self, verb: Verb, args: &[Vec<u8>], cfg: &Config<'_>) -> Action<'static> {
        match verb {
            Verb::Login => match args {
                [login, passwd] if !login.is_empty() && !cfg.login_needs_tls() => {
                    Action::Authenticate(Credentials {
                        method: AuthMethod::Plain,
                        login: login.clone(),
                        passwd: passwd.clone(),
                    })
                }
                _ => self.refused(Invalid(None)),
            },
            Verb::Authenticate => self.authenticate(args, cfg),
            Verb::Capability => {
                let caps = cfg.capabilities;
                let text = match (cfg.tls, cfg.starttls) {
                    (false, StartTls::On) => &caps.starttls,
                    (false, StartTls::Only) => &caps.starttls_only,
                    _ => &caps.plain,
                };
                Action::Reply(self.tagged_reply(text, OK))
            }
            Verb::Logout => Action::Quit(self.tagged_reply(BYE, OK)),
            Verb::Noop => Action::Reply(self.tagged_reply(b"", OK)),
            Verb::Starttls if !cfg.tls && cfg.starttls != StartTls::Off => {
                Action::StartTls(self.tagged_reply(b"", OK))
            }
            Verb::Starttls => self.refused(Invalid(None)),
            // RFC 2971: answered here, the client's list never forwarded
            Verb::Id => match args {
                [list] if super::id::valid_list(list) => {
                    Action::Reply(self.tagged_reply(&cfg.capabilities.id, OK))
                }
                _ => self.malformed(),
            },
        }
    }

    fn authenticate(&mut self, args: &[Vec<u8>], cfg: &Config<'_>) -> Action<'static> {
        if cfg.login_needs_tls() {
            return self.refused(Invalid(None));
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.next(sasl::start(&args, cfg.offered()), cfg)
    }

    /// Prompts are untagged; the tag waits for the exchange's end.
    fn next(&mut self, next: Result<Next, Invalid>, cfg: &Config<'_>) -> Action<'static> {
        match next {
            Ok(Next::Prompt(exchange, prompt)) => {
                self.sasl = Some(exchange);
                Action::Reply(Cow::Owned(sasl::prompt_line(
                    b"+ ",
                    prompt,
                    cfg.salt.unwrap_or_default(),
                )))
            }
            Ok(Next::Done(creds)) => Action::Authenticate(creds),
            // the refusal carries the AUTHENTICATE's tag; the next command
            // brings its own
            Ok(Next::Refused { reply, quit }) => {
                self.parser.clear_tag();
                match quit {
                    false => Action::Reply(Cow::Owned(reply)),
                    true => Action::Quit(Cow::Owned(reply)),
                }
            }
            Ok(Next::Cancelled { quit }) => Action::Invalid {
                reason: Invalid(None),
                reply: self.tagged_reply(b"", BAD),
                quit,
                counted: false,
            },
            Err(e) => self.refused(e),
        }
    }
}

#[cfg(test)]
mod tests;
