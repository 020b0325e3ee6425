//! The protocol-neutral part of a mail session: the one safe handle on
//! nginx's session, typed access to confs and to each module's per-session
//! state, and the replies and closes every stage shares.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{ngx_connection_t, ngx_handle_read_event, ngx_module_t, ngx_pool_t};

use crate::bindings::{
    ngx_mail_close_connection, ngx_mail_core_module, ngx_mail_core_srv_conf_t, ngx_mail_send,
    ngx_mail_session_internal_server_error, ngx_mail_session_t,
};
use crate::ffi::pool_str;
pub use crate::slots::SessionState;

/// A server conf type and the module whose `srv_conf` slot holds it, named
/// where the module tables are (the top layer).
pub trait ModuleConf: 'static {
    fn module() -> *const ngx_module_t;
}

#[cfg(ngx_mail_ssl)]
impl ModuleConf for crate::bindings::ngx_mail_ssl_conf_t {
    fn module() -> *const ngx_module_t {
        ptr::addr_of!(crate::bindings::ngx_mail_ssl_module)
    }
}

/// Watches a session before login for its end: dropped by its pool's
/// cleanup, however it closes (our closes, nginx's internal-error, quit
/// and TLS-failure paths, a worker's shutdown), while the session struct
/// (in that pool) and its connection's log can still be read. At login it
/// is taken back (an idle proxied session keeps nothing of ours), and the
/// relay, which closes its sessions itself, calls `Session::ended`.
struct SessionEnd(*mut ngx_mail_session_t);

impl Drop for SessionEnd {
    fn drop(&mut self) {
        // SAFETY: as above: the pool being destroyed still holds the
        // session, and the connection struct outlives its close.
        unsafe { Session::from_raw(self.0) }.ended();
    }
}

/// A live mail session. Made only by `from_raw`, in the entry points nginx
/// calls; every method relies on the session being live, which holds for
/// the handler that was called for it until it closes the session (and
/// every handler returns right after a close).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Session(*mut ngx_mail_session_t);

impl Session {
    /// # Safety
    /// `s` is a live mail session of a server this module serves, and stays
    /// live while the handle is used (until the session is closed).
    pub unsafe fn from_raw(s: *mut ngx_mail_session_t) -> Session {
        Session(s)
    }

    /// The session a connection of it serves: the client's, or the auth
    /// server's or backend's, whose `data` the session is too.
    ///
    /// # Safety
    /// `c` is a live connection of a live mail session, as for `from_raw`.
    pub unsafe fn of(c: *mut ngx_connection_t) -> Session {
        // SAFETY: as the caller promises; the mail core and our stages keep
        // the session in each of its connections' data.
        unsafe { Session::from_raw((*c).data.cast()) }
    }

    /// The one door from an nginx event of a session's connection (the
    /// client's, the auth server's or the backend's) to a safe handler.
    ///
    /// # Safety
    /// `ev` is a live event whose connection's `data` is a live session, as
    /// for `from_raw`; nginx calls every event handler of ours so.
    pub unsafe fn of_event(ev: *mut nginx_sys::ngx_event_t) -> (Session, crate::nginx::Event) {
        // SAFETY: as the caller promises.
        unsafe {
            let ev = crate::nginx::Event::from_raw(ev);
            (Session::of(ev.connection().raw()), ev)
        }
    }

    pub fn raw(self) -> *mut ngx_mail_session_t {
        self.0
    }

    pub fn connection(self) -> *mut ngx_connection_t {
        // SAFETY: a live session always has its client connection.
        unsafe { (*self.0).connection }
    }

    pub fn pool(self) -> *mut ngx_pool_t {
        // SAFETY: as above; the pool lives as long as the connection.
        unsafe { (*self.connection()).pool }
    }

    /// The server conf of type `T`: shared by every session of the server
    /// and never written once the configuration is loaded, so lent shared.
    pub fn conf<T: ModuleConf>(self) -> &'static T {
        // SAFETY: srv_conf has a slot for every mail module's ctx_index,
        // and ModuleConf names the module whose slot holds a T; the
        // configuration outlives every session.
        unsafe { &*(*(*self.0).srv_conf.add((*T::module()).ctx_index)).cast::<T>() }
    }

    pub fn core_conf(self) -> &'static ngx_mail_core_srv_conf_t {
        // SAFETY: the core module is always present and its server conf is
        // of this type.
        unsafe {
            &*(*(*self.0).srv_conf.add(ngx_mail_core_module.ctx_index))
                .cast::<ngx_mail_core_srv_conf_t>()
        }
    }

    fn slot<T: SessionState>(self) -> *mut *mut c_void {
        // SAFETY: s->ctx has a slot for every mail module's ctx_index.
        unsafe { (*self.0).ctx.add((*T::module()).ctx_index) }
    }

    /// Gives `value` to its module's slot, dropping what the slot held.
    pub fn set_state<T: SessionState>(self, value: T) {
        let slot = self.slot::<T>();
        // SAFETY: the slot and pool are this live session's; no borrow of
        // the slot's old value is live (with_state lends it only to f).
        unsafe {
            crate::slots::clear(self.pool(), slot);
            crate::slots::put(self.pool(), slot, value);
        }
    }

    /// Gives `value` to its module's slot for the rest of the session:
    /// unlike `set_state`'s, login does not drop it (the pool does).
    pub fn keep_state<T: SessionState>(self, value: T) {
        let slot = self.slot::<T>();
        // SAFETY: as for set_state.
        unsafe {
            crate::slots::clear(self.pool(), slot);
            crate::slots::put_kept(self.pool(), slot, value);
        }
    }

    /// Runs `f` on the `T` in its module's slot; `None` when the slot holds
    /// no `T`. The borrow ends with `f`: nothing in `f` may close the
    /// session (which frees its states) or reach the same slot again.
    pub fn with_state<T: SessionState, R>(self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        // SAFETY: the slot is this live session's; the borrow is f's only.
        unsafe { crate::slots::get::<T>(self.slot::<T>()) }.map(f)
    }

    /// Moves the `T` out of its module's slot (its stage is over).
    pub fn take_state<T: SessionState>(self) -> Option<T> {
        // SAFETY: the slot and pool are this live session's; no borrow of
        // the value is live.
        unsafe { crate::slots::take::<T>(self.pool(), self.slot::<T>()) }
    }

    /// Starts watching for the session's end (`SessionEnd`). Every
    /// protocol's `init_session` calls it first.
    pub fn watch_end(self) {
        // SAFETY: the pool is this live session's.
        unsafe { crate::slots::watch(self.pool(), SessionEnd(self.0)) }
        crate::observe::start(self);
    }

    /// Logged in: the relay will say when the session ends.
    fn unwatch_end(self) {
        // SAFETY: the pool is this live session's; nothing borrows the
        // watch. Taken back, it is forgotten, not dropped: the session
        // goes on.
        if let Some(end) = unsafe { crate::slots::unwatch::<SessionEnd>(self.pool()) } {
            core::mem::forget(end);
        }
    }

    /// The one place every session ends, once: where the session log and
    /// the metrics hang. The session and its connection's log are still
    /// readable.
    pub fn ended(self) {
        crate::mail_debug!(self.log(), "mail session done");
        // its limit_conn counts go; reached by its slot, never by walking
        // the pool's cleanups, which may be running (see slots.rs)
        self.with_state(|limits: &mut crate::limit::Limits| limits.leases.clear());
        crate::observe::ended(self);
    }

    /// Logged in: every state of the stages before is dropped, whatever
    /// module keeps it.
    pub fn clear_states(self) {
        crate::observe::logged_in(self);
        self.unwatch_end();
        // SAFETY: the pool is this live session's; no borrow is live.
        unsafe { crate::slots::clear_all(self.pool()) }
    }

    /// Points `s->out` at bytes that outlive the session (static or conf).
    pub fn set_out_static(self, bytes: &'static [u8]) {
        // SAFETY: s is live; the bytes are never freed while nginx runs.
        unsafe {
            (*self.0).out.len = bytes.len();
            (*self.0).out.data = bytes.as_ptr().cast_mut();
        }
    }

    /// Copies `bytes` into the pool as the next reply; false when out of memory.
    pub fn set_out(self, bytes: &[u8]) -> bool {
        // SAFETY: the pool is live.
        match unsafe { pool_str(self.pool(), bytes) } {
            Some(out) => {
                // SAFETY: s is live.
                unsafe { (*self.0).out = out };
                true
            }
            None => false,
        }
    }

    /// Zeroes and drops `s->passwd`: its pool memory outlives its use.
    pub fn forget_password(self) {
        // SAFETY: s is live; a password with bytes is a pool copy of ours
        // (empty ones may point at a static empty string: nothing written).
        unsafe {
            let passwd = &mut (*self.0).passwd;
            if !passwd.data.is_null() && passwd.len > 0 {
                ptr::write_bytes(passwd.data, 0, passwd.len);
            }
            *passwd = nginx_sys::ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
        }
    }

    /// Logged in: the password and whatever the command buffer held of the
    /// login (PASS, LOGIN, AUTHENTICATE lines) are zeroed; only the bytes
    /// still to be relayed stay.
    pub fn forget_login(self) {
        // no timer or timed-out flag of the login stages (an Auth-Wait
        // sleep, a reply's send) may end the relayed session later as
        // "client timed out": the relay arms its own proxy_timeout
        // SAFETY: the connection and its events are live.
        unsafe {
            let c = self.connection();
            for ev in [(*c).read, (*c).write] {
                if (*ev).timer_set() != 0 {
                    nginx_sys::ngx_del_timer(ev);
                }
                (*ev).set_timedout(0);
            }
        }
        self.forget_password();
        if let Some(b) = self.buffer() {
            b.wipe_spent();
        }
    }

    /// Closes the backend connection, if one is open.
    pub fn close_upstream(self) {
        if let Some(uc) = self.upstream() {
            #[cfg(ngx_mail_ssl)]
            crate::proxy::ssl::shutdown(uc);
            uc.close();
            // SAFETY: s->proxy is the session's live proxy ctx (upstream()
            // found its connection).
            unsafe { (*(*self.0).proxy).upstream.connection = ptr::null_mut() };
        }
    }

    /// The session ends once its last reply is out. What the client sent
    /// meanwhile and nobody will read is discarded first: closing a socket
    /// with unread bytes sends a reset, and a reset can make the client's
    /// kernel drop that last reply before the client reads it. Stock reads
    /// the socket on every command and so rarely leaves any; this module
    /// answers a pipelined batch from its buffer, so the socket may still
    /// hold what came after it.
    pub fn set_quit(self) {
        // SAFETY: s is live.
        unsafe { (*self.0).set_quit(1) };
        self.discard_unread();
    }

    /// Reads and drops what the client's socket holds, up to 64 KiB: a
    /// flood is not read for ever, only what a client sends with its last
    /// commands.
    fn discard_unread(self) {
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            // SAFETY: the descriptor is the session's open socket; recv
            // writes at most scratch.len() bytes into scratch.
            let n = unsafe {
                nginx_sys::recv(
                    (*self.connection()).fd,
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    nginx_sys::MSG_DONTWAIT as core::ffi::c_int,
                )
            };
            if n < scratch.len() as isize {
                break;
            }
        }
    }

    pub fn send(self) {
        // SAFETY: the connection is live; ngx_mail_send may close it.
        unsafe { ngx_mail_send((*self.connection()).write) };
    }

    pub fn internal_server_error(self) {
        // it quits as set_quit does
        self.discard_unread();
        // SAFETY: s is live; this sends the protocol's error and closes.
        unsafe { ngx_mail_session_internal_server_error(self.0) };
    }

    pub fn close(self) {
        // SAFETY: closing destroys the pool; callers return right after.
        unsafe { ngx_mail_close_connection(self.connection()) };
    }

    /// Arms the client read event; closes the session when that fails
    /// (false: the session is gone).
    #[must_use]
    pub fn handle_read_event(self) -> bool {
        // SAFETY: the connection and its read event are live.
        if unsafe { ngx_handle_read_event((*self.connection()).read, 0) } != 0 {
            self.close();
            return false;
        }
        true
    }

    /// At `worker_shutdown_timeout` nginx marks every connection `close` and
    /// runs its read handler: a session in any stage ends then (stock keeps
    /// one that has not logged in yet until its own timeout). True when it
    /// was closed.
    #[must_use]
    pub fn ends_at_shutdown(self) -> bool {
        let c = self.client();
        if !c.closing() {
            return false;
        }
        crate::mail_log!(crate::ffi::LOG_INFO, c.log(), "shutdown timeout");
        self.close();
        true
    }

    /// The same for a connection this module opened for the session (the
    /// auth server's, the backend's), which nginx marks too: `release`
    /// lets it go, and the session ends as at the client's own event.
    #[must_use]
    pub fn peer_ends_at_shutdown(self, peer: crate::nginx::Conn, release: fn(Session)) -> bool {
        if !peer.closing() {
            return false;
        }
        release(self);
        self.client().set_closing();
        self.ends_at_shutdown()
    }

    /// No "while ..." in the session's log lines.
    pub fn clear_action(self) {
        // SAFETY: the log is live.
        unsafe { (*(*self.connection()).log).action = ptr::null_mut() };
    }

    pub fn set_action(self, action: &'static core::ffi::CStr) {
        // SAFETY: the log is live; the action string is static.
        unsafe { (*(*self.connection()).log).action = action.as_ptr().cast_mut() };
    }

    pub fn log(self) -> *mut nginx_sys::ngx_log_t {
        // SAFETY: the connection is live.
        unsafe { (*self.connection()).log }
    }
}

/// Defines the `extern "C"` event handler `$name` that nginx calls, as the
/// one place where its raw event becomes a `Session` and an `Event`, and
/// runs the safe `$body` with them.
#[macro_export]
macro_rules! event_handler {
    ($(#[$meta:meta])* $vis:vis $name:ident => $body:path) => {
        $(#[$meta])*
        $vis unsafe extern "C" fn $name(ev: *mut nginx_sys::ngx_event_t) {
            // SAFETY: nginx calls event handlers with a live event of a
            // connection whose data is its live mail session.
            let (sess, ev) = unsafe { $crate::session::Session::of_event(ev) };
            $body(sess, ev)
        }
    };
}

/// Defines the `extern "C"` resolver handler `$name` that nginx calls with
/// an answered lookup, as the one place where its raw ctx becomes a
/// `Session` and a `Query`, and runs the safe `$body` with them.
#[macro_export]
macro_rules! resolver_handler {
    ($(#[$meta:meta])* $vis:vis $name:ident => $body:path) => {
        $(#[$meta])*
        $vis unsafe extern "C" fn $name(ctx: *mut nginx_sys::ngx_resolver_ctx_t) {
            // SAFETY: nginx calls a lookup's handler with its live ctx,
            // whose data is the live session that started it (a session
            // that ends first cancels its lookup).
            let (sess, query) = unsafe {
                let query = $crate::resolve::Query::from_raw(ctx);
                ($crate::session::Session::from_raw(query.data().cast()), query)
            };
            $body(sess, query)
        }
    };
}
