//! Finding complete command lines in a client's buffer.

/// Where the first complete line of `buf` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// Length of the content, without CR LF or LF.
    pub content: usize,
    /// Bytes to consume, terminator included.
    pub consumed: usize,
}

/// The first LF-terminated line of `buf`, if it has one. A CR that is not
/// right before the LF stays in the content (callers treat it as an error,
/// as nginx's parsers do).
pub fn first_line(buf: &[u8]) -> Option<Line> {
    let lf = buf.iter().position(|&b| b == b'\n')?;
    let content = match lf.checked_sub(1) {
        Some(cr) if buf.get(cr) == Some(&b'\r') => cr,
        _ => lf,
    };
    Some(Line {
        content,
        // lf < buf.len() <= isize::MAX
        consumed: lf.checked_add(1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            first_line(b"NOOP\r\nQUIT"),
            Some(Line {
                content: 4,
                consumed: 6
            })
        );
        assert_eq!(
            first_line(b"NOOP\nX"),
            Some(Line {
                content: 4,
                consumed: 5
            })
        );
        assert_eq!(
            first_line(b"\n"),
            Some(Line {
                content: 0,
                consumed: 1
            })
        );
        assert_eq!(first_line(b"NOOP\r"), None);
        assert_eq!(first_line(b""), None);
    }
}
