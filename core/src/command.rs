//! The line command grammar nginx's POP3 and SMTP parsers share: a verb of
//! letters, then space-separated arguments up to a limit; some verbs take
//! the rest of the line as one argument. A CR anywhere but before the LF
//! makes the line invalid, as in nginx's state machines.

use crate::line::first_line;

/// One step of parsing the buffered input.
#[must_use = "a parsed line says how much of the buffer it used"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'a, V> {
    /// No complete line yet.
    Incomplete,
    /// A well-formed line; `consumed` bytes of the buffer are used up.
    Line {
        consumed: usize,
        args: Vec<&'a [u8]>,
        verb: Option<V>,
    },
    /// A malformed line, skipped up to its LF.
    Invalid { consumed: usize },
}

fn split_args(mut rest: &[u8], whole_rest: bool, max_args: usize) -> Option<Vec<&[u8]>> {
    let mut args = Vec::new();
    loop {
        let Some(start) = rest.iter().position(|&b| b != b' ') else {
            return Some(args);
        };
        rest = rest.get(start..)?;
        if args.len() >= max_args {
            return None;
        }
        if whole_rest {
            args.push(rest);
            return Some(args);
        }
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        args.push(rest.get(..end)?);
        rest = rest.get(end..)?;
        if rest.is_empty() {
            return Some(args);
        }
    }
}

fn split_args_or_none(rest: &[u8], whole_rest: bool, max_args: usize) -> Option<Vec<&[u8]>> {
    if rest.iter().all(|&b| b == b' ') {
        return Some(Vec::new());
    }
    split_args(rest, whole_rest, max_args)
}

/// The grammar of one protocol: its verbs and argument rules.
pub struct Grammar<V> {
    /// The verb a command word names (any case), if any.
    pub verb: fn(&[u8]) -> Option<V>,
    /// Verbs whose one argument is the rest of the line, spaces included.
    pub whole_rest: fn(V) -> bool,
    pub max_args: usize,
}

/// Parses the first line of `buf`. With `continuation`, the line is a SASL
/// response (its arguments only, the first one starting at the line start).
pub fn parse_line<'a, V: Copy>(
    buf: &'a [u8],
    continuation: bool,
    grammar: &Grammar<V>,
) -> Parsed<'a, V> {
    let Some(line) = first_line(buf) else {
        return Parsed::Incomplete;
    };
    let invalid = Parsed::Invalid {
        consumed: line.consumed,
    };
    let Some(content) = buf.get(..line.content) else {
        return invalid;
    };
    if content.contains(&b'\r') {
        return invalid;
    }
    if continuation {
        let end = content
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(content.len());
        let (first, rest) = content.split_at(end);
        let mut args = vec![first];
        if !rest.is_empty() {
            match split_args_or_none(rest, false, grammar.max_args) {
                Some(more) if more.len() < grammar.max_args => args.extend(more),
                _ => return invalid,
            }
        }
        return Parsed::Line {
            consumed: line.consumed,
            args,
            verb: None,
        };
    }
    let end = content
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(content.len());
    let (word, rest) = content.split_at(end);
    if !word.iter().all(u8::is_ascii_alphabetic) {
        return invalid;
    }
    let Some(verb) = (grammar.verb)(word) else {
        return invalid;
    };
    match split_args_or_none(rest, (grammar.whole_rest)(verb), grammar.max_args) {
        Some(args) => Parsed::Line {
            consumed: line.consumed,
            args,
            verb: Some(verb),
        },
        None => invalid,
    }
}
