//! The session's `s->proxy`: the backend connection, its address and name,
//! and the backend-to-client buffer, as nginx's proxy module keeps them.

use core::ptr;
use std::net::SocketAddr;

use nginx_sys::{ngx_proxy_protocol_write, ngx_str_t, sockaddr_in, sockaddr_in6, socklen_t};

#[cfg(not(ngx_proxy_protocol_v1_max))]
use nginx_sys::NGX_PROXY_PROTOCOL_MAX_HEADER as PROXY_V1_MAX_HEADER;
#[cfg(ngx_proxy_protocol_v1_max)]
use nginx_sys::NGX_PROXY_PROTOCOL_V1_MAX_HEADER as PROXY_V1_MAX_HEADER;

use crate::bindings::ngx_mail_proxy_ctx_t;
use crate::nginx::{Buf, Conn};
use crate::peer::{self, Connect};
use crate::session::Session;

/// The proxy context and the backend's `ngx_str_t` name in one pool
/// allocation, when the session's pool serves that from a block itself:
/// 176 bytes on nginx 1.28, the most a mail session's 256-byte block
/// serves. nginx 1.30's `ngx_peer_connection_t` is 8 bytes longer and
/// 1.31's 16, which would make the pair a large allocation (malloc plus a
/// record in the pool); there the name goes with the address instead.
#[repr(C)]
struct ProxyAlloc {
    proxy: ngx_mail_proxy_ctx_t,
    name: ngx_str_t,
}

/// Room for a PROXY v1 header.
pub type ProxyHeader = [u8; PROXY_V1_MAX_HEADER as usize];

impl Session {
    fn proxy(self) -> *mut ngx_mail_proxy_ctx_t {
        // SAFETY: s is live.
        unsafe { (*self.raw()).proxy }
    }

    /// Makes `s->proxy` for a backend at `addr` named `name`: the context
    /// (with the name's `ngx_str_t` when [`ProxyAlloc`] fits a pool block),
    /// then the address with the name's bytes behind it (and before it the
    /// `ngx_str_t` when it did not fit), each one pool allocation. False
    /// when out of memory.
    #[must_use]
    pub fn create_proxy(self, addr: SocketAddr, name: &[u8]) -> bool {
        let pool = self.pool_handle();
        // SAFETY: the pool is live; `max` is what its blocks serve themselves.
        let fold = size_of::<ProxyAlloc>() <= unsafe { (*pool.raw()).max };
        let (p, folded_name) = if fold {
            let Some(both) = pool.zeroed::<ProxyAlloc>() else {
                return false;
            };
            // SAFETY: `both` is a live, zeroed ProxyAlloc.
            unsafe { (&raw mut (*both).proxy, &raw mut (*both).name) }
        } else {
            let Some(p) = pool.zeroed::<ngx_mail_proxy_ctx_t>() else {
                return false;
            };
            (p, ptr::null_mut())
        };
        let head = if fold { 0 } else { size_of::<ngx_str_t>() };
        let socklen = match addr {
            SocketAddr::V4(_) => size_of::<sockaddr_in>(),
            SocketAddr::V6(_) => size_of::<sockaddr_in6>(),
        };
        // SAFETY: the pool is live; `block` has head + socklen + name.len()
        // zeroed bytes, aligned for any C struct, and the sockaddr behind
        // an `ngx_str_t` (16 bytes) stays aligned; the structs are plain C
        // data, and everything lives as long as the session.
        unsafe {
            let block =
                nginx_sys::ngx_pcalloc(pool.raw(), head + socklen + name.len()).cast::<u8>();
            if block.is_null() {
                return false;
            }
            let name_str = if fold {
                folded_name
            } else {
                block.cast::<ngx_str_t>()
            };
            let sa = block.add(head);
            match addr {
                SocketAddr::V4(a) => {
                    let sin = sa.cast::<sockaddr_in>();
                    (*sin).sin_family = nginx_sys::AF_INET as _;
                    (*sin).sin_port = a.port().to_be();
                    (*sin).sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                }
                SocketAddr::V6(a) => {
                    let sin6 = sa.cast::<sockaddr_in6>();
                    (*sin6).sin6_family = nginx_sys::AF_INET6 as _;
                    (*sin6).sin6_port = a.port().to_be();
                    (*sin6).sin6_addr.__in6_u.__u6_addr8 = a.ip().octets();
                }
            }
            let text = sa.add(socklen);
            ptr::copy_nonoverlapping(name.as_ptr(), text, name.len());
            *name_str = ngx_str_t {
                len: name.len(),
                data: text,
            };
            (*p).upstream.sockaddr = sa.cast();
            (*p).upstream.socklen = socklen as socklen_t;
            (*p).upstream.name = name_str;
            (*self.raw()).proxy = p;
        }
        true
    }

    /// Connects to the backend `create_proxy` named.
    pub fn connect_upstream(self) -> Connect {
        let p = self.proxy();
        if p.is_null() {
            return Connect::Failed;
        }
        // SAFETY: the peer struct and its address live in the session's
        // pool; the client's log is live.
        unsafe { peer::connect(&raw mut (*p).upstream, self.log()) }
    }

    /// The backend connection, while open.
    pub fn upstream(self) -> Option<Conn> {
        let p = self.proxy();
        // SAFETY: p is null or the session's live proxy ctx, whose
        // connection is null or live.
        unsafe {
            if p.is_null() || (*p).upstream.connection.is_null() {
                return None;
            }
            Some(Conn::from_raw((*p).upstream.connection))
        }
    }

    /// Makes the backend-to-client buffer; false when out of memory.
    #[must_use]
    pub fn create_proxy_buffer(self, size: usize) -> bool {
        let p = self.proxy();
        // SAFETY: p is the session's live proxy ctx; the pool is live.
        unsafe {
            (*p).buffer = nginx_sys::ngx_create_temp_buf(self.pool(), size);
            !(*p).buffer.is_null()
        }
    }

    /// The backend-to-client buffer, once made.
    pub fn proxy_buffer(self) -> Option<Buf> {
        let p = self.proxy();
        // SAFETY: p is null or live; its buffer null or a live temp buffer.
        unsafe {
            if p.is_null() || (*p).buffer.is_null() {
                return None;
            }
            Some(Buf::from_raw((*p).buffer))
        }
    }

    /// Whether a PROXY header must still go to the backend.
    pub fn proxy_protocol_pending(self) -> bool {
        let p = self.proxy();
        // SAFETY: p is null or live.
        !p.is_null() && unsafe { (*p).proxy_protocol } != 0
    }

    pub fn set_proxy_protocol_pending(self, on: bool) {
        let p = self.proxy();
        if !p.is_null() {
            // SAFETY: p is live.
            unsafe { (*p).proxy_protocol = on.into() }
        }
    }

    /// Writes the PROXY v1 header for this client into `buf`; its length,
    /// or `None` when nginx could not make it.
    pub fn proxy_protocol_header(self, buf: &mut ProxyHeader) -> Option<usize> {
        let range = buf.as_mut_ptr_range();
        // SAFETY: the client connection is live; nginx writes at most up to
        // the end of buf.
        unsafe {
            let end = ngx_proxy_protocol_write(self.connection(), range.start, range.end);
            if end.is_null() {
                return None;
            }
            Some(end.offset_from(range.start) as usize)
        }
    }

    /// Empties `s->out` (the backend's reply replaces it).
    pub fn clear_out(self) {
        // SAFETY: s is live.
        unsafe { (*self.raw()).out.len = 0 }
    }
}
