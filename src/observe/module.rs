//! `ngx_mail_rs_observe_module`: `access_log` and `metrics_zone`, ours only
//! (stock mail has neither, so nothing is forwarded). Its ctx slot holds
//! the per-session record (record.rs).

use core::ffi::{c_char, c_void};
use core::ptr::{self, addr_of_mut};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_module_t, ngx_pcalloc, NGX_CONF_1MORE, NGX_CONF_TAKE12,
};

use super::access_log::{self, LogTarget, Parsed};
use crate::bindings::{ngx_mail_module_t, NGX_MAIL_MAIN_CONF, NGX_MAIL_SRV_CONF};
use crate::conf::{conf_error, mail_module, srv_ctx, NULL_COMMAND};
use crate::ffi::CONF_OK;

/// The server conf: where its sessions are logged and counted.
pub struct ObserveConf {
    /// `access_log`: unset (inherit), off, or a file.
    pub log: LogSetting,
    /// `metrics_zone` of the mail{} block (inherited by every server).
    pub zone: *mut nginx_sys::ngx_shm_zone_t,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LogSetting {
    Unset,
    Off,
    On(*const LogTarget),
}

impl ObserveConf {
    pub fn target(&self) -> Option<&'static LogTarget> {
        match self.log {
            // SAFETY: targets live in the configuration pool.
            LogSetting::On(t) => unsafe { t.as_ref() },
            _ => None,
        }
    }

    pub fn zone(&self) -> Option<&'static super::metrics::Zone> {
        // SAFETY: the zone handle lives in the configuration pool.
        unsafe { self.zone.as_ref() }
    }

    /// Whether a session of this server needs a record at all.
    pub fn active(&self) -> bool {
        self.target().is_some() || !self.zone.is_null()
    }
}

static mut COMMANDS: [ngx_command_t; 3] = [
    ngx_command_t {
        name: crate::conf::ngx_str(c"access_log"),
        type_: (NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_1MORE) as usize,
        set: Some(set_access_log),
        conf: crate::conf::SRV_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: crate::conf::ngx_str(c"metrics_zone"),
        type_: (NGX_MAIL_MAIN_CONF | NGX_CONF_TAKE12) as usize,
        set: Some(super::metrics::set_zone),
        conf: crate::conf::SRV_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    NULL_COMMAND,
];

static mut CTX: ngx_mail_module_t = srv_ctx(create_conf, merge_conf);

#[no_mangle]
pub static mut ngx_mail_rs_observe_module: ngx_module_t = ngx_module_t {
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast())
};

unsafe extern "C" fn init_process(cycle: *mut nginx_sys::ngx_cycle_t) -> nginx_sys::ngx_int_t {
    // SAFETY: the worker's cycle is live.
    unsafe { super::tls::init_process(cycle) }
}

unsafe extern "C" fn exit_process(cycle: *mut nginx_sys::ngx_cycle_t) {
    // SAFETY: the cycle is live at a worker's exit.
    unsafe { access_log::flush_all(cycle) };
    super::exit_process();
}

impl crate::session::ModuleConf for ObserveConf {
    fn module() -> *const ngx_module_t {
        ptr::addr_of!(ngx_mail_rs_observe_module)
    }
}

unsafe extern "C" fn set_access_log(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's server conf.
    let conf = unsafe { &mut *conf.cast::<ObserveConf>() };
    if conf.log != LogSetting::Unset {
        return conf_error(cf, "\"access_log\" directive is duplicate");
    }
    // SAFETY: cf is live with the directive's arguments.
    match unsafe { access_log::parse(cf) } {
        Err(e) => conf_error(cf, &e),
        Ok(Parsed::Off) => {
            conf.log = LogSetting::Off;
            CONF_OK
        }
        Ok(Parsed::Target(t)) => {
            // SAFETY: cf is live.
            let Some(p) = (unsafe { crate::conf::keep_in_conf_pool(cf, t) }) else {
                return crate::ffi::CONF_ERROR;
            };
            conf.log = LogSetting::On(p);
            CONF_OK
        }
    }
}

unsafe extern "C" fn create_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let p = ngx_pcalloc((*cf).pool, size_of::<ObserveConf>()).cast::<ObserveConf>();
        if p.is_null() {
            return ptr::null_mut();
        }
        p.write(ObserveConf {
            log: LogSetting::Unset,
            zone: ptr::null_mut(),
        });
        p.cast()
    }
}

unsafe extern "C" fn merge_conf(
    _cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes two confs of this module.
    let (prev, conf) = unsafe {
        (
            &*parent.cast::<ObserveConf>(),
            &mut *child.cast::<ObserveConf>(),
        )
    };
    if conf.log == LogSetting::Unset {
        conf.log = prev.log;
    }
    if conf.zone.is_null() {
        conf.zone = prev.zone;
    }
    CONF_OK
}
