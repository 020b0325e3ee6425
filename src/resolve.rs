//! A safe handle on one lookup of nginx's resolver: started, answered,
//! finished with the function of its kind.

use core::ptr;
use std::net::{IpAddr, SocketAddr};

use nginx_sys::{
    ngx_msec_t, ngx_resolve_addr, ngx_resolve_addr_done, ngx_resolve_name, ngx_resolve_name_done,
    ngx_resolve_start, ngx_resolver_ctx_t, ngx_resolver_strerror, ngx_resolver_t, ngx_str_t,
    sockaddr, socklen_t, NGX_RESOLVE_NXDOMAIN,
};

use crate::ffi::bytes;

/// What nginx calls when a lookup is answered.
pub type Answered = unsafe extern "C" fn(*mut ngx_resolver_ctx_t);

/// A lookup: a resolver ctx from `ngx_resolve_start`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Query(*mut ngx_resolver_ctx_t);

impl Query {
    /// # Safety
    /// `ctx` is the live ctx nginx answered with (in its handler).
    pub unsafe fn from_raw(ctx: *mut ngx_resolver_ctx_t) -> Query {
        Query(ctx)
    }

    /// A new lookup on `resolver` (the cycle's), answered to `handler`
    /// with `data`; `None` when out of memory.
    pub fn new(
        resolver: *mut ngx_resolver_t,
        timeout: ngx_msec_t,
        handler: Answered,
        data: *mut core::ffi::c_void,
    ) -> Option<Query> {
        // SAFETY: the resolver lives as long as the cycle.
        let ctx = unsafe { ngx_resolve_start(resolver, ptr::null_mut()) };
        if ctx.is_null() {
            return None;
        }
        // SAFETY: ctx is a fresh, zeroed ctx of ours.
        unsafe {
            (*ctx).handler = Some(handler);
            (*ctx).data = data;
            (*ctx).timeout = timeout;
        }
        Some(Query(ctx))
    }

    /// Asks for the name of `addr`; false when nginx could not start it
    /// (and freed the ctx: the query must not be used or finished).
    ///
    /// # Safety
    /// `addr` points at `len` bytes of a socket address that outlive the
    /// lookup.
    #[must_use]
    pub unsafe fn reverse(self, addr: *mut sockaddr, len: socklen_t) -> bool {
        // SAFETY: as the caller promises; the ctx is ours.
        unsafe {
            (*self.0).addr.sockaddr = addr;
            (*self.0).addr.socklen = len;
            ngx_resolve_addr(self.0) == 0
        }
    }

    /// Asks for the addresses of `name`; false as for `reverse`.
    ///
    /// # Safety
    /// `name` outlives the lookup.
    #[must_use]
    pub unsafe fn forward(self, name: ngx_str_t) -> bool {
        // SAFETY: as the caller promises; the ctx is ours.
        unsafe {
            (*self.0).name = name;
            ngx_resolve_name(self.0) == 0
        }
    }

    pub fn raw(self) -> *mut ngx_resolver_ctx_t {
        self.0
    }

    /// The session (or other owner) the lookup was started with.
    pub fn data(self) -> *mut core::ffi::c_void {
        // SAFETY: the ctx is live.
        unsafe { (*self.0).data }
    }

    /// The answer's state: 0 when it was found.
    pub fn state(self) -> isize {
        // SAFETY: the ctx is live.
        unsafe { (*self.0).state }
    }

    pub fn not_found(self) -> bool {
        self.state() == NGX_RESOLVE_NXDOMAIN as isize
    }

    /// nginx's text for the state.
    pub fn error_text(self) -> &'static str {
        // SAFETY: ngx_resolver_strerror returns a static C string.
        unsafe {
            core::ffi::CStr::from_ptr(ngx_resolver_strerror(self.state()))
                .to_str()
                .unwrap_or("")
        }
    }

    /// The name asked for, or the reverse lookup's answer.
    pub fn name(self) -> &'static [u8] {
        // SAFETY: the ctx is live; its name is the caller's or nginx's.
        unsafe { bytes(&(*self.0).name) }
    }

    /// A forward lookup's IP addresses.
    pub fn addresses(self) -> Vec<IpAddr> {
        // SAFETY: the ctx is live; addrs has naddrs entries.
        unsafe {
            (0..(*self.0).naddrs)
                .filter_map(|i| {
                    let a = &*(*self.0).addrs.add(i);
                    ip_of(a.sockaddr, a.socklen)
                })
                .collect()
        }
    }

    /// Finishes (or cancels) the lookup; `reverse` says which kind it is.
    ///
    /// # Safety
    /// The query was started and is finished once.
    pub unsafe fn finish(self, reverse: bool) {
        // SAFETY: as the caller promises.
        unsafe {
            if reverse {
                ngx_resolve_addr_done(self.0);
            } else {
                ngx_resolve_name_done(self.0);
            }
        }
    }
}

/// The IP address of a socket address, if it is one.
///
/// # Safety
/// `sa` must point at `len` bytes of a socket address.
pub unsafe fn ip_of(sa: *const sockaddr, len: socklen_t) -> Option<IpAddr> {
    // SAFETY: the family says which struct it is; the length is checked.
    unsafe {
        match u32::from((*sa).sa_family) {
            nginx_sys::AF_INET if len as usize >= size_of::<nginx_sys::sockaddr_in>() => {
                let sin = &*sa.cast::<nginx_sys::sockaddr_in>();
                Some(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ))
            }
            nginx_sys::AF_INET6 if len as usize >= size_of::<nginx_sys::sockaddr_in6>() => {
                let sin6 = &*sa.cast::<nginx_sys::sockaddr_in6>();
                Some(IpAddr::from(sin6.sin6_addr.__in6_u.__u6_addr8))
            }
            _ => None,
        }
    }
}

/// The IP address and port of a socket address, if it is an IP one.
///
/// # Safety
/// As [`ip_of`].
pub unsafe fn socket_addr_of(sa: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    // SAFETY: as ip_of's; the port is at the same place in both structs.
    unsafe {
        let ip = ip_of(sa, len)?;
        let port = u16::from_be((*sa.cast::<nginx_sys::sockaddr_in>()).sin_port);
        Some(SocketAddr::new(ip, port))
    }
}

/// A started lookup, finished (or cancelled) with the function of its kind
/// when dropped: the ctx cannot tell its own kind, since nginx fills a
/// forward lookup's `addr` when it returns one IPv4 address.
pub struct Pending {
    query: Query,
    reverse: bool,
}

impl Pending {
    /// # Safety
    /// `query` was (or is about to be) started, and nothing else finishes
    /// it; if starting fails, the `Pending` is forgotten, not dropped.
    pub unsafe fn new(query: Query, reverse: bool) -> Pending {
        Pending { query, reverse }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // SAFETY: as `new`'s caller promised; this drop is the one finish.
        unsafe { self.query.finish(self.reverse) }
    }
}
