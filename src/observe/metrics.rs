//! `metrics_zone NAME [SIZE]`: counters in shared memory, counted by every
//! worker (not yet wired: the directive is refused for now).

use core::ffi::{c_char, c_void};

use mail_core::session_log::{AuthResult, CloseReason};
use mail_core::AuthMethod;
use nginx_sys::{ngx_command_t, ngx_conf_t, ngx_msec_t};

use super::module::ObserveConf;
use crate::session::Session;

/// A metrics zone's handle.
pub struct Zone {
    _private: (),
}

pub unsafe extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    crate::conf::conf_error(cf, "\"metrics_zone\" is not supported yet")
}

pub fn session_started(_sess: Session, _conf: &ObserveConf) {}

pub fn auth_done(
    _sess: Session,
    _method: Option<AuthMethod>,
    _result: AuthResult,
    _ms: ngx_msec_t,
) {
}

pub fn backend_connected(_sess: Session, _ms: ngx_msec_t) {}

pub fn session_ended(
    _conf: &ObserveConf,
    _protocol: &[u8],
    _reason: CloseReason,
    _to_backend: u64,
    _to_client: u64,
) {
}
