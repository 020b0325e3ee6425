//! `ngx_mail_rs_proxy_module`: the `proxy*` and `xclient` directives. Its
//! ctx slot also holds our per-session state (see session.rs).

use core::ffi::{c_char, c_void};
use core::ptr::{self, addr_of, addr_of_mut};

use nginx_sys::{
    ngx_conf_enum_t, ngx_conf_set_enum_slot, ngx_conf_set_flag_slot, ngx_conf_set_msec_slot,
    ngx_conf_set_num_slot, ngx_conf_set_size_slot, ngx_conf_t, ngx_flag_t, ngx_int_t, ngx_module_t,
    ngx_msec_t, ngx_pcalloc, ngx_str_t, ngx_uint_t, NGX_CONF_FLAG, NGX_CONF_TAKE1,
};

use super::conf::{ProxyConf, PROXY_PROTOCOL_V2, SMTP_AUTH_LOGIN};
use crate::bindings::{ngx_mail_module_t, NGX_MAIL_MAIN_CONF, NGX_MAIL_SRV_CONF};
use crate::conf::{mail_module, merge, ngx_str, srv_ctx};
use crate::ffi::CONF_OK;

const STOCK: &core::ffi::CStr = c"ngx_mail_proxy_module";

const FLAG: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_FLAG;
const TAKE1: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_TAKE1;
use core::mem::offset_of;

crate::directives! {
    shadows STOCK;
    c"proxy" => ngx_conf_set_flag_slot, FLAG, offset_of!(ProxyConf, enable), ptr::null_mut();
    c"proxy_buffer" =>
        ngx_conf_set_size_slot, TAKE1, offset_of!(ProxyConf, buffer_size), ptr::null_mut();
    c"proxy_timeout" =>
        ngx_conf_set_msec_slot, TAKE1, offset_of!(ProxyConf, timeout), ptr::null_mut();
    c"proxy_pass_error_message" =>
        ngx_conf_set_flag_slot, FLAG, offset_of!(ProxyConf, pass_error_message), ptr::null_mut();
    c"xclient" => ngx_conf_set_flag_slot, FLAG, offset_of!(ProxyConf, xclient), ptr::null_mut();
    // stock 1.28 is handed only on and off
    c"proxy_smtp_auth" => ngx_conf_set_enum_slot, TAKE1, offset_of!(ProxyConf, smtp_auth),
        addr_of_mut!(SMTP_AUTH_METHODS).cast();
    // nginx 1.31.4's values; stock 1.28 is handed only on and off
    c"proxy_protocol" => ngx_conf_set_enum_slot, TAKE1, offset_of!(ProxyConf, proxy_protocol),
        addr_of_mut!(PROXY_PROTOCOL_VERSIONS).cast();
    // ours: stock has no directive of that name to forward to
    c"proxy_pass_client_info" =>
        ngx_conf_set_flag_slot, FLAG, offset_of!(ProxyConf, pass_client_info), ptr::null_mut();
    // freenginx's; stock has no directive of that name to forward to
    c"max_commands" =>
        ngx_conf_set_num_slot, TAKE1, offset_of!(ProxyConf, max_commands), ptr::null_mut();
}

static mut SMTP_AUTH_METHODS: [ngx_conf_enum_t; 5] = [
    enum_value(c"off", 0),
    enum_value(c"on", 1),
    enum_value(c"plain", 1),
    enum_value(c"login", SMTP_AUTH_LOGIN),
    NULL_ENUM,
];

static mut PROXY_PROTOCOL_VERSIONS: [ngx_conf_enum_t; 4] = [
    enum_value(c"off", 0),
    enum_value(c"on", 1),
    enum_value(c"v2", PROXY_PROTOCOL_V2),
    NULL_ENUM,
];

const fn enum_value(name: &'static core::ffi::CStr, value: ngx_uint_t) -> ngx_conf_enum_t {
    ngx_conf_enum_t {
        name: ngx_str(name),
        value,
    }
}

const NULL_ENUM: ngx_conf_enum_t = ngx_conf_enum_t {
    name: ngx_str_t {
        len: 0,
        data: ptr::null_mut(),
    },
    value: 0,
};

static mut CTX: ngx_mail_module_t = srv_ctx(create_conf, merge_conf);

#[no_mangle]
pub static mut ngx_mail_rs_proxy_module: ngx_module_t = ngx_module_t {
    exit_process: Some(exit_process),
    exit_master: Some(exit_process),
    ..mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast())
};

/// A worker (or a single-process nginx) ends: nginx unloads this module
/// right after, so nothing of ours may be left behind in its statics.
unsafe extern "C" fn exit_process(_cycle: *mut nginx_sys::ngx_cycle_t) {
    crate::slots::free_retired();
    super::buffers::free_all();
}

impl crate::session::ModuleConf for ProxyConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_proxy_module)
    }
}

const UNSET: ngx_flag_t = -1;
/// `NGX_CONF_UNSET`, as `ngx_conf_set_num_slot` expects it.
const UNSET_NUM: ngx_int_t = -1;

unsafe extern "C" fn create_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let p = ngx_pcalloc((*cf).pool, size_of::<ProxyConf>()).cast::<ProxyConf>();
        if p.is_null() {
            return ptr::null_mut();
        }
        *p = ProxyConf {
            enable: UNSET,
            pass_error_message: UNSET,
            xclient: UNSET,
            smtp_auth: ngx_uint_t::MAX,
            proxy_protocol: ngx_uint_t::MAX,
            buffer_size: usize::MAX,
            timeout: ngx_msec_t::MAX,
            max_commands: UNSET_NUM,
            pass_client_info: UNSET,
        };
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
            &*parent.cast::<ProxyConf>(),
            &mut *child.cast::<ProxyConf>(),
        )
    };
    merge(&mut conf.enable, prev.enable, UNSET, 0);
    merge(
        &mut conf.pass_error_message,
        prev.pass_error_message,
        UNSET,
        0,
    );
    merge(&mut conf.xclient, prev.xclient, UNSET, 1);
    merge(&mut conf.smtp_auth, prev.smtp_auth, ngx_uint_t::MAX, 0);
    merge(
        &mut conf.proxy_protocol,
        prev.proxy_protocol,
        ngx_uint_t::MAX,
        0,
    );
    merge(
        &mut conf.buffer_size,
        prev.buffer_size,
        usize::MAX,
        crate::ffi::page_size(),
    );
    merge(
        &mut conf.timeout,
        prev.timeout,
        ngx_msec_t::MAX,
        24 * 60 * 60000,
    );
    merge(&mut conf.max_commands, prev.max_commands, UNSET_NUM, 1000);
    merge(&mut conf.pass_client_info, prev.pass_client_info, UNSET, 0);
    CONF_OK
}

impl crate::session::SessionState for super::login::LoginState {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_proxy_module)
    }
}

impl crate::session::SessionState for super::splice::Pipes {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_proxy_module)
    }
}
