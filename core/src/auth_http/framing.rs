//! Where an auth response ends on a kept-alive connection, and whether the
//! connection may carry the next request (`auth_http_keepalive`, ours).
//!
//! Stock sends HTTP/1.0 and reads up to the empty line: the close ends the
//! body. A connection that carries a second request must have the first
//! response's body read to its last byte first, or the next session would
//! read this one's leftovers as its answer. So only a response whose length
//! is known is reused; everything else is read as stock reads it and then
//! closed.

use super::response::{header_line, status_line_end, Header};
use super::ParseError;

/// A body longer than this is not drained for the sake of reuse: the
/// connection is closed instead (auth bodies are empty or a line of text).
pub const DRAIN_LIMIT: u64 = 16 * 1024;

/// How the response read so far is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Bytes of status line and headers, the empty line included.
    pub header_len: usize,
    /// Body bytes to read (and discard) after the headers before the
    /// connection may be reused; meaningful only when `reusable`.
    pub body_len: u64,
    /// The connection may carry another request once the body is read.
    pub reusable: bool,
}

/// Frames a response whose headers `parse_response` accepted; `Ok(None)`
/// until the empty line. Refuses, as garbage, what would make the end of
/// the body uncertain: `Transfer-Encoding` (we never ask for chunks), a
/// `Content-Length` that is not a plain decimal number, or two that differ.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "`pos` only grows by lengths of lines of `buf`, so it stays <= buf.len()"
)]
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, ParseError> {
    let Some(mut pos) = status_line_end(buf)? else {
        return Ok(None);
    };
    let status = buf.get(..pos).unwrap_or_default();
    let http11 = status.starts_with(b"HTTP/1.1 ");
    // RFC 9112 6.3: these never have a body, whatever the headers say
    let no_body = status
        .get(9..12)
        .is_some_and(|code| matches!(code, b"204" | b"304") || code.first() == Some(&b'1'));
    let mut length: Option<u64> = None;
    let mut close = !http11;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some((header, used)) = header_line(rest)? else {
            return Ok(None);
        };
        pos += used;
        let Some(Header { name, value }) = header else {
            break;
        };
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = super::response::atoi(value).ok_or(ParseError::InvalidLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::InvalidLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(ParseError::Chunked);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    // an HTTP/1.0 server that keeps the connection says so
                    close = false;
                }
            }
        }
    }
    let length = if no_body { Some(0) } else { length };
    let (body_len, reusable) = match length {
        Some(n) if !close && n <= DRAIN_LIMIT => (n, true),
        _ => (0, false),
    };
    Ok(Some(Frame {
        header_len: pos,
        body_len,
        reusable,
    }))
}

impl Frame {
    /// Body bytes still to read when `received` bytes of the response are
    /// in; `None` when more arrived than the response holds (the server
    /// sent something nobody asked for: the connection is not reused).
    pub fn body_left(&self, received: usize) -> Option<u64> {
        let body_in = received.saturating_sub(self.header_len) as u64;
        self.body_len.checked_sub(body_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_http::{parse_response, Request};
    use crate::AuthMethod;

    fn framed(text: &[u8]) -> Result<Option<Frame>, ParseError> {
        frame(text)
    }

    const OK: &[u8] = b"Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 110\r\n";

    fn response(status: &str, headers: &str, body: &str) -> Vec<u8> {
        let mut r = format!("{status}\r\n").into_bytes();
        r.extend_from_slice(OK);
        r.extend_from_slice(headers.as_bytes());
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(body.as_bytes());
        r
    }

    #[test]
    fn keepalive_request_is_http11() {
        let req = Request {
            uri: b"/auth",
            host: b"127.0.0.1",
            method: AuthMethod::Plain,
            login: b"u",
            passwd: b"p",
            salt: b"",
            protocol: b"pop3",
            login_attempt: 1,
            client_ip: b"127.0.0.1",
            client_host: b"",
            proxy_protocol: None,
            smtp: None,
            ssl: None,
            extra_headers: b"",
            keepalive: true,
        };
        let text = String::from_utf8(req.build()).unwrap();
        assert!(
            text.starts_with("GET /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"),
            "{text}"
        );
    }

    #[test]
    fn length_makes_it_reusable() {
        let r = response("HTTP/1.1 200 OK", "Content-Length: 3\r\n", "abc");
        let f = framed(&r).unwrap().unwrap();
        assert!(f.reusable);
        assert_eq!(f.body_len, 3);
        assert_eq!(f.header_len, r.len() - 3);
        assert_eq!(f.body_left(r.len()), Some(0));
        assert_eq!(f.body_left(r.len() - 2), Some(2));
        assert_eq!(f.body_left(f.header_len), Some(3));
        // more than the response holds: not reusable
        assert_eq!(f.body_left(r.len() + 1), None);
    }

    #[test]
    fn no_body_statuses_need_no_length() {
        for status in ["HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified"] {
            let f = framed(&response(status, "", "")).unwrap().unwrap();
            assert!(f.reusable, "{status}");
            assert_eq!(f.body_len, 0);
        }
        // 204 with a length: still no body
        let f = framed(&response("HTTP/1.1 204 No", "Content-Length: 5\r\n", ""))
            .unwrap()
            .unwrap();
        assert_eq!((f.reusable, f.body_len), (true, 0));
    }

    #[test]
    fn what_is_not_reused() {
        let cases: &[(&str, &str)] = &[
            // no length: the close ends the body
            ("HTTP/1.1 200 OK", ""),
            (
                "HTTP/1.1 200 OK",
                "Connection: close\r\nContent-Length: 0\r\n",
            ),
            (
                "HTTP/1.1 200 OK",
                "Connection: keep-alive, Close\r\nContent-Length: 0\r\n",
            ),
            // HTTP/1.0 closes unless it says otherwise
            ("HTTP/1.0 200 OK", "Content-Length: 0\r\n"),
            // too long to drain
            ("HTTP/1.1 200 OK", "Content-Length: 16385\r\n"),
            (
                "HTTP/1.1 200 OK",
                "Content-Length: 99999999999999999999\r\n",
            ),
        ];
        for (status, headers) in cases {
            match framed(&response(status, headers, "")) {
                Ok(Some(f)) => assert!(!f.reusable, "{status} {headers:?}"),
                // a length past u64 is garbage
                other => assert_eq!(other, Err(ParseError::InvalidLength), "{headers:?}"),
            }
        }
        // no status line at all (stock accepts it): not reused
        let f = framed(b"Auth-Status: OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!f.reusable);
        let f = framed(&response(
            "HTTP/1.0 200 OK",
            "Connection: keep-alive\r\nContent-Length: 0\r\n",
            "",
        ))
        .unwrap()
        .unwrap();
        assert!(f.reusable, "an HTTP/1.0 keep-alive with a length is");
    }

    #[test]
    fn bad_lengths_and_chunks_are_garbage() {
        for headers in [
            "Content-Length: -1\r\n",
            "Content-Length: +1\r\n",
            "Content-Length: 1 2\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length:\r\n",
            "Content-Length: 18446744073709551616\r\n",
            "Content-Length: 3\r\nContent-Length: 4\r\n",
        ] {
            let r = response("HTTP/1.1 200 OK", headers, "");
            assert_eq!(framed(&r), Err(ParseError::InvalidLength), "{headers:?}");
            // stock's reading of the same bytes does not care
            assert!(parse_response(&r).unwrap().is_some());
        }
        let same = response(
            "HTTP/1.1 200 OK",
            "Content-Length: 2\r\ncontent-length: 2\r\n",
            "ab",
        );
        assert_eq!(framed(&same).unwrap().unwrap().body_len, 2);
        for te in [
            "Transfer-Encoding: chunked\r\n",
            "transfer-encoding: gzip\r\n",
        ] {
            let r = response("HTTP/1.1 200 OK", te, "0\r\n\r\n");
            assert_eq!(framed(&r), Err(ParseError::Chunked), "{te:?}");
        }
    }

    #[test]
    fn truncated_responses_are_incomplete_at_every_byte() {
        let r = response("HTTP/1.1 200 OK", "Content-Length: 4\r\n", "body");
        let whole = framed(&r).unwrap().unwrap();
        for cut in 0..whole.header_len {
            assert_eq!(framed(&r[..cut]), Ok(None), "cut at {cut}");
        }
        for cut in whole.header_len..=r.len() {
            let f = framed(&r[..cut]).unwrap().unwrap();
            assert_eq!(f, whole);
            assert_eq!(f.body_left(cut), Some((r.len() - cut) as u64));
        }
    }

    #[test]
    fn invalid_header_lines_stay_invalid() {
        assert_eq!(
            framed(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"),
            Err(ParseError::InvalidHeader)
        );
        assert_eq!(
            framed(b"HTTP/1.1 200 OK\rX"),
            Err(ParseError::InvalidResponse)
        );
    }
}
