//! Reading client commands and sending replies, shared by every protocol:
//! the `ngx_mail_read_command` + `s->out` + `ngx_mail_send` pattern, with
//! the buffer compacted instead of reset so pipelined input is never lost.

use mail_core::StartTls;
use mail_core::{AuthMethod, Credentials};

use crate::ffi::{shown, ETIMEDOUT, LOG_INFO};
use crate::mail_log;
use crate::nginx::{Buf, Event, Handler, Io};
use crate::session::{Session, SessionState};
use crate::session_fields::Sent;
use crate::state::{ClientDialogue, Handover};

/// Handles a timed-out client event or a worker's shutdown timeout; true
/// when the session is gone.
pub fn timed_out(ev: Event, sess: Session) -> bool {
    if sess.ends_at_shutdown() {
        return true;
    }
    if !ev.timedout() {
        return false;
    }
    mail_log!(LOG_INFO, sess.log(), errno = ETIMEDOUT; "client timed out");
    sess.client().set_timedout();
    sess.close();
    true
}

/// Reads what the client sent into `s->buffer` and returns the buffer with
/// the unparsed bytes, or `None` when the handler must return (busy,
/// waiting, closed).
pub fn read_command(sess: Session) -> Option<Buf> {
    if sess.sending() {
        // a reply is still being sent: ngx_mail_send calls us again
        sess.set_blocked(true);
        let _ = wait_for_more(sess);
        return None;
    }
    sess.set_blocked(false);
    let Some(b) = sess.buffer() else {
        sess.internal_server_error();
        return None;
    };
    b.compact();
    match b.read_from(sess.client()) {
        Io::Error | Io::Closed => {
            sess.close();
            return None;
        }
        Io::Again if b.is_empty() => {
            let _ = wait_for_more(sess);
            return None;
        }
        Io::Again | Io::Done(_) => {}
    }
    Some(b)
}

/// An incomplete command that fills the whole buffer is refused and the
/// session ends after the reply, as stock does.
pub fn command_too_long(sess: Session) -> bool {
    let Some(b) = sess.buffer().filter(|b| b.is_full()) else {
        return false;
    };
    mail_log!(
        LOG_INFO,
        sess.log(),
        "client sent too long command \"{}\"",
        shown(b.all())
    );
    sess.set_quit();
    b.consume_all();
    true
}

/// Waits for the rest of a command; the loop stops either way.
pub fn wait_for_more(sess: Session) -> Flow {
    // on failure the session is already closed
    let _ = sess.handle_read_event();
    Flow::Stop
}

/// Marks `n` bytes of the command buffer used; clamped to what it holds, so
/// a wrong count from the core can never move `pos` past `last`.
pub fn consume(sess: Session, n: usize) {
    if let Some(b) = sess.buffer() {
        b.consume(n);
    }
}

/// Counts an invalid command toward `max_errors`.
pub fn count_error(sess: Session) {
    if sess.count_error() {
        mail_log!(
            LOG_INFO,
            sess.log(),
            "client sent too many invalid commands"
        );
        sess.set_quit();
    }
}

/// What one client command asks of the shell. A command runs with the
/// session's protocol state borrowed; whatever can close the session (a
/// send, arming an event, the auth request) happens after that borrow ends,
/// in `command_loop`.
#[must_use]
pub enum Next {
    /// `s->out` holds the reply: send it.
    Reply,
    /// Not a whole command yet: wait for more.
    Wait,
    /// The credentials (or SMTP envelope) are stored: ask the auth server.
    Login(Handover),
    /// Out of memory or state: the protocol's internal error.
    Error,
}

/// Whether the command loop goes on after a reply.
#[must_use]
pub enum Flow {
    /// The reply went out whole and the session is open: the next buffered
    /// command may run now.
    Next,
    /// The handler must return: the session waits (for the client, for the
    /// rest of a reply, for the auth server) or is gone.
    Stop,
}

/// Commands answered per read event before the event is posted again, so
/// that one client's pipelined burst cannot hold the worker from its other
/// sessions.
const COMMANDS_PER_EVENT: usize = 64;

/// Runs a protocol's auth-state command handler over what the client sent,
/// one command at a time, in a loop: stock re-enters the read handler from
/// `ngx_mail_send` after every reply, so its stack grows with the number of
/// pipelined commands (and since we compact the buffer instead of refusing
/// a long batch, that number has no bound). Here it is constant.
pub fn command_loop<T: SessionState>(
    sess: Session,
    rev: Event,
    mut command: impl for<'a> FnMut(Session, &'a [u8], &'a mut T) -> Next,
) {
    for _ in 0..COMMANDS_PER_EVENT {
        crate::mail_debug!(sess.log(), "{} auth state", shown(sess.protocol_name()));
        if timed_out(rev, sess) {
            return;
        }
        let Some(b) = read_command(sess) else {
            return;
        };
        // the bytes are lent for this command only
        let buf = b.pending();
        let next = sess.with_state(|state: &mut T| command(sess, buf, state));
        let flow = match next {
            Some(Next::Reply) => reply(sess),
            Some(Next::Wait) => wait_for_more(sess),
            Some(Next::Login(handover)) => {
                crate::auth_http::client::start_login(sess, handover);
                Flow::Stop
            }
            Some(Next::Error) | None => {
                sess.internal_server_error();
                Flow::Stop
            }
        };
        if let Flow::Stop = flow {
            return;
        }
    }
    // the session answered its last command and is open; closing it would
    // take the event off the queue again
    rev.post();
}

/// Sends `s->out` and says whether the loop may go on to the next command.
pub fn reply(sess: Session) -> Flow {
    if let Some(b) = sess.buffer().filter(|b| b.is_empty()) {
        b.reset();
    }
    if !sess.handle_read_event() {
        return Flow::Stop;
    }
    send_reply(sess)
}

/// `ngx_mail_send` for the command loop: the same send, timer and close
/// rules, but a reply that went out whole returns to the loop instead of
/// calling the read handler again. A partial send leaves the rest to the
/// write event (`ngx_mail_send`), which re-runs the read handler once the
/// reply is out because the session is marked blocked.
fn send_reply(sess: Session) -> Flow {
    let wev = sess.write_event();
    crate::mail_debug!(sess.log(), "mail send reply");
    match sess.send_out() {
        Sent::Closed => Flow::Stop,
        Sent::All => {
            wev.del_timer();
            if sess.quitting() {
                sess.close();
                return Flow::Stop;
            }
            Flow::Next
        }
        Sent::Partly => {
            sess.set_blocked(true);
            wev.add_timer(sess.core_conf().timeout);
            if !wev.handle_write() {
                sess.close();
            }
            Flow::Stop
        }
    }
}

#[cfg(ngx_mail_ssl)]
fn ssl_conf(sess: Session) -> &'static crate::bindings::ngx_mail_ssl_conf_t {
    sess.conf::<crate::bindings::ngx_mail_ssl_conf_t>()
}

pub fn starttls_mode(sess: Session) -> StartTls {
    #[cfg(ngx_mail_ssl)]
    {
        match ssl_conf(sess).starttls as u32 {
            crate::bindings::NGX_MAIL_STARTTLS_ON => StartTls::On,
            crate::bindings::NGX_MAIL_STARTTLS_ONLY => StartTls::Only,
            _ => StartTls::Off,
        }
    }
    #[cfg(not(ngx_mail_ssl))]
    {
        let _ = sess;
        StartTls::Off
    }
}

/// STLS/STARTTLS accepted: whatever the client pipelined after it is dropped
/// (CVE-2014-3556), and the next read starts the handshake.
pub fn start_tls(sess: Session) {
    if let Some(b) = sess.buffer() {
        b.reset();
    }
    #[cfg(ngx_mail_ssl)]
    sess.read_event()
        .set_handler(crate::bindings::ngx_mail_starttls_handler);
}

/// Keeps the client's login and secret in `s->login`/`s->passwd`, where the
/// error log and the auth request find them.
fn store_credentials(sess: Session, creds: &Credentials) -> bool {
    let passwd = (creds.method != AuthMethod::External).then_some(&creds.passwd[..]);
    sess.set_credentials(&creds.login, passwd)
}

/// Makes the APOP/CRAM-MD5 salt `<random.time@server_name>` CRLF in
/// `s->salt`, as `ngx_mail_salt` does; false when out of memory.
pub fn make_salt(sess: Session) -> bool {
    let mut salt = format!("<{}.{}@", nginx_sys::ngx_random(), nginx_sys::ngx_time()).into_bytes();
    salt.extend_from_slice(sess.server_name());
    salt.extend_from_slice(b">\r\n");
    sess.set_salt(&salt)
}

/// Sends the greeting in `s->out` and waits for the first command with
/// `init_protocol` (`ngx_mail_*_init_session`'s common tail).
pub fn greet(sess: Session, init_protocol: Handler) {
    let rev = sess.read_event();
    rev.set_handler(init_protocol);
    rev.add_timer(sess.core_conf().timeout);
    if sess.handle_read_event() {
        sess.send();
    }
}

/// The first read event (`ngx_mail_*_init_protocol`): makes the command
/// buffer once, then hands over to `auth_state`.
pub fn init_protocol(sess: Session, rev: Event, buffer_size: usize, auth_state: Handler) {
    sess.set_action(c"in auth state");
    if timed_out(rev, sess) {
        return;
    }
    if !create_buffer(sess, buffer_size) {
        return;
    }
    rev.set_handler(auth_state);
    rev.call();
}

/// Makes the command buffer once per session; false (the session answered
/// with the protocol's internal error) when out of memory.
pub fn create_buffer(sess: Session, size: usize) -> bool {
    if sess.create_buffer(size) {
        return true;
    }
    sess.internal_server_error();
    false
}

/// An invalid command: its reason logged at info; counted toward max_errors
/// when the parser rejected it.
pub fn invalid(sess: Session, reason: mail_core::Invalid, counted: bool) {
    if let Some(reason) = reason.0 {
        mail_log!(LOG_INFO, sess.log(), "{}", reason);
    }
    if counted {
        count_error(sess);
    }
}

/// The client said enough: keep its credentials; the loop asks the auth
/// server.
pub fn authenticate(sess: Session, creds: &Credentials, client: ClientDialogue) -> Next {
    if !store_credentials(sess, creds) {
        return Next::Error;
    }
    Next::Login(Handover::new(creds.method, client))
}

/// `smtp_auth none`: the envelope goes to the auth server with no login or
/// password at all, whatever an earlier AUTH left (CVE-2025-53859).
pub fn relay(sess: Session, envelope: &mail_core::smtp::Envelope, client: ClientDialogue) -> Next {
    if !sess.set_envelope(&envelope.helo, &envelope.from, &envelope.to) {
        return Next::Error;
    }
    Next::Login(Handover::new(AuthMethod::None, client))
}

/// What the session's protocol state needs to know of its server and
/// connection.
pub fn config<C>(
    sess: Session,
    auth_methods: usize,
    capabilities: &'static C,
) -> mail_core::Config<'static, C> {
    mail_core::Config {
        auth_methods,
        capabilities,
        starttls: starttls_mode(sess),
        tls: sess.client().is_tls(),
        salt: sess.salt(),
    }
}
