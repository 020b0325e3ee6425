//! The IMAP command grammar of `ngx_mail_imap_parse_command`, restartable:
//! a tag (letters, digits, `-._`, at most 32), a command, then at most three
//! arguments, each an atom, a quoted string (`\` escapes any character) or a
//! literal `{n}` / `{n+}`. A synchronizing literal asks for `+ OK` first.
//!
//! The parser keeps its place between calls, so a command that arrives a
//! byte at a time is scanned once. Positions are relative to the start of
//! the command in the caller's buffer, which the caller may move (compact)
//! but never cut until the command is done.

const MAX_TAG: usize = 32;
const MAX_ARGS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Login,
    Logout,
    Capability,
    Noop,
    Starttls,
    Authenticate,
    /// RFC 2971; its list is taken whole, as one argument.
    Id,
}

impl Verb {
    fn from_bytes(word: &[u8]) -> Option<Verb> {
        let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
        Some(if is("NOOP") {
            Verb::Noop
        } else if is("LOGIN") {
            Verb::Login
        } else if is("LOGOUT") {
            Verb::Logout
        } else if is("STARTTLS") {
            Verb::Starttls
        } else if is("CAPABILITY") {
            Verb::Capability
        } else if is("AUTHENTICATE") {
            Verb::Authenticate
        } else if is("ID") {
            Verb::Id
        } else {
            return None;
        })
    }
}

/// Where the parser stands in the current command. Each state carries the
/// positions and counts it needs (relative to the command's start) and
/// nothing else, so no field can be left over from an earlier state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum St {
    /// Before the command's first byte.
    #[default]
    Start,
    /// In the tag that begins at `start`.
    Tag {
        start: usize,
    },
    /// The line is refused; skipping to its LF.
    Invalid,
    SpacesBeforeCommand,
    /// In the command name that begins at `start`.
    Command {
        start: usize,
    },
    SpacesBeforeArgument,
    /// In an atom (or a SASL response line) that begins at `start`.
    Argument {
        start: usize,
    },
    /// In a quoted string whose value begins at `start`; `escaped` once it
    /// has held a backslash (its value is then unescaped).
    Quoted {
        start: usize,
        escaped: bool,
    },
    /// Right after a backslash in a quoted string: the next byte is taken
    /// as it is.
    Backslash {
        start: usize,
    },
    /// After `{`: `len` is the value of the digits so far.
    Literal {
        len: usize,
    },
    /// After `{len+`: `}` must follow.
    NoSyncLiteral {
        len: usize,
    },
    /// After `}`: CR LF must follow, then `len` bytes of data; a
    /// synchronizing (`sync`) literal asks for `+ OK` first.
    StartLiteralArgument {
        len: usize,
        sync: bool,
    },
    /// In a literal's data, which begins at `start`; `remaining` bytes are
    /// still to come.
    LiteralArgument {
        start: usize,
        remaining: usize,
    },
    /// ID's list, taken to the line's end as one argument from `start`.
    IdList {
        start: usize,
    },
    /// After a literal's data: SP or the line end.
    EndLiteralArgument,
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
#[must_use = "a command, a literal's `+ OK` or a refusal may be due"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Not a whole command yet; call again with more bytes.
    Incomplete,
    /// A synchronizing literal was announced: send `+ OK`, keep the bytes.
    Continue,
    /// A whole command of `consumed` bytes.
    Command(Command),
    /// A malformed line of `consumed` bytes, skipped to its LF; `quit` when
    /// it announced a non-synchronizing literal whose data would follow.
    Invalid { consumed: usize, quit: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub consumed: usize,
    /// `None` for a SASL continuation line.
    pub verb: Option<Verb>,
    pub args: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct Parser {
    st: St,
    /// Where the next call resumes scanning.
    scanned: usize,
    tag: Vec<u8>,
    verb: Option<Verb>,
    args: Vec<Span>,
}

fn tag_char(ch: u8) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, b'-' | b'.' | b'_')
}

impl Parser {
    /// The tag of the last command, with its trailing space, as nginx keeps
    /// it (`a1 `); empty when there is none.
    pub fn tag(&self) -> &[u8] {
        &self.tag
    }

    /// Forgets the tag: the next reply without one is untagged (`* `).
    pub fn clear_tag(&mut self) {
        self.tag.clear();
    }

    /// After AUTHENTICATE asked for more: the next line is a SASL response,
    /// parsed as arguments, and the tag is kept for the final reply.
    pub fn expect_continuation(&mut self) {
        self.reset_command();
        self.st = St::Argument { start: 0 };
        self.verb = None;
    }

    /// Back to expecting a tagged command.
    pub fn reset(&mut self) {
        self.reset_command();
        self.st = St::Start;
    }

    fn reset_command(&mut self) {
        self.scanned = 0;
        self.args.clear();
    }

    fn push_arg(&mut self, start: usize, end: usize, escaped: bool) {
        self.args.push(Span {
            start,
            end,
            escaped,
        });
    }

    fn value(buf: &[u8], span: Span) -> Vec<u8> {
        let raw = buf.get(span.start..span.end).unwrap_or_default();
        if !span.escaped {
            return raw.to_vec();
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut it = raw.iter();
        while let Some(&b) = it.next() {
            if b == b'\\' {
                if let Some(&next) = it.next() {
                    out.push(next);
                }
            } else {
                out.push(b);
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
                // as stock: the LF must be more than 4 bytes in, its CR
                // counted ("a{+}\n" does not end the session)
                let quit = end > 4 && line.ends_with(b"+}");
                self.reset();
                Event::Invalid {
                    consumed: end + 1,
                    quit,
                }
            }
            None => {
                self.scanned = buf.len();
                Event::Incomplete
            }
        }
    }

    /// An argument ends at `p` on `ch` (SP, CR or LF): on to the next one,
    /// or to the line's end.
    fn end_argument(
        &mut self,
        buf: &[u8],
        p: usize,
        ch: u8,
        start: usize,
        escaped: bool,
    ) -> Option<Event> {
        self.push_arg(start, p, escaped);
        match ch {
            b'\n' => return Some(self.done(buf, p)),
            b'\r' => self.st = St::AlmostDone,
            _ => self.st = St::SpacesBeforeArgument,
        }
        None
    }

    /// Scans `buf` (the current command from its first byte) from where the
    /// last call stopped.
    #[expect(
        clippy::arithmetic_side_effects,
        reason = "positions in `buf`: p < buf.len() <= isize::MAX, a state's start <= p, and a literal's data is taken only as far as buf.len() - p covers it"
    )]
    pub fn feed(&mut self, buf: &[u8]) -> Event {
        let mut p = self.scanned;
        while let Some(&ch) = buf.get(p) {
            match self.st {
                St::Start => {
                    self.tag.clear();
                    self.st = St::Tag { start: p };
                    // this byte is the tag's first
                    continue;
                }
                St::Tag { start } => match ch {
                    // hardening: stock takes an empty tag
                    b' ' if p == start => return self.invalid_from(buf, p),
                    b' ' => {
                        self.tag = buf.get(start..=p).unwrap_or_default().to_vec();
                        self.st = St::SpacesBeforeCommand;
                    }
                    _ if !tag_char(ch) || p - start >= MAX_TAG => {
                        return self.invalid_from(buf, p);
                    }
                    _ => {}
                },
                St::Invalid => return self.invalid_from(buf, p),
                St::SpacesBeforeCommand => match ch {
                    b' ' => {}
                    b'\r' | b'\n' => return self.invalid_from(buf, p),
                    _ => self.st = St::Command { start: p },
                },
                St::Command { start } => {
                    if matches!(ch, b' ' | b'\r' | b'\n') {
                        let word = buf.get(start..p).unwrap_or_default();
                        match Verb::from_bytes(word) {
                            Some(v) => self.verb = Some(v),
                            None => return self.invalid_from(buf, p),
                        }
                        match ch {
                            b' ' if self.verb == Some(Verb::Id) => {
                                self.st = St::IdList { start: p + 1 }
                            }
                            b' ' => self.st = St::SpacesBeforeArgument,
                            b'\r' => self.st = St::AlmostDone,
                            _ => return self.done(buf, p),
                        }
                    } else if !ch.is_ascii_alphabetic() {
                        return self.invalid_from(buf, p);
                    }
                }
                St::SpacesBeforeArgument => match ch {
                    b' ' => {}
                    b'\r' => self.st = St::AlmostDone,
                    b'\n' => return self.done(buf, p),
                    _ if self.args.len() >= MAX_ARGS => return self.invalid_from(buf, p),
                    b'"' => {
                        self.st = St::Quoted {
                            start: p + 1,
                            escaped: false,
                        }
                    }
                    b'{' => self.st = St::Literal { len: 0 },
                    _ => self.st = St::Argument { start: p },
                },
                St::Argument { start } => {
                    if matches!(ch, b' ' | b'\r' | b'\n') {
                        if let Some(event) = self.end_argument(buf, p, ch, start, false) {
                            return event;
                        }
                    }
                }
                St::Quoted { start, escaped } => match ch {
                    b'"' => {
                        self.push_arg(start, p, escaped);
                        self.st = St::SpacesBeforeArgument;
                    }
                    // as stock, a line end also ends a quoted string
                    b'\r' | b'\n' => {
                        if let Some(event) = self.end_argument(buf, p, ch, start, escaped) {
                            return event;
                        }
                    }
                    b'\\' => self.st = St::Backslash { start },
                    _ => {}
                },
                St::Backslash { start } => match ch {
                    b'\r' | b'\n' => return self.invalid_from(buf, p),
                    _ => {
                        self.st = St::Quoted {
                            start,
                            escaped: true,
                        }
                    }
                },
                // as stock since 1.29.6: a length that could not take one
                // more digit is refused, whatever comes next
                St::Literal { len } if len > usize::MAX / 10 => return self.invalid_from(buf, p),
                St::Literal { len } => match ch {
                    b'0'..=b'9' => {
                        // hardening: stock lets the length wrap around
                        let digit = char::from(ch)
                            .to_digit(10)
                            .and_then(|d| usize::try_from(d).ok());
                        match len.checked_mul(10).and_then(|n| n.checked_add(digit?)) {
                            Some(len) => self.st = St::Literal { len },
                            None => return self.invalid_from(buf, p),
                        }
                    }
                    b'}' => self.st = St::StartLiteralArgument { len, sync: true },
                    b'+' => self.st = St::NoSyncLiteral { len },
                    _ => return self.invalid_from(buf, p),
                },
                St::NoSyncLiteral { len } => match ch {
                    b'}' => self.st = St::StartLiteralArgument { len, sync: false },
                    _ => return self.invalid_from(buf, p),
                },
                St::StartLiteralArgument { len, sync } => match ch {
                    b'\r' => {}
                    b'\n' => {
                        self.st = St::LiteralArgument {
                            start: p + 1,
                            remaining: len,
                        };
                        if sync {
                            self.scanned = p + 1;
                            return Event::Continue;
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
                        self.push_arg(start, p, false);
                        self.st = St::EndLiteralArgument;
                    } else {
                        self.st = St::LiteralArgument { start, remaining };
                    }
                    continue;
                }
                St::EndLiteralArgument => match ch {
                    // nginx 1.29.6: a literal is followed by SP or CRLF only
                    b'\r' => self.st = St::AlmostDone,
                    b'\n' => return self.done(buf, p),
                    b' ' => self.st = St::SpacesBeforeArgument,
                    _ => return self.invalid_from(buf, p),
                },
                St::IdList { start } => {
                    if ch == b'\n' {
                        let end = if p > start && buf.get(p - 1) == Some(&b'\r') {
                            p - 1
                        } else {
                            p
                        };
                        self.push_arg(start, end, false);
                        return self.done(buf, p);
                    }
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
        let args = self.args.iter().map(|&s| Self::value(buf, s)).collect();
        let cmd = Command {
            consumed: lf + 1,
            verb: self.verb,
            args,
        };
        self.reset();
        Event::Command(cmd)
    }
}

#[cfg(test)]
mod tests;
