//! The ManageSieve non-authenticated state: which commands are allowed,
//! the replies, SASL exchanges (challenges and responses as strings, `"*"`
//! to cancel), and when the client has said enough to ask the auth server.

use std::borrow::Cow;

use super::parser::{Event, Parser, Verb};
use super::{string, Capabilities};
use crate::sasl::{self, Exchange, Next, Refusal};
use crate::{Action, Invalid, StartTls, Step};

const COMPLETED: &[u8] = b"OK \"completed\"\r\n";
const INVALID: &[u8] = b"NO \"invalid command\"\r\n";
const CANCELLED: &[u8] = b"NO \"authentication cancelled\"\r\n";
/// `starttls only` before TLS (RFC 5804 1.3's ENCRYPT-NEEDED).
const ENCRYPT_NEEDED: &[u8] = b"NO (ENCRYPT-NEEDED) \"TLS required\"\r\n";
/// The refusal that ends the session: a command too long for the buffer,
/// or one too many (`max_commands`).
const BYE: &[u8] = b"BYE \"invalid command\"\r\n";

/// A ManageSieve session's view of its server's configuration.
pub type Config<'a> = crate::Config<'a, Capabilities>;

#[derive(Debug, Default)]
pub struct SieveSession {
    parser: Parser,
    /// A SASL exchange in progress (the next line is a response to it).
    sasl: Option<Exchange>,
}

/// The greeting: the capability block and `OK`.
pub fn greeting<'c>(cfg: &Config<'c>) -> &'c [u8] {
    cfg.capabilities.greeting(cfg.starttls, cfg.tls)
}

/// The capability block and `OK`, as CAPABILITY is answered and as it
/// follows a STARTTLS handshake unasked (RFC 5804 2.2).
pub fn capability<'c>(cfg: &Config<'c>) -> &'c [u8] {
    cfg.capabilities.capability(cfg.starttls, cfg.tls)
}

fn refused(reason: Invalid) -> Action<'static> {
    Action::refused(reason, Cow::Borrowed(INVALID))
}

/// A line the parser rejected, counted toward `max_errors`.
fn invalid(quit: bool) -> Action<'static> {
    Action::Invalid {
        reason: Invalid(None),
        reply: Cow::Borrowed(INVALID),
        quit,
        counted: true,
    }
}

impl SieveSession {
    /// Back to the start after a refused login the client may retry.
    pub fn reset(&mut self) {
        self.sasl = None;
        self.parser.reset();
    }

    /// The auth server's SASL error challenge went out (bearer token
    /// mechanisms, which `sieve_auth` does not offer): the next line is the
    /// client's dummy response.
    pub fn sasl_refused(&mut self, refusal: Refusal) {
        self.sasl = Some(Exchange::Refused(refusal));
        self.parser.expect_continuation();
    }

    /// The buffer filled up with no whole command in it, or the client
    /// sent one command too many: `BYE`, after which the session ends.
    pub fn too_long(&mut self) -> Action<'static> {
        self.reset();
        Action::Quit(Cow::Borrowed(BYE))
    }

    /// Handles what is buffered of the current line.
    pub fn step<'c>(&mut self, buf: &[u8], cfg: &Config<'c>) -> Step<'c> {
        match self.parser.feed(buf) {
            Event::Incomplete => Step::Incomplete,
            Event::Invalid { consumed, quit } => {
                self.reset();
                Step::Done {
                    consumed,
                    action: invalid(quit),
                }
            }
            Event::Command(cmd) => {
                let action = match (self.sasl.take(), cmd.verb) {
                    (None, Some(verb)) => self.command(verb, &cmd.args, cfg),
                    (Some(exchange), None) => self.respond(exchange, &cmd.args, cfg),
                    // the parser reads a response only while an exchange
                    // is on
                    _ => invalid(false),
                };
                if self.sasl.is_some() {
                    self.parser.expect_continuation();
                }
                Step::Done {
                    consumed: cmd.consumed,
                    action,
                }
            }
        }
    }

    fn command<'c>(&mut self, verb: Verb, args: &[Vec<u8>], cfg: &Config<'c>) -> Action<'c> {
        match (verb, args) {
            (Verb::Capability, []) => Action::Reply(Cow::Borrowed(capability(cfg))),
            (Verb::Noop, []) => Action::Reply(Cow::Borrowed(COMPLETED)),
            // RFC 5804 2.11: the string comes back in a TAG response code
            (Verb::Noop, [tag]) => Action::Reply(Cow::Owned(
                [&b"OK (TAG "[..], &string(tag), b") \"completed\"\r\n"].concat(),
            )),
            (Verb::Logout, []) => Action::Quit(Cow::Borrowed(COMPLETED)),
            (Verb::Starttls, []) if !cfg.tls && cfg.starttls != StartTls::Off => {
                Action::StartTls(Cow::Borrowed(COMPLETED))
            }
            (Verb::Authenticate, [_] | [_, _]) if cfg.login_needs_tls() => Action::Invalid {
                reason: Invalid(None),
                reply: Cow::Borrowed(ENCRYPT_NEEDED),
                quit: false,
                counted: false,
            },
            (Verb::Authenticate, [_] | [_, _]) => {
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                self.next(sasl::start(&args, cfg.offered()), cfg)
            }
            _ => refused(Invalid(None)),
        }
    }

    /// The client's line after a challenge: one string, `"*"` to cancel
    /// (RFC 5804 2.1).
    fn respond(
        &mut self,
        exchange: Exchange,
        args: &[Vec<u8>],
        cfg: &Config<'_>,
    ) -> Action<'static> {
        match args {
            [cancel] if cancel == b"*" => Action::Reply(Cow::Borrowed(CANCELLED)),
            [response] => self.next(exchange.respond(&[response.as_slice()]), cfg),
            _ => invalid(false),
        }
    }

    /// A challenge is a string holding base64 (which needs no escaping).
    fn next(&mut self, next: Result<Next, Invalid>, cfg: &Config<'_>) -> Action<'static> {
        match next {
            Ok(Next::Prompt(exchange, prompt)) => {
                self.sasl = Some(exchange);
                let line = sasl::prompt_line(b"\"", prompt, cfg.salt.unwrap_or_default());
                let body = line.strip_suffix(b"\r\n").unwrap_or(&line);
                Action::Reply(Cow::Owned([body, b"\"\r\n"].concat()))
            }
            Ok(Next::Done(creds)) => Action::Authenticate(creds),
            Ok(Next::Refused { reply, quit: false }) => Action::Reply(Cow::Owned(reply)),
            Ok(Next::Refused { reply, quit: true }) => Action::Quit(Cow::Owned(reply)),
            Ok(Next::Cancelled { quit }) => Action::Invalid {
                reason: Invalid(None),
                reply: Cow::Borrowed(INVALID),
                quit,
                counted: false,
            },
            Err(e) => refused(e),
        }
    }
}

#[cfg(test)]
mod tests;
