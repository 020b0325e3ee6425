//! The SMTP state before the backend takes over (`ngx_mail_smtp_auth_state`):
//! HELO/EHLO, AUTH with SASL exchanges, and with `smtp_auth none` the
//! envelope that is sent to the auth server.

use std::borrow::Cow;

use super::parser::{parse_line, Parsed, Verb};
use super::Replies;
use crate::sasl::{self, Exchange, Next, Refusal};
use crate::{auth_bits, Action, Invalid, StartTls, Step};

const OK: &[u8] = b"250 2.0.0 OK\r\n";
const BYE: &[u8] = b"221 2.0.0 Bye\r\n";
const START_TLS: &[u8] = b"220 2.0.0 Start TLS\r\n";
pub const INVALID_COMMAND: &[u8] = b"500 5.5.1 Invalid command\r\n";
const INVALID_ARGUMENT: &[u8] = b"501 5.5.4 Invalid argument\r\n";
const AUTH_REQUIRED: &[u8] = b"530 5.7.1 Authentication required\r\n";
const BAD_SEQUENCE: &[u8] = b"503 5.5.1 Bad sequence of commands\r\n";

/// An SMTP session's view of its server's configuration.
pub type Config<'a> = crate::Config<'a, Replies>;

/// What `smtp_auth none` sends to the auth server (`Auth-SMTP-*`) and
/// replays to the backend: the whole command lines, as stock keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub helo: Vec<u8>,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Start,
    Sasl(Exchange),
}

#[derive(Debug)]
pub struct SmtpSession {
    state: State,
    envelope: Envelope,
    /// EHLO was used (the backend is greeted with EHLO too).
    pub esmtp: bool,
}

impl Default for SmtpSession {
    fn default() -> Self {
        SmtpSession {
            state: State::Start,
            envelope: Envelope::default(),
            esmtp: false,
        }
    }
}

impl SmtpSession {
    /// The client's HELO/EHLO argument, for the backend and `Auth-SMTP-Helo`.
    pub fn helo(&self) -> &[u8] {
        &self.envelope.helo
    }

    /// Back to the start after a refused login the client may retry.
    pub fn reset(&mut self) {
        self.state = State::Start;
    }

    /// The auth server's SASL error challenge went out: the next line is
    /// the client's dummy response.
    pub fn sasl_refused(&mut self, refusal: Refusal) {
        self.state = State::Sasl(Exchange::Refused(refusal));
    }

    /// The buffer filled up with no whole line in it: the refusal, after
    /// which the session ends.
    pub fn too_long(&mut self) -> Action<'static> {
        self.reset();
        Action::Quit(Cow::Borrowed(INVALID_COMMAND))
    }

    pub fn step<'c>(&mut self, buf: &[u8], cfg: &Config<'c>) -> Step<'c> {
        let continuation = self.state != State::Start;
        let (consumed, action) = match parse_line(buf, continuation) {
            Parsed::Incomplete => return Step::Incomplete,
            Parsed::Invalid { consumed } => (consumed, malformed()),
            Parsed::Line {
                consumed,
                args,
                verb,
            } => {
                let line = buf.get(..consumed).unwrap_or_default();
                // from the verb to the end of the last argument, as stock
                // keeps MAIL FROM and RCPT TO lines; a tab is an argument
                // byte there, as in stock's parser
                let line = line
                    .iter()
                    .rposition(|&b| !matches!(b, b' ' | b'\r' | b'\n'))
                    .and_then(|last| buf.get(..=last))
                    .unwrap_or_default();
                (consumed, self.handle(verb, &args, line, cfg))
            }
        };
        if matches!(
            action,
            Action::Invalid { .. } | Action::Authenticate(_) | Action::Relay(_)
        ) {
            self.state = State::Start;
        }
        Step::Done { consumed, action }
    }

    fn handle<'c>(
        &mut self,
        verb: Option<Verb>,
        args: &[&[u8]],
        line: &[u8],
        cfg: &Config<'c>,
    ) -> Action<'c> {
        let state = std::mem::replace(&mut self.state, State::Start);
        match (state, verb) {
            (State::Start, Some(verb)) => self.command(verb, args, line, cfg),
            (State::Sasl(exchange), None) => self.next(exchange.respond(args), cfg),
            _ => refused(Invalid(None)),
        }
    }

    fn command<'c>(
        &mut self,
        verb: Verb,
        args: &[&[u8]],
        line: &[u8],
        cfg: &Config<'c>,
    ) -> Action<'c> {
        match verb {
            Verb::Helo | Verb::Ehlo => {
                let [helo] = args else {
                    return Action::Reply(Cow::Borrowed(INVALID_ARGUMENT));
                };
                self.envelope = Envelope {
                    helo: helo.to_vec(),
                    ..Envelope::default()
                };
                if verb == Verb::Helo {
                    return Action::Reply(Cow::Borrowed(&cfg.capabilities.helo));
                }
                self.esmtp = true;
                let replies = cfg.capabilities;
                Action::Reply(Cow::Borrowed(match (cfg.tls, cfg.starttls) {
                    (false, StartTls::On) => &replies.ehlo_starttls,
                    (false, StartTls::Only) => &replies.ehlo_starttls_only,
                    _ => &replies.ehlo,
                }))
            }
            Verb::Auth => self.auth(args, cfg),
            Verb::Quit => Action::Quit(Cow::Borrowed(BYE)),
            Verb::Mail => {
                if !cfg.enabled(auth_bits::NONE) {
                    return Action::Rejected {
                        reply: Cow::Borrowed(AUTH_REQUIRED),
                    };
                }
                // `starttls only` holds for relaying too (nginx PR 705):
                // refused as AUTH is before STARTTLS, uncounted, unlogged
                if cfg.login_needs_tls() {
                    return refused(Invalid(None));
                }
                if !self.envelope.from.is_empty() {
                    return Action::Reply(Cow::Borrowed(BAD_SEQUENCE));
                }
                if args.is_empty() {
                    return Action::Reply(Cow::Borrowed(INVALID_ARGUMENT));
                }
                self.envelope.from = line.to_vec();
                Action::Reply(Cow::Borrowed(OK))
            }
            Verb::Rcpt => {
                if self.envelope.from.is_empty() {
                    return Action::Reply(Cow::Borrowed(BAD_SEQUENCE));
                }
                if args.is_empty() {
                    return Action::Reply(Cow::Borrowed(INVALID_ARGUMENT));
                }
                self.envelope.to = line.to_vec();
                Action::Relay(self.envelope.clone())
            }
            Verb::Rset => {
                self.envelope.from.clear();
                self.envelope.to.clear();
                Action::Reply(Cow::Borrowed(OK))
            }
            Verb::Noop => Action::Reply(Cow::Borrowed(OK)),
            Verb::Starttls if !cfg.tls && cfg.starttls != StartTls::Off => {
                // RFC 3207: nothing learned before STARTTLS is kept
                self.envelope = Envelope::default();
                Action::StartTls(Cow::Borrowed(START_TLS))
            }
            Verb::Starttls | Verb::Vrfy | Verb::Expn | Verb::Help => refused(Invalid(None)),
        }
    }

    fn auth<'c>(&mut self, args: &[&[u8]], cfg: &Config<'c>) -> Action<'c> {
        if cfg.login_needs_tls() {
            return refused(Invalid(None));
        }
        if args.is_empty() {
            return Action::Reply(Cow::Borrowed(INVALID_ARGUMENT));
        }
        self.next(sasl::start(args, cfg.offered()), cfg)
    }

    fn next<'c>(&mut self, next: Result<Next, Invalid>, cfg: &Config<'c>) -> Action<'c> {
        match next {
            Ok(Next::Prompt(exchange, prompt)) => {
                self.state = State::Sasl(exchange);
                Action::Reply(Cow::Owned(sasl::prompt_line(
                    b"334 ",
                    prompt,
                    cfg.salt.unwrap_or_default(),
                )))
            }
            Ok(Next::Done(creds)) => Action::Authenticate(creds),
            Ok(Next::Refused { reply, quit: false }) => Action::Reply(Cow::Owned(reply)),
            Ok(Next::Refused { reply, quit: true }) => Action::Quit(Cow::Owned(reply)),
            Ok(Next::Cancelled { quit }) => Action::Invalid {
                reason: Invalid(None),
                reply: Cow::Borrowed(INVALID_COMMAND),
                quit,
                counted: false,
            },
            Err(e) => refused(e),
        }
    }
}

/// `500 5.5.1 Invalid command` for a line the parser rejects.
fn malformed() -> Action<'static> {
    Action::malformed(Cow::Borrowed(INVALID_COMMAND))
}

/// `500 5.5.1 Invalid command` for a well-formed command refused here.
fn refused(reason: Invalid) -> Action<'static> {
    Action::refused(reason, Cow::Borrowed(INVALID_COMMAND))
}

#[cfg(test)]
mod tests;
