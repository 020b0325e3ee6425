//! The per-session record: made at the session's start only when its
//! server has an `access_log` or a `metrics_zone`, kept on the heap in our
//! module's ctx slot (which login's `clear_states` leaves alone), and
//! finished once, at `Session::ended` or, should the pool go first, at its
//! own pool cleanup. About 200 bytes; nothing of it is in the pool.

use core::ffi::{c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::net::SocketAddr;

use mail_core::session_log::{AuthResult, CloseReason, SessionRecord};
use mail_core::AuthMethod;
use nginx_sys::{ngx_current_msec, ngx_msec_t, ngx_pool_cleanup_t};

use super::module::{ngx_mail_rs_observe_module, ObserveConf};
use crate::bindings::ngx_mail_session_t;
use crate::ffi::bytes;
use crate::session::Session;

#[repr(C)]
pub struct Record {
    /// First, so that the node's address is the record's.
    cleanup: ngx_pool_cleanup_t,
    sess: *mut ngx_mail_session_t,
    conf: &'static ObserveConf,
    start: ngx_msec_t,
    auth_start: ngx_msec_t,
    pub auth_ms: Option<ngx_msec_t>,
    backend_start: ngx_msec_t,
    pub backend_ms: Option<ngx_msec_t>,
    tls: Option<(&'static CStr, &'static CStr)>,
    pub method: Option<AuthMethod>,
    pub auth: Option<AuthResult>,
    /// The auth server's refusal text (only allocated for a refusal).
    pub auth_reason: Option<Box<[u8]>>,
    pub backend: Option<SocketAddr>,
    /// What each connection had sent at login: the relay's bytes are the rest.
    sent_at_login: Option<(i64, i64)>,
    /// The session was ended for a refusal (no Auth-Wait).
    pub refused_close: bool,
    /// An auth request is out and not answered yet.
    in_flight: bool,
    done: bool,
}

fn now() -> ngx_msec_t {
    // SAFETY: nginx's cached clock, updated by the event loop.
    unsafe { ptr::read_volatile(&raw const ngx_current_msec) }
}

fn slot(s: *mut ngx_mail_session_t) -> *mut *mut c_void {
    // SAFETY: s->ctx has a slot for every mail module's ctx_index.
    unsafe { (*s).ctx.add(ngx_mail_rs_observe_module.ctx_index) }
}

/// The session's record, if its server keeps one and it is not finished.
pub fn with<R>(sess: Session, f: impl FnOnce(&mut Record) -> R) -> Option<R> {
    // SAFETY: the slot is null or our live record; the borrow is f's only.
    unsafe { (*slot(sess.raw())).cast::<Record>().as_mut() }
        .filter(|r| !r.done)
        .map(f)
}

/// A session starts: its record, when its server wants one.
pub fn start(sess: Session) {
    let conf = sess.conf::<ObserveConf>();
    if !conf.active() {
        return;
    }
    // the server's address is looked up (and kept in the pool) now, while
    // the socket is open
    let _ = sess.client().local_addr();
    let rec = Box::into_raw(Box::new(Record {
        cleanup: ngx_pool_cleanup_t {
            handler: Some(pool_cleanup),
            data: ptr::null_mut(),
            next: ptr::null_mut(),
        },
        sess: sess.raw(),
        conf,
        start: now(),
        auth_start: 0,
        auth_ms: None,
        backend_start: 0,
        backend_ms: None,
        tls: None,
        method: None,
        auth: None,
        auth_reason: None,
        backend: None,
        sent_at_login: None,
        refused_close: false,
        in_flight: false,
        done: false,
    }));
    // SAFETY: the pool is the live session's; the node stays linked until
    // the pool runs it, and the record lives until then.
    unsafe {
        let pool = sess.pool();
        (*rec).cleanup.data = rec.cast();
        (*rec).cleanup.next = (*pool).cleanup;
        (*pool).cleanup = &raw mut (*rec).cleanup;
        *slot(sess.raw()) = rec.cast();
    }
    super::metrics::session_started(sess, conf);
    note_tls(sess);
}

/// Keeps the client's TLS version and cipher (static strings of the TLS
/// library) while the connection still has them.
pub fn note_tls(sess: Session) {
    #[cfg(ngx_mail_ssl)]
    {
        if !sess.client().is_tls() {
            return;
        }
        let c = sess.connection();
        type Getter = unsafe extern "C" fn(
            *mut nginx_sys::ngx_connection_t,
            *mut nginx_sys::ngx_pool_t,
            *mut nginx_sys::ngx_str_t,
        ) -> nginx_sys::ngx_int_t;
        let get = |f: Getter| -> Option<&'static CStr> {
            let mut s = nginx_sys::ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
            // SAFETY: c is a live TLS connection; these two getters return
            // a static NUL-terminated string and allocate nothing.
            unsafe {
                if f(c, ptr::null_mut(), &mut s) != 0 || s.data.is_null() {
                    return None;
                }
                Some(CStr::from_ptr(s.data.cast()))
            }
        };
        let version = get(nginx_sys::ngx_ssl_get_protocol);
        let cipher = get(nginx_sys::ngx_ssl_get_cipher_name);
        if with(sess, |r| {
            if r.tls.is_none() {
                if let (Some(v), Some(ci)) = (version, cipher) {
                    r.tls = Some((v, ci));
                    return true;
                }
            }
            false
        }) == Some(true)
        {
            super::metrics::tls_done(sess);
        }
    }
    #[cfg(not(ngx_mail_ssl))]
    let _ = sess;
}

pub fn auth_started(sess: Session, method: AuthMethod) {
    note_tls(sess);
    with(sess, |r| {
        r.method = Some(method);
        r.auth_start = now();
        r.in_flight = true;
    });
}

/// The auth server answered (or failed): its result and latency.
pub fn auth_done(sess: Session, result: AuthResult, reason: Option<&[u8]>) {
    let Some(ms) = with(sess, |r| {
        if !r.in_flight {
            return None;
        }
        r.in_flight = false;
        let ms = now().wrapping_sub(r.auth_start);
        r.auth_ms = Some(ms);
        r.auth = Some(result);
        r.auth_reason = reason.map(Box::from);
        Some((ms, r.method))
    })
    .flatten() else {
        return;
    };
    super::metrics::auth_done(sess, ms.1, result, ms.0);
}

pub fn backend_connecting(sess: Session, addr: SocketAddr) {
    with(sess, |r| {
        r.backend = Some(addr);
        r.backend_start = now();
    });
}

pub fn backend_connected(sess: Session) {
    let ms = with(sess, |r| {
        if r.backend_ms.is_some() {
            return None;
        }
        let ms = now().wrapping_sub(r.backend_start);
        r.backend_ms = Some(ms);
        Some(ms)
    });
    if let Some(Some(ms)) = ms {
        super::metrics::backend_connected(sess, ms);
    }
}

pub fn logged_in(sess: Session) {
    let Some(uc) = sess.upstream() else { return };
    // SAFETY: both connections are live.
    let sent = unsafe { ((*sess.connection()).sent, (*uc.raw()).sent) };
    with(sess, |r| r.sent_at_login = Some(sent));
}

/// The session ends (`Session::ended`): the record is written and counted.
pub fn ended(sess: Session) {
    // SAFETY: the slot is null or our live record.
    if let Some(r) = unsafe { (*slot(sess.raw())).cast::<Record>().as_mut() } {
        finish(r);
    }
}

fn reason(r: &Record) -> CloseReason {
    // SAFETY: the session struct and its connections' structs are readable
    // until the pool goes (after its cleanups); the upstream's until closed.
    unsafe {
        let s = r.sess;
        let c = (*s).connection;
        if (*c).close() != 0 {
            return CloseReason::Shutdown;
        }
        if (*c).timedout() != 0 || (*(*c).read).timedout() != 0 {
            return CloseReason::ClientTimeout;
        }
        if r.sent_at_login.is_some() {
            let uc = if (*s).proxy.is_null() {
                ptr::null_mut()
            } else {
                (*(*s).proxy).upstream.connection
            };
            if !uc.is_null() && (*(*uc).read).timedout() != 0 {
                return CloseReason::BackendTimeout;
            }
            if (*(*c).read).eof() != 0 && (*(*c).read).error() == 0 {
                return CloseReason::ClientClosed;
            }
            if !uc.is_null() && (*(*uc).read).eof() != 0 && (*(*uc).read).error() == 0 {
                return CloseReason::BackendClosed;
            }
            return CloseReason::Error;
        }
        if r.refused_close {
            return CloseReason::AuthRefused;
        }
        if (*(*c).read).eof() != 0 {
            return CloseReason::ClientClosed;
        }
        if matches!(r.auth, Some(AuthResult::Error | AuthResult::Timeout)) || r.backend.is_some() {
            return CloseReason::Error;
        }
        if (*s).quit() != 0 {
            return CloseReason::Quit;
        }
        CloseReason::Error
    }
}

fn finish(r: &mut Record) {
    if r.done {
        return;
    }
    r.done = true;
    let reason = reason(r);
    let duration = now().wrapping_sub(r.start);
    // SAFETY: as in `reason`.
    let (login, protocol, client, local, addr_text, sent) = unsafe {
        let s = r.sess;
        let c = (*s).connection;
        let sent = r.sent_at_login.map(|(c0, u0)| {
            let uc = if (*s).proxy.is_null() {
                ptr::null_mut()
            } else {
                (*(*s).proxy).upstream.connection
            };
            let to_client = ((*c).sent - c0).max(0) as u64;
            let to_backend = if uc.is_null() {
                0
            } else {
                ((*uc).sent - u0).max(0) as u64
            };
            // a backend connection with TLS (proxy_ssl, proxy_starttls):
            // read before the relay closes it
            let backend_tls = !uc.is_null() && !(*uc).ssl.is_null();
            (to_backend, to_client, backend_tls)
        });
        let cscf = Session::from_raw(s).core_conf();
        (
            bytes(&(*s).login),
            bytes(&(*cscf.protocol).name),
            // the local address was looked up at the start: read, not asked
            crate::nginx::Conn::from_raw(c).peer_addr(),
            crate::nginx::Conn::from_raw(c).local_addr(),
            bytes(&(*c).addr_text),
            sent,
        )
    };
    let (to_backend, to_client, backend_tls) = sent.unwrap_or((0, 0, false));
    // a STARTTLS handshake: failed if the session ended in it, else
    // completed (counted here unless a login already noted its TLS)
    // SAFETY: as in `reason`.
    let starttls = unsafe {
        let s = r.sess;
        ((*s).starttls() != 0 && r.tls.is_none()).then(|| {
            !super::tls::action_is(
                (*(*(*s).connection).log).action.cast_const().cast(),
                super::tls::STARTTLS,
            )
        })
    };
    if let Some(ok) = starttls {
        super::metrics::tls_handshake(r.conf, protocol, ok);
    }
    super::metrics::session_ended(r.conf, protocol, reason, to_backend, to_client);
    let Some(target) = r.conf.target() else {
        return;
    };
    let server = local.map(|a| a.ip().to_string());
    let backend = r.backend.map(|a| a.to_string());
    // SAFETY: nginx's cached log time, a string it rewrites in place.
    let time = unsafe {
        bytes(&ptr::read_volatile(
            &raw const nginx_sys::ngx_cached_http_log_iso8601,
        ))
    };
    let rec = SessionRecord {
        time,
        client_addr: addr_text,
        client_port: client.map(|a| a.port()),
        server_addr: server.as_deref().map(str::as_bytes).unwrap_or(b"unix:"),
        server_port: local.map(|a| a.port()),
        protocol,
        tls_version: r.tls.map(|t| t.0.to_bytes()),
        tls_cipher: r.tls.map(|t| t.1.to_bytes()),
        login: (!login.is_empty()).then_some(login),
        auth_method: r.method.map(|m| m.http_name().as_bytes()),
        auth_result: r.auth,
        auth_reason: r.auth_reason.as_deref(),
        auth_ms: r.auth_ms.map(|ms| ms as u64),
        backend: backend.as_deref().map(str::as_bytes),
        backend_tls,
        bytes_to_backend: to_backend,
        bytes_to_client: to_client,
        duration_ms: duration as u64,
        reason: Some(reason),
    };
    let line = if target.json {
        mail_core::session_log::json_line(&rec)
    } else {
        mail_core::session_log::mail_line(&rec)
    };
    // SAFETY: the connection struct outlives its close.
    target.write(&line, unsafe { (*(*r.sess).connection).log });
}

/// A record whose cleanup ran: `ngx_destroy_pool` still reads the node's
/// `next` after the handler returns, so its memory goes at the next one.
static RETIRED: AtomicPtr<Record> = AtomicPtr::new(ptr::null_mut());

pub fn free_retired() {
    let r = RETIRED.swap(ptr::null_mut(), Ordering::Relaxed);
    if !r.is_null() {
        // SAFETY: a retired record's pool is gone; only its memory is left.
        drop(unsafe { Box::from_raw(r) });
    }
}

/// The pool goes: the record is finished if the session's end did not
/// reach it first (a close of nginx's own), then let go.
unsafe extern "C" fn pool_cleanup(data: *mut c_void) {
    let r = data.cast::<Record>();
    // SAFETY: data is our record, being run by ngx_destroy_pool; the
    // session struct is still readable.
    unsafe {
        finish(&mut *r);
        *slot((*r).sess) = ptr::null_mut();
        let previous = RETIRED.swap(r, Ordering::Relaxed);
        if !previous.is_null() {
            drop(Box::from_raw(previous));
        }
    }
}
