//! Reading the auth server's answer: up to the empty line as stock does,
//! and on a kept-alive connection the body to its last byte, so that the
//! next login on the connection reads only its own answer.

use mail_core::auth_http::{frame, parse_response, ParseError, Response};

use super::client::AuthState;
use crate::nginx::{Conn, Io};
use crate::session::Session;

/// What one read of the auth response gave.
pub(super) enum Read {
    Again,
    /// Something was read; there may be more to read now.
    More,
    Failed,
    /// A kept connection closed before any byte of the answer.
    Retry,
    /// RESPONSE_LIMIT bytes and still no whole header.
    Full,
    Invalid(ParseError),
    /// The whole answer (boxed: the enum is moved around, the answer is
    /// large); true when the connection may carry the next one.
    Whole(Box<Response>, bool),
}

/// The answer, held while its body is read and dropped.
pub(super) struct Draining {
    resp: Response,
    left: u64,
}

/// One read on the auth connection: headers until the empty line, then,
/// on a kept-alive connection, the body counted to its end.
pub(super) fn read_some(sess: Session, auth: &mut AuthState, pc: Conn, keepalive: bool) -> Read {
    let Some(attempt) = auth.attempt.as_mut() else {
        return Read::Failed;
    };
    if let Some(draining) = auth.draining.as_mut() {
        // the body is not kept: the same buffer, over and over
        attempt.forget_received();
        return match pc.recv(attempt.room()) {
            Io::Again => Read::Again,
            // half a body: the answer is not whole
            Io::Error | Io::Closed => Read::Failed,
            Io::Done(n) => match draining.left.checked_sub(n as u64) {
                Some(0) | None => {
                    let more_than_asked = draining.left < n as u64;
                    let resp = core::mem::take(&mut draining.resp);
                    auth.draining = None;
                    Read::Whole(Box::new(resp), !more_than_asked)
                }
                Some(left) => {
                    draining.left = left;
                    Read::More
                }
            },
        };
    }
    let room = attempt.room();
    if room.is_empty() {
        return Read::Full;
    }
    match pc.recv(room) {
        Io::Again => return Read::Again,
        Io::Error | Io::Closed if auth.reused && attempt.response().is_empty() => {
            return Read::Retry
        }
        Io::Error | Io::Closed => return Read::Failed,
        Io::Done(n) => attempt.mark_received(n),
    }
    // an answer has begun: whatever happens now is not retried, and its
    // errors are errors again
    if auth.reused {
        pc.set_quiet_errors(false);
    }
    auth.reused = false;
    let resp = match parse_response(attempt.response()) {
        Ok(None) => return Read::More,
        Err(e) => return Read::Invalid(e),
        Ok(Some(resp)) => resp,
    };
    // limit_conn may be keyed by the auth server's headers
    crate::limit::conn::keep_auth_keys(sess, attempt.response());
    if auth.cache_key.is_some() {
        // before a body to drain takes the buffer
        auth.cache_raw = attempt.response().to_vec();
    }
    if !keepalive {
        return Read::Whole(Box::new(resp), false);
    }
    let frame = match frame(attempt.response()) {
        Ok(Some(frame)) => frame,
        Ok(None) => return Read::Invalid(ParseError::InvalidHeader),
        Err(e) => return Read::Invalid(e),
    };
    if !frame.reusable {
        return Read::Whole(Box::new(resp), false);
    }
    match frame.body_left(attempt.response().len()) {
        None => Read::Whole(Box::new(resp), false),
        Some(0) => Read::Whole(Box::new(resp), true),
        Some(left) => {
            auth.draining = Some(Draining { resp, left });
            Read::More
        }
    }
}
