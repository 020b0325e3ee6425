//! The ManageSieve command grammar of RFC 5804 section 4, restartable: a
//! command name of letters (any case), then strings separated by spaces,
//! each a quoted string (at most 1024 octets of UTF-8, no NUL, CR or LF;
//! `\` escapes `"` and `\` only) or a literal `{n+}` or `{n}`. Both literal
//! forms are taken at once, as Dovecot takes them: ManageSieve has no
//! continuation request for a client's literal. After an AUTHENTICATE
//! challenge the next line is the client's response: one string.
//!
//! The parser keeps its place between calls, so a command that arrives a
//! byte at a time is scanned once. Positions are relative to the start of
//! the command in the caller's buffer, which the caller may move (compact)
//! but never cut until the command is done.

use super::MAX_QUOTED;

/// AUTHENTICATE takes the most: a mechanism and an initial response.
const MAX_ARGS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Authenticate,
    Capability,
    Logout,
    Noop,
    Starttls,
}

impl Verb {
    fn from_bytes(word: &[u8]) -> Option<Verb> {
        let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
        Some(if is("AUTHENTICATE") {
            Verb::Authenticate
        } else if is("CAPABILITY") {
            Verb::Capability
        } else if is("LOGOUT") {
            Verb::Logout
        } else if is("NOOP") {
            Verb::Noop
        } else if is("STARTTLS") {
            Verb::Starttls
        } else {
            return None;
        })
    }
}

/// What the line being parsed is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// A command served before login.
    Command(Verb),
    /// A well-formed command name this side of login does not know
    /// (LISTSCRIPTS, PUTSCRIPT, ...): parsed to its end, literals and all,
    /// then refused.
    #[default]
    Unknown,
    /// The client's response to an AUTHENTICATE challenge.
    Response,
}

/// Where the parser stands in the current line. Each state carries the
/// positions and counts it needs (relative to the line's start) and nothing
/// else, so no field can be left over from an earlier state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum St {
    /// Before the command's first byte.
    #[default]
    Start,
    /// In the command name that begins at `start`.
    Command { start: usize },
    /// The line is refused; skipping to its LF.
    Invalid,
    /// After the command name or a space: more spaces, a string, or the
    /// line's end.
    SpacesBeforeArgument,
    /// After a string: a space or the line's end.
    AfterArgument,
    /// In a quoted string whose value begins at `start`; `escaped` once it
    /// has held a backslash (its value is then unescaped).
    Quoted { start: usize, escaped: bool },
    /// Right after a backslash: `"` or `\` must follow.
    Backslash { start: usize },
    /// After `{`: `len` is the value of the digits so far, if any.
    Literal { len: Option<usize> },
    /// After `{len+`: `}` must follow.
    NoSyncLiteral { len: usize },
    /// After `}`: CR LF or LF must follow, then `len` bytes of data.
    LiteralEnd { len: usize, cr: bool },
    /// In a literal's data, which begins at `start`; `remaining` bytes are
    /// still to come.
    LiteralArgument { start: usize, remaining: usize },
    /// After CR: LF must follow.
    AlmostDone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

/// What one call to [`Parser::feed`] found.
#[must_use = "a command or a refusal may be due"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Not a whole line yet; call again with more bytes.
    Incomplete,
    /// A whole command (or SASL response) of `consumed` bytes.
    Command(Command),
    /// A line of `consumed` bytes that is malformed (skipped to its LF) or
    /// names a command not served before login; `quit` when it announced a
    /// literal that was not read, whose data would follow.
    Invalid { consumed: usize, quit: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub consumed: usize,
    /// `None` for the response to an AUTHENTICATE challenge.
    pub verb: Option<Verb>,
    pub args: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct Parser {
    st: St,
    /// Where the next call resumes scanning.
    scanned: usize,
    kind: Kind,
    args: Vec<Span>,
}

impl Parser {
    /// After an AUTHENTICATE challenge: the next line is one string.
    pub fn expect_continuation(&mut self) {
        self.reset();
        self.st = St::SpacesBeforeArgument;
        self.kind = Kind::Response;
    }

    /// Back to expecting a command.
    pub fn reset(&mut self) {
        self.st = St::Start;
        self.kind = Kind::Unknown;
        self.scanned = 0;
        self.args.clear();
    }

    fn max_args(&self) -> usize {
        match self.kind {
            Kind::Response => 1,
            _ => MAX_ARGS,
        }
    }

    fn value(buf: &[u8], span: Span) -> Vec<u8> {
        let raw = buf.get(span.start..span.end).unwrap_or_default();
        if !span.escaped {
            return raw.to_vec();
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut it = raw.iter();
        while let Some(&b) = it.next() {
            match b {
                b'\\' => out.extend(it.next()),
                _ => out.push(b),
            }
        }
        out
    }

    #[expect(
        clippy::arithmetic_side_effects,
        reason = "positions in `buf`: p < buf.len() <= isize::MAX"
    )]
    fn invalid_from(&mut self, buf: &[u8], p: usize) -> Event {
        self.st = St::Invalid;
        let rest = buf.get(p..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let end = p + lf;
                let line = buf.get(..end).unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                self.reset();
                Event::Invalid {
                    consumed: end + 1,
                    quit: line.ends_with(b"}"),
                }
            }
            None => {
                self.scanned = buf.len();
                Event::Incomplete
            }
        }
    }

    /// The line ends at `p` on `ch` (CR or LF).
    fn line_end(&mut self, buf: &[u8], p: usize, ch: u8) -> Option<Event> {
        if ch == b'\n' {
            return Some(self.done(buf, p));
        }
        self.st = St::AlmostDone;
        None
    }

    /// Scans `buf` (the current line from its first byte) from where the
    /// last call stopped.
    #[expect(
        clippy::arithmetic_side_effects,
        reason = "positions in `buf`: p < buf.len() <= isize::MAX, a state's start <= p, and a literal's data is taken only as far as buf.len() - p covers it"
    )]
    pub fn feed(&mut self, buf: &[u8]) -> Event {
        let mut p = self.scanned;
        while let Some(&ch) = buf.get(p) {
            match self.st {
                St::Start if ch.is_ascii_alphabetic() => self.st = St::Command { start: p },
                St::Start | St::Invalid => return self.invalid_from(buf, p),
                St::Command { .. } if ch.is_ascii_alphabetic() => {}
                St::Command { start } => {
                    if !matches!(ch, b' ' | b'\r' | b'\n') {
                        return self.invalid_from(buf, p);
                    }
                    let word = buf.get(start..p).unwrap_or_default();
                    self.kind = Verb::from_bytes(word).map_or(Kind::Unknown, Kind::Command);
                    if ch == b' ' {
                        self.st = St::SpacesBeforeArgument;
                    } else if let Some(event) = self.line_end(buf, p, ch) {
                        return event;
                    }
                }
                St::SpacesBeforeArgument => match ch {
                    b' ' => {}
                    b'\r' | b'\n' => {
                        if let Some(event) = self.line_end(buf, p, ch) {
                            return event;
                        }
                    }
                    _ if self.args.len() >= self.max_args() => return self.invalid_from(buf, p),
                    b'"' => {
                        self.st = St::Quoted {
                            start: p + 1,
                            escaped: false,
                        }
                    }
                    b'{' => self.st = St::Literal { len: None },
                    _ => return self.invalid_from(buf, p),
                },
                St::AfterArgument => match ch {
                    b' ' => self.st = St::SpacesBeforeArgument,
                    b'\r' | b'\n' => {
                        if let Some(event) = self.line_end(buf, p, ch) {
                            return event;
                        }
                    }
                    _ => return self.invalid_from(buf, p),
                },
                St::Quoted { start, escaped } => match ch {
                    b'"' => {
                        let raw = buf.get(start..p).unwrap_or_default();
                        if core::str::from_utf8(raw).is_err() {
                            return self.invalid_from(buf, p);
                        }
                        self.args.push(Span {
                            start,
                            end: p,
                            escaped,
                        });
                        self.st = St::AfterArgument;
                    }
                    b'\\' => self.st = St::Backslash { start },
                    0 | b'\r' | b'\n' => return self.invalid_from(buf, p),
                    _ if p - start >= MAX_QUOTED => return self.invalid_from(buf, p),
                    _ => {}
                },
                St::Backslash { start } => match ch {
                    b'"' | b'\\' if p - start < MAX_QUOTED => {
                        self.st = St::Quoted {
                            start,
                            escaped: true,
                        }
                    }
                    _ => return self.invalid_from(buf, p),
                },
                St::Literal { len } => match (ch, len) {
                    (b'0'..=b'9', _) => {
                        let digit = usize::from(ch - b'0');
                        match len
                            .unwrap_or(0)
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(digit))
                        {
                            Some(n) => self.st = St::Literal { len: Some(n) },
                            None => return self.invalid_from(buf, p),
                        }
                    }
                    (b'+', Some(len)) => self.st = St::NoSyncLiteral { len },
                    (b'}', Some(len)) => self.st = St::LiteralEnd { len, cr: false },
                    _ => return self.invalid_from(buf, p),
                },
                St::NoSyncLiteral { len } => match ch {
                    b'}' => self.st = St::LiteralEnd { len, cr: false },
                    _ => return self.invalid_from(buf, p),
                },
                St::LiteralEnd { len, cr } => match ch {
                    b'\r' if !cr => self.st = St::LiteralEnd { len, cr: true },
                    b'\n' => {
                        self.st = St::LiteralArgument {
                            start: p + 1,
                            remaining: len,
                        }
                    }
                    _ => return self.invalid_from(buf, p),
                },
                St::LiteralArgument { start, remaining } => {
                    // the literal's bytes are taken whole, CR and LF
                    // included, as far as they have come
                    let taken = remaining.min(buf.len() - p);
                    p += taken;
                    let remaining = remaining - taken;
                    if remaining == 0 {
                        self.args.push(Span {
                            start,
                            end: p,
                            escaped: false,
                        });
                        self.st = St::AfterArgument;
                    } else {
                        self.st = St::LiteralArgument { start, remaining };
                    }
                    continue;
                }
                St::AlmostDone => match ch {
                    b'\n' => return self.done(buf, p),
                    _ => return self.invalid_from(buf, p),
                },
            }
            p += 1;
        }
        self.scanned = p;
        Event::Incomplete
    }

    #[expect(
        clippy::arithmetic_side_effects,
        reason = "lf < buf.len() <= isize::MAX"
    )]
    fn done(&mut self, buf: &[u8], lf: usize) -> Event {
        let consumed = lf + 1;
        let verb = match self.kind {
            Kind::Command(verb) => Some(verb),
            Kind::Response => None,
            Kind::Unknown => {
                self.reset();
                return Event::Invalid {
                    consumed,
                    quit: false,
                };
            }
        };
        let args = self.args.iter().map(|&s| Self::value(buf, s)).collect();
        self.reset();
        Event::Command(Command {
            consumed,
            verb,
            args,
        })
    }
}

#[cfg(test)]
mod tests;
