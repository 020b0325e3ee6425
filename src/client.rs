//! Reading client commands and sending replies, shared by every protocol:
//! the `ngx_mail_read_command` + `s->out` + `ngx_mail_send` pattern, with
//! the buffer compacted instead of reset so pipelined input is never lost.

use core::ptr;

use mail_core::StartTls;
use mail_core::{AuthMethod, Credentials};
use nginx_sys::{
    ngx_add_timer, ngx_connection_t, ngx_del_timer, ngx_event_t, ngx_handle_write_event,
    ngx_post_event, ngx_posted_events,
};

use crate::ffi::{log, pool_str, shown, ETIMEDOUT, LOG_INFO, NGX_AGAIN, NGX_ERROR};
use crate::mail_log;
use crate::session::{Session, SessionState};
use crate::state::{ClientDialogue, Handover};

/// Handles a timed-out client event or a worker's shutdown timeout; true
/// when the session is gone.
pub fn timed_out(ev: *mut ngx_event_t, sess: Session) -> bool {
    if sess.ends_at_shutdown() {
        return true;
    }
    // SAFETY: ev is a live event of the client connection.
    if unsafe { (*ev).timedout() } == 0 {
        return false;
    }
    // SAFETY: the log and connection are live until closed below.
    unsafe {
        log(LOG_INFO, sess.log(), ETIMEDOUT, b"client timed out");
        (*sess.connection()).set_timedout(1);
    }
    sess.close();
    true
}

/// Reads what the client sent into `s->buffer` and returns the unparsed
/// bytes, or `None` when the handler must return (busy, waiting, closed).
pub fn read_command(sess: Session) -> Option<&'static [u8]> {
    let s = sess.raw();
    let c = sess.connection();
    // SAFETY: s, c and s->buffer are live; recv writes at most end - last.
    unsafe {
        if (*s).out.len != 0 {
            // a reply is still being sent: ngx_mail_send calls us again
            (*s).set_blocked(1);
            sess.handle_read_event();
            return None;
        }
        (*s).set_blocked(0);
        let b = (*s).buffer;
        if (*b).pos == (*b).last {
            (*b).pos = (*b).start;
            (*b).last = (*b).start;
        } else if (*b).pos > (*b).start {
            let len = (*b).last.offset_from((*b).pos) as usize;
            ptr::copy((*b).pos, (*b).start, len);
            (*b).pos = (*b).start;
            (*b).last = (*b).start.add(len);
        }
        if (*b).last < (*b).end {
            let room = (*b).end.offset_from((*b).last) as usize;
            let Some(recv) = (*c).recv else {
                sess.close();
                return None;
            };
            let n = recv(c, (*b).last, room);
            if n == NGX_ERROR || n == 0 {
                sess.close();
                return None;
            }
            if n > 0 {
                (*b).last = (*b).last.add(n as usize);
            }
            if n == NGX_AGAIN && (*b).pos == (*b).last {
                let _ = wait_for_more(sess);
                return None;
            }
        }
        let len = (*b).last.offset_from((*b).pos) as usize;
        Some(core::slice::from_raw_parts((*b).pos, len))
    }
}

/// An incomplete command that fills the whole buffer is refused and the
/// session ends after the reply, as stock does.
pub fn command_too_long(sess: Session) -> bool {
    let s = sess.raw();
    // SAFETY: s and its buffer are live.
    unsafe {
        let b = (*s).buffer;
        if (*b).last < (*b).end {
            return false;
        }
        let all =
            core::slice::from_raw_parts((*b).start, (*b).last.offset_from((*b).start) as usize);
        mail_log!(
            LOG_INFO,
            sess.log(),
            "client sent too long command \"{}\"",
            shown(all)
        );
        sess.set_quit();
        (*b).pos = (*b).last;
    }
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
    // SAFETY: s->buffer is live with pos <= last.
    unsafe {
        let b = (*sess.raw()).buffer;
        let held = (*b).last.offset_from((*b).pos) as usize;
        (*b).pos = (*b).pos.add(n.min(held));
    }
}

/// Counts an invalid command toward `max_errors`.
pub fn count_error(sess: Session) {
    let s = sess.raw();
    let max = sess.core_conf().max_errors;
    // SAFETY: s is live.
    unsafe {
        (*s).errors += 1;
        if (*s).errors >= max {
            mail_log!(
                LOG_INFO,
                sess.log(),
                "client sent too many invalid commands"
            );
            sess.set_quit();
        }
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
    rev: *mut ngx_event_t,
    mut command: impl for<'a> FnMut(Session, &'a [u8], &'a mut T) -> Next,
) {
    for _ in 0..COMMANDS_PER_EVENT {
        let Some((sess, buf)) = begin(rev) else {
            return;
        };
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
    // SAFETY: the session answered its last command and is open, so rev is
    // its live read event; closing the connection unposts it.
    unsafe { ngx_post_event(rev, ptr::addr_of_mut!(ngx_posted_events)) };
}

/// Sends `s->out` and says whether the loop may go on to the next command.
pub fn reply(sess: Session) -> Flow {
    let s = sess.raw();
    // SAFETY: s and its buffer are live.
    unsafe {
        let b = (*s).buffer;
        if (*b).pos == (*b).last {
            (*b).pos = (*b).start;
            (*b).last = (*b).start;
        }
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
    let s = sess.raw();
    let c = sess.connection();
    // SAFETY: s, c and its write event are live until closed here, and
    // nothing is touched after a close.
    unsafe {
        let wev = (*c).write;
        if (*s).out.len > 0 {
            let Some(send) = (*c).send else {
                sess.close();
                return Flow::Stop;
            };
            let n = send(c, (*s).out.data, (*s).out.len);
            if n == NGX_ERROR {
                sess.close();
                return Flow::Stop;
            }
            if n > 0 {
                let n = (n as usize).min((*s).out.len);
                (*s).out.data = (*s).out.data.add(n);
                (*s).out.len -= n;
            }
        }
        if (*s).out.len == 0 {
            if (*wev).timer_set() != 0 {
                ngx_del_timer(wev);
            }
            if (*s).quit() != 0 {
                sess.close();
                return Flow::Stop;
            }
            return Flow::Next;
        }
        (*s).set_blocked(1);
        ngx_add_timer(wev, sess.core_conf().timeout);
        if ngx_handle_write_event(wev, 0) != 0 {
            sess.close();
        }
        Flow::Stop
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
    // SAFETY: s, its buffer and the connection are live.
    unsafe {
        let b = (*sess.raw()).buffer;
        (*b).pos = (*b).start;
        (*b).last = (*b).start;
        #[cfg(ngx_mail_ssl)]
        {
            let c: *mut ngx_connection_t = sess.connection();
            (*(*c).read).handler = Some(crate::bindings::ngx_mail_starttls_handler);
        }
    }
}

/// Keeps the client's login and secret in `s->login`/`s->passwd`, where the
/// error log and the auth request find them.
fn store_credentials(sess: Session, creds: &Credentials) -> bool {
    let s = sess.raw();
    let pool = sess.pool();
    // SAFETY: s and the pool are live.
    unsafe {
        let Some(login) = pool_str(pool, &creds.login) else {
            return false;
        };
        (*s).login = login;
        (*s).passwd = if creds.method == AuthMethod::External {
            nginx_sys::ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            }
        } else {
            let Some(p) = pool_str(pool, &creds.passwd) else {
                return false;
            };
            p
        };
    }
    true
}

/// Makes the APOP/CRAM-MD5 salt `<random.time@server_name>` CRLF in
/// `s->salt`, as `ngx_mail_salt` does; false when out of memory.
pub fn make_salt(sess: Session) -> bool {
    let cscf = sess.core_conf();
    // SAFETY: server_name is a config string.
    let server_name = unsafe { crate::ffi::bytes(&cscf.server_name) };
    let mut salt = format!("<{}.{}@", nginx_sys::ngx_random(), nginx_sys::ngx_time()).into_bytes();
    salt.extend_from_slice(server_name);
    salt.extend_from_slice(b">\r\n");
    // SAFETY: the pool is live.
    match unsafe { pool_str(sess.pool(), &salt) } {
        Some(s) => {
            // SAFETY: s is live.
            unsafe { (*sess.raw()).salt = s };
            true
        }
        None => false,
    }
}

/// The salt of this session, if one was made.
pub fn salt(sess: Session) -> Option<&'static [u8]> {
    // SAFETY: s->salt is empty or a pool string.
    let salt = unsafe { crate::ffi::bytes(&(*sess.raw()).salt) };
    (!salt.is_empty()).then_some(salt)
}

/// Sends the greeting in `s->out` and waits for the first command with
/// `init_protocol` (`ngx_mail_*_init_session`'s common tail).
pub fn greet(sess: Session, init_protocol: unsafe extern "C" fn(*mut ngx_event_t)) {
    let c = sess.connection();
    // SAFETY: c and its events are live.
    unsafe {
        (*(*c).read).handler = Some(init_protocol);
        nginx_sys::ngx_add_timer((*c).read, sess.core_conf().timeout);
    }
    if sess.handle_read_event() {
        sess.send();
    }
}

/// The first read event (`ngx_mail_*_init_protocol`): makes the command
/// buffer once, then hands over to `auth_state`.
pub fn init_protocol(
    rev: *mut ngx_event_t,
    buffer_size: usize,
    auth_state: unsafe extern "C" fn(*mut ngx_event_t),
) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast::<ngx_connection_t>()) };
    sess.set_action(c"in auth state");
    if timed_out(rev, sess) {
        return;
    }
    if !create_buffer(sess, buffer_size) {
        return;
    }
    // SAFETY: rev is the live read event this handler was called for.
    unsafe {
        (*rev).handler = Some(auth_state);
        auth_state(rev);
    }
}

/// Makes the command buffer once per session; false (the session answered
/// with the protocol's internal error) when out of memory.
pub fn create_buffer(sess: Session, size: usize) -> bool {
    // SAFETY: s and its pool are live.
    unsafe {
        let s = sess.raw();
        if (*s).buffer.is_null() {
            (*s).buffer = nginx_sys::ngx_create_temp_buf(sess.pool(), size);
            if (*s).buffer.is_null() {
                sess.internal_server_error();
                return false;
            }
        }
    }
    true
}

/// An invalid command: its reason logged at info, counted toward max_errors.
pub fn invalid(sess: Session, reason: mail_core::Invalid) {
    if let Some(reason) = reason.0 {
        mail_log!(LOG_INFO, sess.log(), "{}", reason);
    }
    count_error(sess);
}

/// The client said enough: keep its credentials; the loop asks the auth
/// server.
pub fn authenticate(sess: Session, creds: &Credentials, client: ClientDialogue) -> Next {
    if !store_credentials(sess, creds) {
        return Next::Error;
    }
    Next::Login(Handover::new(creds.method, client))
}

/// The start of every auth-state read event: the timeout and reading what
/// the client sent. `None` when the handler must return.
fn begin(rev: *mut ngx_event_t) -> Option<(Session, &'static [u8])> {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast::<ngx_connection_t>()) };
    if timed_out(rev, sess) {
        return None;
    }
    Some((sess, read_command(sess)?))
}

/// What the session's protocol state needs to know of its server and
/// connection.
pub fn config<C>(sess: Session, auth_methods: usize, capabilities: &C) -> mail_core::Config<'_, C> {
    mail_core::Config {
        auth_methods,
        capabilities,
        starttls: starttls_mode(sess),
        // SAFETY: the connection is live.
        tls: unsafe { !(*sess.connection()).ssl.is_null() },
        salt: salt(sess),
    }
}
