//! What a session asks of the shell after the client's buffered input: one
//! shape for every protocol, so the shell applies it in one place and a new
//! protocol is a parser and a state machine only.

use std::borrow::Cow;

use crate::smtp::Envelope;
use crate::{Credentials, Invalid};

/// A reply to the client: borrowed from the server's configuration (its
/// prebuilt capability replies) or a constant, or built for this command.
pub type Reply<'c> = Cow<'c, [u8]>;

/// What the shell does after one command.
#[must_use = "the client is waiting for this action's reply"]
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'c> {
    /// Send this and read the next command.
    Reply(Reply<'c>),
    /// IMAP: a synchronizing literal was announced. Send this (`+ OK`) and
    /// read on: the command's bytes stay buffered (nothing is consumed).
    Continue(Reply<'c>),
    /// Ask the auth server about this login.
    Authenticate(Credentials),
    /// SMTP with `smtp_auth none`: ask the auth server about this envelope,
    /// with no login at all.
    Relay(Envelope),
    /// SMTP MAIL without `smtp_auth none`: log `client was rejected:
    /// "<buffer>"` with the whole buffer (pipelined commands included, CR and
    /// LF shown as `_`), as stock does, and send the reply.
    Rejected { reply: Reply<'c> },
    /// Send this, drop anything pipelined behind it, start the TLS
    /// handshake.
    StartTls(Reply<'c>),
    /// Send this and close.
    Quit(Reply<'c>),
    /// Send this and log the reason at `info`; `quit` closes the session
    /// after the reply. Only a line the parser rejects is `counted` toward
    /// `max_errors`, as stock counts in `ngx_mail_read_command`; a
    /// well-formed command its handler refuses (PASS before USER, bad
    /// base64, a disabled mechanism, VRFY, a wrong argument count) is not.
    Invalid {
        reason: Invalid,
        reply: Reply<'c>,
        quit: bool,
        counted: bool,
    },
}

impl<'c> Action<'c> {
    /// The refusal of a line the parser rejects: counted toward
    /// `max_errors`.
    pub fn malformed(reply: Reply<'c>) -> Action<'c> {
        Action::Invalid {
            reason: Invalid(None),
            reply,
            quit: false,
            counted: true,
        }
    }

    /// The refusal of a well-formed command, with the reason to log; stock
    /// does not count it toward `max_errors`.
    pub fn refused(reason: Invalid, reply: Reply<'c>) -> Action<'c> {
        Action::Invalid {
            reason,
            reply,
            quit: false,
            counted: false,
        }
    }
}

impl Action<'_> {
    /// Whether freenginx's `max_commands` counts it: every command the
    /// parser accepted, refused or not, but neither a line the parser
    /// rejected nor a literal's `+ OK`.
    pub fn is_command(&self) -> bool {
        !matches!(
            self,
            Action::Continue(_) | Action::Invalid { counted: true, .. }
        )
    }

    /// The bytes the client is sent; empty when the auth server is asked
    /// first.
    pub fn reply(&self) -> &[u8] {
        match self {
            Action::Reply(reply)
            | Action::Continue(reply)
            | Action::Rejected { reply }
            | Action::StartTls(reply)
            | Action::Quit(reply)
            | Action::Invalid { reply, .. } => reply,
            Action::Authenticate(_) | Action::Relay(_) => b"",
        }
    }
}

/// The result of feeding the buffered client input to a session.
#[must_use = "a step may hold a reply, credentials or a refusal"]
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'c> {
    /// Not a whole command yet: wait for more.
    Incomplete,
    /// `consumed` bytes of the buffer are used up (0 for
    /// [`Action::Continue`]), and the shell does `action`.
    Done { consumed: usize, action: Action<'c> },
}
