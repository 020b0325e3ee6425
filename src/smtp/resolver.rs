//! The client's hostname for `Client-Host` and XCLIENT `NAME`: a PTR lookup
//! of its address and a forward lookup of the answer, on nginx's resolver,
//! judged by `mail_core::smtp::resolve` (`ngx_mail_smtp_init_session`).

use core::ptr;
use std::net::IpAddr;

use mail_core::smtp::resolve::{self, AfterPtr, LookupError, TEMPUNAVAIL, UNAVAILABLE};
use nginx_sys::{
    ngx_connection_t, ngx_event_t, ngx_handle_read_event, ngx_post_event, ngx_posted_events,
    ngx_resolve_addr, ngx_resolve_addr_done, ngx_resolve_name, ngx_resolve_name_done,
    ngx_resolve_start, ngx_resolver_ctx_t, ngx_resolver_strerror, ngx_str_t, sockaddr, socklen_t,
    NGX_RESOLVE_NXDOMAIN,
};

use crate::ffi::{bytes, pool_str, shown, LOG_ERR};
use crate::mail_log;
use crate::session::Session;

/// A lookup this session started, finished with the function of its kind
/// when dropped: when its answer was used, and when the session ends while
/// it is still pending (the resolver would otherwise call back into a freed
/// session). The ctx cannot tell its own kind: nginx fills a forward
/// lookup's `addr` when it returns one IPv4 address.
pub struct Lookup {
    ctx: *mut ngx_resolver_ctx_t,
    reverse: bool,
    /// Where the session goes once its name is known (the greeting).
    then: fn(Session),
}

impl Lookup {
    /// Finishes this lookup's ctx and keeps where the session goes next,
    /// for the lookup after it.
    fn done(mut self) -> fn(Session) {
        let then = self.then;
        drop(core::mem::replace(
            &mut self,
            Lookup {
                ctx: ptr::null_mut(),
                reverse: false,
                then,
            },
        ));
        then
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
        if self.ctx.is_null() {
            return;
        }
        // SAFETY: the ctx came from ngx_resolve_start, its lookup was
        // started, and only this owner finishes it, once.
        unsafe {
            if self.reverse {
                ngx_resolve_addr_done(self.ctx);
            } else {
                ngx_resolve_name_done(self.ctx);
            }
        }
    }
}

/// Keeps the lookup in the smtp module's slot (and in `s->resolver_ctx`,
/// where stock keeps it).
fn own(sess: Session, lookup: Lookup) {
    // SAFETY: s is live.
    unsafe { (*sess.raw()).resolver_ctx = lookup.ctx };
    sess.set_state(lookup);
}

/// A start that failed freed its ctx itself: forget it unfinished.
fn disown(sess: Session) {
    if let Some(lookup) = sess.take_state::<Lookup>() {
        core::mem::forget(lookup);
    }
    // SAFETY: s is live.
    unsafe { (*sess.raw()).resolver_ctx = ptr::null_mut() };
}

/// The lookup answered: finish it (its data was copied out before) and
/// say where the session goes next.
fn finish(sess: Session) -> fn(Session) {
    // SAFETY: s is live.
    unsafe { (*sess.raw()).resolver_ctx = ptr::null_mut() };
    sess.take_state::<Lookup>()
        .map_or(close as fn(Session), Lookup::done)
}

fn close(sess: Session) {
    sess.close();
}

/// A static host value (`[UNAVAILABLE]`, `[TEMPUNAVAIL]`).
fn set_host(sess: Session, host: &'static [u8]) {
    // SAFETY: s is live; nginx never writes through s->host.
    unsafe {
        (*sess.raw()).host = ngx_str_t {
            len: host.len(),
            data: host.as_ptr().cast_mut(),
        }
    };
}

/// Starts with the client's address; the greeting follows when done.
pub fn resolve_client(sess: Session, then: fn(Session)) {
    let c = sess.connection();
    let cscf = sess.core_conf();
    if cscf.resolver.is_null() {
        set_host(sess, UNAVAILABLE);
        return then(sess);
    }
    // SAFETY: c is live; a unix socket has no address to look up.
    if unsafe { (*(*c).sockaddr).sa_family } == nginx_sys::AF_UNIX as u16 {
        set_host(sess, TEMPUNAVAIL);
        return then(sess);
    }
    sess.set_action(c"in resolving client address");
    // SAFETY: the resolver lives as long as the cycle; the ctx is finished
    // by its Lookup, which our session state owns from the start.
    unsafe {
        let ctx = ngx_resolve_start(cscf.resolver, ptr::null_mut());
        if ctx.is_null() {
            return sess.close();
        }
        (*ctx).addr.sockaddr = (*c).sockaddr;
        (*ctx).addr.socklen = (*c).socklen;
        (*ctx).handler = Some(addr_resolved);
        (*ctx).data = sess.raw().cast();
        (*ctx).timeout = cscf.resolver_timeout;
        // owned before the start: an answer from the cache comes back
        // inside ngx_resolve_addr
        own(
            sess,
            Lookup {
                ctx,
                reverse: true,
                then,
            },
        );
        (*(*c).read).handler = Some(block_reading);
        if ngx_resolve_addr(ctx) != 0 {
            disown(sess);
            sess.close();
        }
    }
}

/// How a lookup failed, logged as stock does.
fn lookup_error(ctx: *mut ngx_resolver_ctx_t) -> LookupError {
    // SAFETY: ctx is the live ctx of a finished lookup.
    if unsafe { (*ctx).state } == NGX_RESOLVE_NXDOMAIN as isize {
        LookupError::NotFound
    } else {
        LookupError::Other
    }
}

fn strerror(ctx: *mut ngx_resolver_ctx_t) -> String {
    // SAFETY: ngx_resolver_strerror returns a static C string.
    unsafe {
        let state = (*ctx).state;
        let text = core::ffi::CStr::from_ptr(ngx_resolver_strerror(state));
        format!("{}: {}", state, text.to_string_lossy())
    }
}

unsafe extern "C" fn addr_resolved(ctx: *mut ngx_resolver_ctx_t) {
    // SAFETY: ctx->data is the session that started this lookup.
    let sess = unsafe { Session::from_raw((*ctx).data.cast()) };
    let c = sess.connection();
    // SAFETY: c is live.
    let addr_text = unsafe { shown(bytes(&(*c).addr_text)) };
    // SAFETY: ctx is live until ngx_resolve_addr_done below.
    let answer = if unsafe { (*ctx).state } != 0 {
        mail_log!(
            LOG_ERR,
            sess.log(),
            "{} could not be resolved ({})",
            addr_text,
            strerror(ctx)
        );
        Err(lookup_error(ctx))
    } else {
        // SAFETY: as above.
        Ok(unsafe { bytes(&(*ctx).name) })
    };
    let host = match resolve::after_ptr(answer) {
        AfterPtr::Host { host, invalid_name } => {
            if invalid_name {
                mail_log!(
                    LOG_ERR,
                    sess.log(),
                    "{} resolved to invalid host name \"{}\"",
                    addr_text,
                    // SAFETY: as above.
                    shown(unsafe { bytes(&(*ctx).name) })
                );
            }
            set_host(sess, host);
            None
        }
        AfterPtr::Forward(name) => {
            sess.set_action(c"in resolving client hostname");
            // SAFETY: the pool is live.
            match unsafe { pool_str(sess.pool(), name) } {
                Some(name) => Some(name),
                None => {
                    let _ = finish(sess);
                    return sess.close();
                }
            }
        }
    };
    let then = finish(sess);
    let Some(name) = host else {
        return then(sess);
    };
    // the next lookup finds where to go in the slot
    sess.set_state(Lookup {
        ctx: ptr::null_mut(),
        reverse: false,
        then,
    });
    // SAFETY: s and c are live; the posted event runs lookup_name.
    unsafe {
        (*sess.raw()).host = name;
        (*(*c).read).handler = Some(lookup_name);
        ngx_post_event((*c).read, ptr::addr_of_mut!(ngx_posted_events));
    }
}

/// The forward lookup of the name the PTR answer gave.
unsafe extern "C" fn lookup_name(rev: *mut ngx_event_t) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast::<ngx_connection_t>()) };
    let cscf = sess.core_conf();
    let Some(then) = sess.take_state::<Lookup>().map(Lookup::done) else {
        return sess.close();
    };
    // SAFETY: as in resolve_client.
    unsafe {
        let ctx = ngx_resolve_start(cscf.resolver, ptr::null_mut());
        if ctx.is_null() {
            return sess.close();
        }
        (*ctx).name = (*sess.raw()).host;
        (*ctx).handler = Some(name_resolved);
        (*ctx).data = sess.raw().cast();
        (*ctx).timeout = cscf.resolver_timeout;
        own(
            sess,
            Lookup {
                ctx,
                reverse: false,
                then,
            },
        );
        (*rev).handler = Some(block_reading);
        if ngx_resolve_name(ctx) != 0 {
            disown(sess);
            sess.close();
        }
    }
}

/// The IP address of a socket address, if it is one.
///
/// # Safety
/// `sa` must point at `len` bytes of a socket address.
unsafe fn ip_of(sa: *const sockaddr, len: socklen_t) -> Option<IpAddr> {
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

unsafe extern "C" fn name_resolved(ctx: *mut ngx_resolver_ctx_t) {
    // SAFETY: ctx->data is the session that started this lookup.
    let sess = unsafe { Session::from_raw((*ctx).data.cast()) };
    let c = sess.connection();
    // SAFETY: ctx and c are live until finish() below.
    unsafe {
        let name = bytes(&(*ctx).name);
        let addrs: Vec<IpAddr>;
        let answer = if (*ctx).state != 0 {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "\"{}\" could not be resolved ({})",
                shown(name),
                strerror(ctx)
            );
            Err(lookup_error(ctx))
        } else {
            addrs = (0..(*ctx).naddrs)
                .filter_map(|i| {
                    let a = &*(*ctx).addrs.add(i);
                    ip_of(a.sockaddr, a.socklen)
                })
                .collect();
            Ok(addrs.as_slice())
        };
        let host = match ip_of((*c).sockaddr, (*c).socklen) {
            Some(client) => resolve::after_forward(name, answer, client),
            None => UNAVAILABLE,
        };
        // s->host already holds the name; a failure replaces it (a valid
        // hostname never looks like "[UNAVAILABLE]")
        if host != name {
            set_host(
                sess,
                if host == TEMPUNAVAIL {
                    TEMPUNAVAIL
                } else {
                    UNAVAILABLE
                },
            );
        }
    }
    let then = finish(sess);
    then(sess);
}

/// While a lookup runs, the client's input waits in the socket.
unsafe extern "C" fn block_reading(rev: *mut ngx_event_t) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast::<ngx_connection_t>()) };
    // the pending lookup is cancelled with our state when the session ends
    if sess.ends_at_shutdown() {
        return;
    }
    // SAFETY: rev is live.
    if unsafe { ngx_handle_read_event(rev, 0) } != 0 {
        sess.close();
    }
}
