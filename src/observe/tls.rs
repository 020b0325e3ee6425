//! TLS handshakes that fail never reach this module's code: nginx's mail
//! core runs them and closes the connection. With a `metrics_zone`, each
//! worker puts itself in front of the mail listeners' accept handler to
//! hang a pool cleanup on every new connection (24 bytes in its pool) that
//! sees, when the connection goes, whether a `listen ssl` handshake was
//! still under way. STARTTLS ones are judged at the session's end
//! (record.rs), where the session's action says the same.

use core::ffi::{c_void, CStr};

use nginx_sys::{ngx_connection_t, ngx_cycle_t, ngx_int_t};

use super::module::{ngx_mail_rs_observe_module, ObserveConf};
use crate::bindings::{
    ngx_mail_conf_ctx_t, ngx_mail_core_module, ngx_mail_core_srv_conf_t, ngx_mail_init_connection,
    ngx_mail_log_ctx_t, ngx_mail_log_error,
};

extern "C" {
    /// The mail{} block's core module (not in our generated bindings).
    static mut ngx_mail_module: nginx_sys::ngx_module_t;
}
use crate::ffi::bytes;

/// The action nginx's mail core logs during a `listen ssl` handshake.
const HANDSHAKING: &CStr = c"SSL handshaking";
/// ... and during a STARTTLS one.
pub const STARTTLS: &CStr = c"in starttls state";

/// Whether `action` is the one nginx set for a handshake (`what`).
///
/// # Safety
/// `action` is null or a NUL-terminated string.
pub unsafe fn action_is(action: *const u8, what: &CStr) -> bool {
    // SAFETY: as the caller promises.
    !action.is_null() && unsafe { CStr::from_ptr(action.cast()) } == what
}

/// A worker starts: with a metrics zone in mail{}, the mail listeners'
/// accepts come through `accept`.
///
/// # Safety
/// `cycle` is the worker's live cycle.
pub unsafe fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: the cycle's conf_ctx has a slot for every core module; the
    // mail{} ctx's srv_conf holds the mail{} level's conf of ours.
    unsafe {
        let ctx = (*(*cycle).conf_ctx.add(ngx_mail_module.index)).cast::<ngx_mail_conf_ctx_t>();
        if ctx.is_null() {
            return 0;
        }
        let conf = *(*ctx).srv_conf.add(ngx_mail_rs_observe_module.ctx_index);
        if (*conf.cast::<ObserveConf>()).zone.is_null() {
            return 0;
        }
        let ls = (*cycle).listening.elts.cast::<nginx_sys::ngx_listening_t>();
        for i in 0..(*cycle).listening.nelts {
            let l = ls.add(i);
            if (*l).handler.map(|h| h as usize)
                == Some(ngx_mail_init_connection as *const () as usize)
            {
                (*l).handler = Some(accept);
            }
        }
    }
    0
}

unsafe extern "C" fn accept(c: *mut ngx_connection_t) {
    // SAFETY: nginx hands over a new connection with its pool; a cleanup
    // that cannot be added only costs the count.
    unsafe {
        let cln = nginx_sys::ngx_pool_cleanup_add((*c).pool, 0);
        if !cln.is_null() {
            (*cln).handler = Some(gone);
            (*cln).data = c.cast();
        }
        ngx_mail_init_connection(c);
    }
}

/// The connection's pool goes: a `listen ssl` session that never got to
/// its protocol's start (no ctx) while handshaking failed its handshake.
unsafe extern "C" fn gone(data: *mut c_void) {
    // SAFETY: the connection struct outlives its close, the session struct
    // (in the pool) is readable during its cleanups; the mail core set
    // c->data to the session and its srv_conf before any handshake.
    unsafe {
        let c = data.cast::<ngx_connection_t>();
        // not c->data: a closed connection's data links the free list; its
        // log (in the pool) still names the session, once the mail core
        // made one
        let log = (*c).log;
        if log.is_null()
            || (*log).handler.map(|h| h as usize) != Some(ngx_mail_log_error as *const () as usize)
            || (*log).data.is_null()
        {
            return;
        }
        let s = (*(*log).data.cast::<ngx_mail_log_ctx_t>()).session;
        if s.is_null() || (*s).ssl() == 0 || !(*s).ctx.is_null() || (*s).srv_conf.is_null() {
            return;
        }
        if !action_is((*log).action.cast_const().cast(), HANDSHAKING) {
            return;
        }
        let conf =
            &*(*(*s).srv_conf.add(ngx_mail_rs_observe_module.ctx_index)).cast::<ObserveConf>();
        let cscf = &*(*(*s).srv_conf.add(ngx_mail_core_module.ctx_index))
            .cast::<ngx_mail_core_srv_conf_t>();
        if cscf.protocol.is_null() {
            return;
        }
        super::metrics::tls_handshake(conf, bytes(&(*cscf.protocol).name), false);
    }
}
