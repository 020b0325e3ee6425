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
        } else {
            return None;
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Start,
    Tag,
    Invalid,
    SpacesBeforeCommand,
    Command,
    SpacesBeforeArgument,
    Argument,
    Backslash,
    Literal,
    NoSyncLiteral,
    StartLiteralArgument,
    LiteralArgument,
    EndLiteralArgument,
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

#[derive(Debug)]
pub struct Parser {
    st: St,
    scanned: usize,
    tag: Vec<u8>,
    tag_start: usize,
    cmd_start: usize,
    verb: Option<Verb>,
    args: Vec<Span>,
    arg_start: usize,
    quoted: bool,
    backslash: bool,
    literal_len: usize,
    no_sync: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            st: St::Start,
            scanned: 0,
            tag: Vec::new(),
            tag_start: 0,
            cmd_start: 0,
            verb: None,
            args: Vec::new(),
            arg_start: 0,
            quoted: false,
            backslash: false,
            literal_len: 0,
            no_sync: false,
        }
    }
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
        self.st = St::Argument;
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
        self.arg_start = 0;
        self.quoted = false;
        self.backslash = false;
        self.literal_len = 0;
        self.no_sync = false;
    }

    fn push_arg(&mut self, end: usize) {
        let escaped = std::mem::take(&mut self.backslash);
        self.args.push(Span {
            start: self.arg_start,
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
        reason = "positions in `buf`: p < buf.len() <= isize::MAX, tag_start <= p, and a literal is skipped only when buf.len() - p covers it"
    )]
    fn invalid_from(&mut self, buf: &[u8], p: usize) -> Event {
        self.st = St::Invalid;
        self.quoted = false;
        self.backslash = false;
        self.no_sync = false;
        self.literal_len = 0;
        let rest = buf.get(p..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let end = p + lf;
                let line = buf.get(..end).unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let quit = line.len() > 3 && line.ends_with(b"+}");
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

    /// Scans `buf` (the current command from its first byte) from where the
    /// last call stopped.
    #[expect(
        clippy::arithmetic_side_effects,
        reason = "positions in `buf`: p < buf.len() <= isize::MAX, tag_start <= p, and a literal is skipped only when buf.len() - p covers it"
    )]
    pub fn feed(&mut self, buf: &[u8]) -> Event {
        let mut p = self.scanned;
        while let Some(&ch) = buf.get(p) {
            match self.st {
                St::Start | St::Tag => {
                    if self.st == St::Start {
                        self.tag.clear();
                        self.tag_start = p;
                        self.st = St::Tag;
                    }
                    match ch {
                        // hardening: stock takes an empty tag
                        b' ' if p == self.tag_start => return self.invalid_from(buf, p),
                        b' ' => {
                            self.tag = buf.get(self.tag_start..=p).unwrap_or_default().to_vec();
                            self.st = St::SpacesBeforeCommand;
                        }
                        _ if !tag_char(ch) || p - self.tag_start >= MAX_TAG => {
                            return self.invalid_from(buf, p);
                        }
                        _ => {}
                    }
                }
                St::Invalid => return self.invalid_from(buf, p),
                St::SpacesBeforeCommand => match ch {
                    b' ' => {}
                    b'\r' | b'\n' => return self.invalid_from(buf, p),
                    _ => {
                        self.cmd_start = p;
                        self.st = St::Command;
                    }
                },
                St::Command => {
                    if matches!(ch, b' ' | b'\r' | b'\n') {
                        let word = buf.get(self.cmd_start..p).unwrap_or_default();
                        match Verb::from_bytes(word) {
                            Some(v) => self.verb = Some(v),
                            None => return self.invalid_from(buf, p),
                        }
                        match ch {
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
                        self.quoted = true;
                        self.arg_start = p + 1;
                        self.st = St::Argument;
                    }
                    b'{' => self.st = St::Literal,
                    _ => {
                        self.arg_start = p;
                        self.st = St::Argument;
                    }
                },
                St::Argument => {
                    if !(ch == b' ' && self.quoted) {
                        match ch {
                            b'"' if self.quoted => {
                                self.quoted = false;
                                self.push_arg(p);
                                self.st = St::SpacesBeforeArgument;
                            }
                            b' ' => {
                                self.push_arg(p);
                                self.st = St::SpacesBeforeArgument;
                            }
                            b'\r' | b'\n' => {
                                self.push_arg(p);
                                if ch == b'\n' {
                                    return self.done(buf, p);
                                }
                                self.st = St::AlmostDone;
                            }
                            b'\\' if self.quoted => {
                                self.backslash = true;
                                self.st = St::Backslash;
                            }
                            _ => {}
                        }
                    }
                }
                St::Backslash => match ch {
                    b'\r' | b'\n' => return self.invalid_from(buf, p),
                    _ => self.st = St::Argument,
                },
                // as stock since 1.29.6: a length that could not take one
                // more digit is refused, whatever comes next
                St::Literal if self.literal_len > usize::MAX / 10 => {
                    return self.invalid_from(buf, p)
                }
                St::Literal => match ch {
                    b'0'..=b'9' => {
                        // hardening: stock lets the length wrap around
                        let digit = char::from(ch)
                            .to_digit(10)
                            .and_then(|d| usize::try_from(d).ok());
                        match self
                            .literal_len
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(digit?))
                        {
                            Some(n) => self.literal_len = n,
                            None => return self.invalid_from(buf, p),
                        }
                    }
                    b'}' => self.st = St::StartLiteralArgument,
                    b'+' => self.st = St::NoSyncLiteral,
                    _ => return self.invalid_from(buf, p),
                },
                St::NoSyncLiteral => match ch {
                    b'}' => {
                        self.no_sync = true;
                        self.st = St::StartLiteralArgument;
                    }
                    _ => return self.invalid_from(buf, p),
                },
                St::StartLiteralArgument => match ch {
                    b'\r' => {}
                    b'\n' => {
                        self.arg_start = p + 1;
                        self.st = St::LiteralArgument;
                        if !std::mem::take(&mut self.no_sync) {
                            self.scanned = p + 1;
                            return Event::Continue;
                        }
                    }
                    _ => return self.invalid_from(buf, p),
                },
                St::LiteralArgument => {
                    // the literal's bytes are taken whole, CR and LF included
                    let have = buf.len() - p;
                    if have < self.literal_len {
                        // resume here: the length check is redone with more bytes
                        self.scanned = p;
                        return Event::Incomplete;
                    }
                    p += self.literal_len;
                    self.literal_len = 0;
                    self.push_arg(p);
                    self.st = St::EndLiteralArgument;
                    continue;
                }
                St::EndLiteralArgument => match ch {
                    // nginx 1.29.6: a literal is followed by SP or CRLF only
                    b'\r' => self.st = St::AlmostDone,
                    b'\n' => return self.done(buf, p),
                    b' ' => self.st = St::SpacesBeforeArgument,
                    _ => return self.invalid_from(buf, p),
                },
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
        reason = "positions in `buf`: p < buf.len() <= isize::MAX, tag_start <= p, and a literal is skipped only when buf.len() - p covers it"
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
