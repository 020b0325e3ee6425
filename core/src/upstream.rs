//! What a backend login dialogue asks the proxy to do next, for every
//! protocol.

use crate::line::{first_line, Line};

/// What to do with the backend's buffered reply.
#[must_use = "the backend is waiting for this step"]
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamStep {
    /// No complete reply yet.
    NeedMore,
    /// The reply was good: clear the buffer and send this line.
    Send(Vec<u8>),
    /// Logged in: the buffered reply goes to the client, then pass-through.
    LoggedIn,
    /// The buffer filled up without a line end.
    TooLong,
    /// The backend refused; `line` is its reply without the line end.
    Refused { line: Vec<u8> },
    /// Logged in, but the client is told this instead of the backend's
    /// last reply (SMTP after a login: `235 2.0.0 OK`).
    LoggedInReplacing(&'static [u8]),
    /// The dialogue cannot go on; log this at `error`.
    Failed(&'static str),
}

/// The first complete line of a backend's reply: its content and where it
/// ends; when there is none yet, the step to take (wait, or give up on a
/// full buffer).
pub fn reply_line(buf: &[u8], full: bool) -> Result<(&[u8], Line), UpstreamStep> {
    match first_line(buf) {
        Some(line) => Ok((buf.get(..line.content).unwrap_or_default(), line)),
        None if full => Err(UpstreamStep::TooLong),
        None => Err(UpstreamStep::NeedMore),
    }
}
