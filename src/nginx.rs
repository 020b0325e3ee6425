//! Safe handles on the nginx objects a session's stages work with: events,
//! connections, buffers and pools. Each is a copy of a raw pointer, made
//! only by an `unsafe fn from_raw` whose caller promises the object is live
//! while the handle is used (in practice: the handler that was called for it
//! uses it until it closes its session, and returns right after). Every
//! `unsafe` that reads or changes one of them is here, once, instead of in
//! every handler.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_add_timer, ngx_buf_t, ngx_close_connection, ngx_connection_t, ngx_create_pool,
    ngx_del_timer, ngx_destroy_pool, ngx_event_t, ngx_handle_read_event, ngx_handle_write_event,
    ngx_log_t, ngx_msec_t, ngx_pcalloc, ngx_pnalloc, ngx_pool_t, ngx_post_event, ngx_posted_events,
    ngx_str_t,
};

use crate::ffi::{NGX_AGAIN, NGX_ERROR};

/// What nginx calls for an event.
pub type Handler = unsafe extern "C" fn(*mut ngx_event_t);

/// A live event of a live connection.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Event(*mut ngx_event_t);

impl Event {
    /// # Safety
    /// `ev` is a live event whose `data` is its live connection, and stays
    /// so while the handle is used.
    pub unsafe fn from_raw(ev: *mut ngx_event_t) -> Event {
        Event(ev)
    }

    /// The connection this event belongs to.
    pub fn connection(self) -> Conn {
        // SAFETY: a connection's events carry it as their data.
        unsafe { Conn((*self.0).data.cast()) }
    }

    pub fn timedout(self) -> bool {
        // SAFETY: the event is live.
        unsafe { (*self.0).timedout() != 0 }
    }

    pub fn set_timedout(self, on: bool) {
        // SAFETY: the event is live.
        unsafe { (*self.0).set_timedout(on.into()) }
    }

    pub fn ready(self) -> bool {
        // SAFETY: the event is live.
        unsafe { (*self.0).ready() != 0 }
    }

    /// A write held back by a rate limit until its timer fires.
    pub fn delayed(self) -> bool {
        // SAFETY: the event is live.
        unsafe { (*self.0).delayed() != 0 }
    }

    pub fn set_delayed(self, on: bool) {
        // SAFETY: the event is live.
        unsafe { (*self.0).set_delayed(on.into()) }
    }

    pub fn active(self) -> bool {
        // SAFETY: the event is live.
        unsafe { (*self.0).active() != 0 }
    }

    pub fn timer_set(self) -> bool {
        // SAFETY: the event is live.
        unsafe { (*self.0).timer_set() != 0 }
    }

    pub fn add_timer(self, ms: ngx_msec_t) {
        // SAFETY: the event is live; nginx's timer tree takes it.
        unsafe { ngx_add_timer(self.0, ms) }
    }

    /// Removes the event's timer, if it has one.
    pub fn del_timer(self) {
        if self.timer_set() {
            // SAFETY: the event is live and in the timer tree.
            unsafe { ngx_del_timer(self.0) }
        }
    }

    /// Arms a read event for the next readiness; false when that failed
    /// (the caller ends its session).
    #[must_use]
    pub fn handle_read(self) -> bool {
        // SAFETY: the event is a live read event.
        unsafe { ngx_handle_read_event(self.0, 0) == 0 }
    }

    /// Arms a write event; false when that failed.
    #[must_use]
    pub fn handle_write(self) -> bool {
        // SAFETY: the event is a live write event.
        unsafe { ngx_handle_write_event(self.0, 0) == 0 }
    }

    /// Runs the event's handler after this turn of the event loop; closing
    /// its connection takes it off the queue again.
    pub fn post(self) {
        // SAFETY: the event is live; the posted queue is the cycle's.
        unsafe { ngx_post_event(self.0, ptr::addr_of_mut!(ngx_posted_events)) }
    }

    pub fn set_handler(self, handler: Handler) {
        // SAFETY: the event is live.
        unsafe { (*self.0).handler = Some(handler) }
    }

    pub fn handler(self) -> Option<Handler> {
        // SAFETY: the event is live.
        unsafe { (*self.0).handler }
    }

    /// Runs the event's handler now.
    pub fn call(self) {
        if let Some(h) = self.handler() {
            // SAFETY: the handler is the one nginx would call for it.
            unsafe { h(self.0) }
        }
    }

    pub fn log(self) -> *mut ngx_log_t {
        // SAFETY: the event is live.
        unsafe { (*self.0).log }
    }
}

/// What a read or a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// This many bytes moved (at least one).
    Done(usize),
    /// Nothing now: wait for the event.
    Again,
    /// The peer closed (a read of 0).
    Closed,
    Error,
}

impl Io {
    fn of(n: isize) -> Io {
        match n {
            n if n > 0 => Io::Done(n as usize),
            0 => Io::Closed,
            NGX_AGAIN => Io::Again,
            _ => Io::Error,
        }
    }
}

/// A live connection: the client's, or one to the auth server or backend.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Conn(*mut ngx_connection_t);

impl Conn {
    /// # Safety
    /// `c` is a live connection, and stays so while the handle is used.
    pub unsafe fn from_raw(c: *mut ngx_connection_t) -> Conn {
        Conn(c)
    }

    /// The peer's address and port, when it is an IP one.
    pub fn peer_addr(self) -> Option<std::net::SocketAddr> {
        // SAFETY: the connection is live; its sockaddr lives in its pool.
        unsafe { crate::resolve::socket_addr_of((*self.0).sockaddr, (*self.0).socklen) }
    }

    /// The address and port the peer connected to, when it is an IP one.
    /// For a socket bound to a wildcard address nginx asks the kernel once
    /// and keeps the answer in the connection's pool, so a later call
    /// reads it even after the socket is closed.
    pub fn local_addr(self) -> Option<std::net::SocketAddr> {
        // SAFETY: the connection is live; nginx fills local_sockaddr in its
        // pool or fails.
        unsafe {
            if nginx_sys::ngx_connection_local_sockaddr(self.0, ptr::null_mut(), 0) != 0 {
                return None;
            }
            crate::resolve::socket_addr_of((*self.0).local_sockaddr, (*self.0).local_socklen)
        }
    }

    pub fn raw(self) -> *mut ngx_connection_t {
        self.0
    }

    pub fn read(self) -> Event {
        // SAFETY: a live connection has its two events.
        unsafe { Event((*self.0).read) }
    }

    pub fn write(self) -> Event {
        // SAFETY: as above.
        unsafe { Event((*self.0).write) }
    }

    pub fn log(self) -> *mut ngx_log_t {
        // SAFETY: the connection is live.
        unsafe { (*self.0).log }
    }

    /// Reads into `buf` with the connection's own recv (TLS or plain).
    pub fn recv(self, buf: &mut [u8]) -> Io {
        // SAFETY: the connection is live; recv writes at most buf.len()
        // bytes into buf.
        unsafe {
            match (*self.0).recv {
                Some(recv) => Io::of(recv(self.0, buf.as_mut_ptr(), buf.len())),
                None => Io::Error,
            }
        }
    }

    /// Writes from `bytes` with the connection's own send.
    pub fn send(self, bytes: &[u8]) -> Io {
        // SAFETY: the connection is live; send reads bytes.len() bytes.
        unsafe {
            match (*self.0).send {
                Some(send) => match send(self.0, bytes.as_ptr().cast_mut(), bytes.len()) {
                    NGX_ERROR => Io::Error,
                    n => Io::of(n),
                },
                None => Io::Error,
            }
        }
    }

    pub fn is_tls(self) -> bool {
        // SAFETY: the connection is live.
        unsafe { !(*self.0).ssl.is_null() }
    }

    /// The SHA-256 digest of the peer's certificate in lowercase hex, in
    /// `pool`; empty without a certificate. nginx 1.28 has no getter for it.
    #[cfg(ngx_mail_ssl)]
    pub fn peer_cert_sha256(self, pool: Pool) -> &'static [u8] {
        use nginx_sys::{EVP_sha256, SSL_get1_peer_certificate, X509_digest, X509_free};
        if !self.is_tls() {
            return &[];
        }
        // SAFETY: the connection is live and TLS; the reference to the
        // certificate is ours and freed below.
        let cert = unsafe { SSL_get1_peer_certificate((*(*self.0).ssl).connection) };
        if cert.is_null() {
            return &[];
        }
        let mut digest = [0u8; 32];
        let mut len = 0;
        // SAFETY: cert is live until X509_free; digest has room for a
        // SHA-256 digest, the most X509_digest writes for EVP_sha256.
        let ok = unsafe {
            let ok = X509_digest(cert, EVP_sha256(), digest.as_mut_ptr(), &mut len);
            X509_free(cert);
            ok
        };
        let Some(digest) = digest.get(..len as usize).filter(|_| ok == 1) else {
            return &[];
        };
        match pool.str(&mail_core::auth_http::hex_lower(digest)) {
            // SAFETY: the copy lives in the pool, which outlives its use.
            Some(s) => unsafe { crate::ffi::bytes(&s) },
            None => &[],
        }
    }

    /// nginx marked it at `worker_shutdown_timeout`.
    pub fn closing(self) -> bool {
        // SAFETY: the connection is live.
        unsafe { (*self.0).close() != 0 }
    }

    pub fn set_closing(self) {
        // SAFETY: the connection is live.
        unsafe { (*self.0).set_close(1) }
    }

    pub fn set_timedout(self) {
        // SAFETY: the connection is live.
        unsafe { (*self.0).set_timedout(1) }
    }

    /// Whether the connection was closed (a closed connection's struct
    /// stays allocated in the cycle's array, with this flag set).
    pub fn destroyed(self) -> bool {
        // SAFETY: the struct outlives the connection, as above.
        unsafe { (*self.0).destroyed() != 0 }
    }

    pub fn set_data(self, data: *mut c_void) {
        // SAFETY: the connection is live.
        unsafe { (*self.0).data = data }
    }

    /// Lends a peer connection its session's pool, as stock does.
    pub fn set_pool(self, pool: Pool) {
        // SAFETY: the connection is live; the pool outlives it.
        unsafe { (*self.0).pool = pool.raw() }
    }

    /// Gives the connection and its two events `log` (a kept auth
    /// connection outlives the session whose log it was opened with).
    pub fn set_log(self, log: *mut ngx_log_t) {
        // SAFETY: the connection is live, with its two events.
        unsafe {
            (*self.0).log = log;
            (*(*self.0).read).log = log;
            (*(*self.0).write).log = log;
        }
    }

    /// Unties a kept connection from the session that used it: no data,
    /// no pool (the session's is about to go).
    pub fn detach(self) {
        // SAFETY: the connection is live.
        unsafe {
            (*self.0).data = ptr::null_mut();
            (*self.0).pool = ptr::null_mut();
        }
    }

    /// How loud its read and write errors are: `quiet` logs them at `info`
    /// (an idle kept connection the server resets, a reused one that is
    /// asked again), otherwise at `error` as any peer connection.
    pub fn set_quiet_errors(self, quiet: bool) {
        let level = if quiet {
            nginx_sys::ngx_connection_log_error_e_NGX_ERROR_INFO
        } else {
            nginx_sys::ngx_connection_log_error_e_NGX_ERROR_ERR
        };
        // SAFETY: the connection is live.
        unsafe { (*self.0).set_log_error(level) }
    }

    /// Marks a kept connection idle: at a graceful shutdown nginx then sets
    /// its `close` flag and calls its read handler
    /// (`ngx_close_idle_connections`).
    pub fn set_idle(self, on: bool) {
        // SAFETY: the connection is live.
        unsafe { (*self.0).set_idle(on.into()) }
    }

    /// Closes a connection this module opened (auth server, backend).
    pub fn close(self) {
        // SAFETY: the connection is live; callers drop the handle after.
        unsafe { ngx_close_connection(self.0) }
    }
}

/// A live temp buffer (`s->buffer`, the proxy buffer).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Buf(*mut ngx_buf_t);

impl Buf {
    /// # Safety
    /// `b` is a live memory buffer with start <= pos <= last <= end, and
    /// stays so while the handle is used.
    pub unsafe fn from_raw(b: *mut ngx_buf_t) -> Buf {
        Buf(b)
    }

    /// The bytes read and not yet used.
    pub fn pending(&self) -> &[u8] {
        // SAFETY: pos..last are initialised bytes of the live buffer; the
        // borrow ends with the handle's, within the handler.
        unsafe {
            let b = self.0;
            core::slice::from_raw_parts((*b).pos, (*b).last.offset_from((*b).pos) as usize)
        }
    }

    /// Everything from the start to `last`, used bytes included.
    pub fn all(&self) -> &[u8] {
        // SAFETY: as above, from start.
        unsafe {
            let b = self.0;
            core::slice::from_raw_parts((*b).start, (*b).last.offset_from((*b).start) as usize)
        }
    }

    pub fn is_empty(self) -> bool {
        // SAFETY: the buffer is live.
        unsafe { (*self.0).pos == (*self.0).last }
    }

    pub fn is_full(self) -> bool {
        // SAFETY: the buffer is live.
        unsafe { (*self.0).last == (*self.0).end }
    }

    /// Marks `n` pending bytes used, at most all of them.
    pub fn consume(self, n: usize) {
        let n = n.min(self.pending().len());
        // SAFETY: pos + n <= last.
        unsafe { (*self.0).pos = (*self.0).pos.add(n) }
    }

    /// Marks everything used.
    pub fn consume_all(self) {
        // SAFETY: the buffer is live.
        unsafe { (*self.0).pos = (*self.0).last }
    }

    /// Empties the buffer.
    pub fn reset(self) {
        // SAFETY: the buffer is live.
        unsafe {
            (*self.0).pos = (*self.0).start;
            (*self.0).last = (*self.0).start;
        }
    }

    /// Moves the pending bytes to the start, making room at the end.
    pub fn compact(self) {
        // SAFETY: pos..last lies in the buffer; ptr::copy allows overlap.
        unsafe {
            let b = self.0;
            if (*b).pos == (*b).last {
                return self.reset();
            }
            if (*b).pos > (*b).start {
                let len = (*b).last.offset_from((*b).pos) as usize;
                ptr::copy((*b).pos, (*b).start, len);
                (*b).pos = (*b).start;
                (*b).last = (*b).start.add(len);
            }
        }
    }

    /// Reads from `c` into the free room; `Io::Done(0)` never happens: no
    /// room reads nothing and says `Again`.
    pub fn read_from(self, c: Conn) -> Io {
        // SAFETY: last..end is the buffer's free room.
        let room = unsafe {
            let b = self.0;
            core::slice::from_raw_parts_mut((*b).last, (*b).end.offset_from((*b).last) as usize)
        };
        if room.is_empty() {
            return Io::Again;
        }
        let io = c.recv(room);
        if let Io::Done(n) = io {
            // SAFETY: recv wrote n <= room bytes after last.
            unsafe { (*self.0).last = (*self.0).last.add(n) }
        }
        io
    }

    /// Replaces the content with `bytes`; false when they do not fit.
    pub fn fill(self, bytes: &[u8]) -> bool {
        // SAFETY: the copy stays within start..end.
        unsafe {
            let b = self.0;
            if bytes.len() > (*b).end.offset_from((*b).start) as usize {
                return false;
            }
            ptr::copy_nonoverlapping(bytes.as_ptr(), (*b).start, bytes.len());
            (*b).pos = (*b).start;
            (*b).last = (*b).start.add(bytes.len());
        }
        true
    }

    /// Zeroes all but the pending bytes (what the used ones held of a
    /// login, and stale bytes past `last`).
    pub fn wipe_spent(self) {
        // SAFETY: start..pos and last..end lie in the buffer.
        unsafe {
            let b = self.0;
            ptr::write_bytes((*b).start, 0, (*b).pos.offset_from((*b).start) as usize);
            ptr::write_bytes((*b).last, 0, (*b).end.offset_from((*b).last) as usize);
        }
    }
}

/// A live pool.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Pool(*mut ngx_pool_t);

impl Pool {
    /// # Safety
    /// `p` is a live pool, and stays so while the handle is used.
    pub unsafe fn from_raw(p: *mut ngx_pool_t) -> Pool {
        Pool(p)
    }

    /// A new pool of its own (an auth attempt's); destroyed with `destroy`.
    pub fn create(size: usize, log: *mut ngx_log_t) -> Option<Pool> {
        // SAFETY: log is a live log (a connection's).
        let p = unsafe { ngx_create_pool(size, log) };
        (!p.is_null()).then_some(Pool(p))
    }

    /// # Safety
    /// Nothing allocated in the pool is used afterwards.
    pub unsafe fn destroy(self) {
        // SAFETY: as the caller promises.
        unsafe { ngx_destroy_pool(self.0) }
    }

    pub fn raw(self) -> *mut ngx_pool_t {
        self.0
    }

    /// A copy of `src` in the pool; `None` when out of memory.
    pub fn str(self, src: &[u8]) -> Option<ngx_str_t> {
        // SAFETY: the pool is live.
        unsafe { crate::ffi::pool_str(self.0, src) }
    }

    /// `len` uninitialised bytes; `None` when out of memory.
    pub fn bytes(self, len: usize) -> Option<*mut u8> {
        // SAFETY: the pool is live.
        let p = unsafe { ngx_pnalloc(self.0, len) }.cast::<u8>();
        (!p.is_null()).then_some(p)
    }

    /// A zeroed `T` (plain C data); `None` when out of memory.
    pub fn zeroed<T>(self) -> Option<*mut T> {
        // SAFETY: the pool is live; the block is aligned for any C struct.
        let p = unsafe { ngx_pcalloc(self.0, size_of::<T>()) }.cast::<T>();
        (!p.is_null()).then_some(p)
    }
}
