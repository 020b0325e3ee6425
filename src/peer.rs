//! Connections this module opens itself: to the auth server (one request
//! in a pool of its own) and to the backend (in the session's pool).

use core::ptr;

use nginx_sys::{
    ngx_addr_t, ngx_event_connect_peer, ngx_event_get_peer, ngx_log_t, ngx_peer_connection_t,
    ngx_str_t,
};

use crate::ffi::{NGX_AGAIN, NGX_BUSY, NGX_DECLINED, NGX_ERROR};
use crate::nginx::{Conn, Pool};

/// How a connect went.
pub enum Connect {
    Failed,
    /// In progress: the write event says when it is done.
    Pending(Conn),
    /// Connected at once.
    Done(Conn),
}

/// Connects `peer` (its address set) with nginx's peer machinery, logging
/// failures at `error` as stock does.
///
/// # Safety
/// `peer` is a live peer connection struct whose `sockaddr`, `socklen` and
/// `name` stay valid while it is used; `log` is a live log.
pub unsafe fn connect(peer: *mut ngx_peer_connection_t, log: *mut ngx_log_t) -> Connect {
    // SAFETY: as the caller promises.
    unsafe {
        (*peer).get = Some(ngx_event_get_peer);
        (*peer).log = log;
        (*peer).set_log_error(1); // NGX_ERROR_ERR
        let rc = ngx_event_connect_peer(peer);
        if rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED {
            return Connect::Failed;
        }
        let c = Conn::from_raw((*peer).connection);
        if rc == NGX_AGAIN {
            Connect::Pending(c)
        } else {
            Connect::Done(c)
        }
    }
}

/// One request to a peer, with its own pool holding the connection struct,
/// the request and a response buffer (as stock keeps an auth request: heap
/// buffers freed in the middle of a session's allocations would fragment
/// the worker's heap). Dropping it closes the connection and frees the
/// pool, the request and the response zeroed first (they hold passwords).
pub struct PeerRequest {
    pool: Pool,
    peer: *mut ngx_peer_connection_t,
    request: ngx_str_t,
    sent: usize,
    response: *mut u8,
    capacity: usize,
    received: usize,
}

impl PeerRequest {
    /// Takes `pool` (made for this request with `Pool::create`, which may
    /// hold what the request was built from) for `request` and a response
    /// of up to `capacity` bytes; `None` (and the pool destroyed) when out
    /// of memory.
    pub fn new(pool: Pool, request: &[u8], capacity: usize) -> Option<PeerRequest> {
        let made = (|| {
            Some((
                pool.zeroed::<ngx_peer_connection_t>()?,
                pool.str(request)?,
                pool.bytes(capacity)?,
            ))
        })();
        let Some((peer, request, response)) = made else {
            // SAFETY: the pool is ours, and what the caller built in it is
            // used no more.
            unsafe { pool.destroy() };
            return None;
        };
        Some(PeerRequest {
            pool,
            peer,
            request,
            sent: 0,
            response,
            capacity,
            received: 0,
        })
    }

    /// Connects to `addr`.
    pub fn connect(&mut self, addr: &'static ngx_addr_t, log: *mut ngx_log_t) -> Connect {
        // SAFETY: the peer struct lives in our pool; the address is the
        // configuration's, which outlives the request.
        unsafe {
            (*self.peer).sockaddr = addr.sockaddr;
            (*self.peer).socklen = addr.socklen;
            (*self.peer).name = ptr::from_ref(&addr.name).cast_mut();
            connect(self.peer, log)
        }
    }

    /// Sends the request on `c`, a kept connection to the same peer.
    pub fn adopt(&mut self, c: Conn) {
        // SAFETY: the peer struct lives in our pool.
        unsafe { (*self.peer).connection = c.raw() }
    }

    /// Takes the connection out, so that dropping the request leaves it
    /// open (kept for the next request).
    pub fn release(&mut self) -> Option<Conn> {
        // SAFETY: the peer struct lives in our pool; its connection, when
        // set, is live until closed by us.
        unsafe {
            let pc = core::mem::replace(&mut (*self.peer).connection, ptr::null_mut());
            (!pc.is_null()).then(|| Conn::from_raw(pc))
        }
    }

    /// Closes the connection and starts over: nothing sent, nothing read.
    pub fn restart(&mut self) {
        if let Some(c) = self.release() {
            c.close();
        }
        self.sent = 0;
        self.forget_received();
    }

    /// Drops what was read so far (the body of a kept-alive response is
    /// counted, not kept).
    pub fn forget_received(&mut self) {
        // SAFETY: the first `received` bytes are ours.
        unsafe { ptr::write_bytes(self.response, 0, self.received) };
        self.received = 0;
    }

    /// The request's bytes not sent yet.
    pub fn unsent(&self) -> &[u8] {
        // SAFETY: the request lives in our pool.
        let all = unsafe { crate::ffi::bytes(&self.request) };
        all.get(self.sent..).unwrap_or_default()
    }

    pub fn mark_sent(&mut self, n: usize) {
        self.sent = self.sent.saturating_add(n).min(self.request.len);
    }

    /// The free room of the response buffer.
    pub fn room(&mut self) -> &mut [u8] {
        // SAFETY: the buffer has `capacity` bytes in our pool; `received`
        // of them are taken.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.response.add(self.received),
                self.capacity - self.received,
            )
        }
    }

    pub fn mark_received(&mut self, n: usize) {
        self.received = self.received.saturating_add(n).min(self.capacity);
    }

    /// The response read so far.
    pub fn response(&self) -> &[u8] {
        // SAFETY: the first `received` bytes were written by recv.
        unsafe { core::slice::from_raw_parts(self.response, self.received) }
    }
}

impl Drop for PeerRequest {
    fn drop(&mut self) {
        // SAFETY: the connection (if any), the pool and the buffers are
        // this request's and released exactly once, here.
        unsafe {
            ptr::write_bytes(self.request.data, 0, self.request.len);
            ptr::write_bytes(self.response, 0, self.capacity);
            let pc = (*self.peer).connection;
            if !pc.is_null() {
                Conn::from_raw(pc).close();
            }
            self.pool.destroy();
        }
    }
}
