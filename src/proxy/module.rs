//! `ngx_mail_rs_proxy_module`: the `proxy*` and `xclient` directives. Its
//! ctx slot also holds our per-session state (see session.rs).

use core::ffi::{c_char, c_void};
use core::ptr::{self, addr_of, addr_of_mut};

use nginx_sys::{
    ngx_command_t, ngx_conf_set_flag_slot, ngx_conf_set_msec_slot, ngx_conf_set_size_slot,
    ngx_conf_t, ngx_flag_t, ngx_module_t, ngx_msec_t, ngx_pagesize, ngx_pcalloc, ngx_uint_t,
    NGX_CONF_FLAG, NGX_CONF_TAKE1,
};

use crate::bindings::{ngx_mail_module_t, NGX_MAIL_MAIN_CONF, NGX_MAIL_MODULE, NGX_MAIL_SRV_CONF};
use crate::conf::{command, set_and_forward, Directive, NULL_COMMAND};
use crate::ffi::CONF_OK;
use crate::session::Session;

#[repr(C)]
pub struct ProxyConf {
    pub enable: ngx_flag_t,
    pub pass_error_message: ngx_flag_t,
    pub xclient: ngx_flag_t,
    pub smtp_auth: ngx_flag_t,
    pub proxy_protocol: ngx_flag_t,
    pub buffer_size: usize,
    pub timeout: ngx_msec_t,
}

const STOCK: &core::ffi::CStr = c"ngx_mail_proxy_module";
const DIRECTIVES: &[Directive] = &[
    Directive {
        name: "proxy",
        set: ngx_conf_set_flag_slot,
        shadows: STOCK,
    },
    Directive {
        name: "proxy_buffer",
        set: ngx_conf_set_size_slot,
        shadows: STOCK,
    },
    Directive {
        name: "proxy_timeout",
        set: ngx_conf_set_msec_slot,
        shadows: STOCK,
    },
    Directive {
        name: "proxy_pass_error_message",
        set: ngx_conf_set_flag_slot,
        shadows: STOCK,
    },
    Directive {
        name: "xclient",
        set: ngx_conf_set_flag_slot,
        shadows: STOCK,
    },
    Directive {
        name: "proxy_smtp_auth",
        set: ngx_conf_set_flag_slot,
        shadows: STOCK,
    },
    Directive {
        name: "proxy_protocol",
        set: ngx_conf_set_flag_slot,
        shadows: STOCK,
    },
];

unsafe extern "C" fn set_directive(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx's parser with live arguments.
    unsafe { set_and_forward(DIRECTIVES, cf, cmd, conf) }
}

const FLAG: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_FLAG;
const TAKE1: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_TAKE1;
use core::mem::offset_of;

static mut COMMANDS: [ngx_command_t; 8] = [
    command(
        c"proxy",
        FLAG,
        set_directive,
        offset_of!(ProxyConf, enable),
        ptr::null_mut(),
    ),
    command(
        c"proxy_buffer",
        TAKE1,
        set_directive,
        offset_of!(ProxyConf, buffer_size),
        ptr::null_mut(),
    ),
    command(
        c"proxy_timeout",
        TAKE1,
        set_directive,
        offset_of!(ProxyConf, timeout),
        ptr::null_mut(),
    ),
    command(
        c"proxy_pass_error_message",
        FLAG,
        set_directive,
        offset_of!(ProxyConf, pass_error_message),
        ptr::null_mut(),
    ),
    command(
        c"xclient",
        FLAG,
        set_directive,
        offset_of!(ProxyConf, xclient),
        ptr::null_mut(),
    ),
    command(
        c"proxy_smtp_auth",
        FLAG,
        set_directive,
        offset_of!(ProxyConf, smtp_auth),
        ptr::null_mut(),
    ),
    command(
        c"proxy_protocol",
        FLAG,
        set_directive,
        offset_of!(ProxyConf, proxy_protocol),
        ptr::null_mut(),
    ),
    NULL_COMMAND,
];

static mut CTX: ngx_mail_module_t = ngx_mail_module_t {
    protocol: ptr::null_mut(),
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: Some(create_conf),
    merge_srv_conf: Some(merge_conf),
};

#[no_mangle]
pub static mut ngx_mail_rs_proxy_module: ngx_module_t = ngx_module_t {
    ctx: addr_of_mut!(CTX).cast(),
    commands: addr_of_mut!(COMMANDS).cast(),
    type_: NGX_MAIL_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

pub fn ctx_index() -> usize {
    // SAFETY: ctx_index is set when the mail{} block is parsed, before any
    // session exists.
    unsafe { (*addr_of!(ngx_mail_rs_proxy_module)).ctx_index }
}

pub fn conf(s: Session) -> &'static mut ProxyConf {
    // SAFETY: this module's server conf is a ProxyConf.
    unsafe { s.srv_conf(addr_of!(ngx_mail_rs_proxy_module)) }
}

const UNSET: ngx_flag_t = -1;

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
            smtp_auth: UNSET,
            proxy_protocol: UNSET,
            buffer_size: usize::MAX,
            timeout: ngx_msec_t::MAX,
        };
        p.cast()
    }
}

fn merge_flag(conf: &mut ngx_flag_t, prev: ngx_flag_t, default: ngx_flag_t) {
    if *conf == UNSET {
        *conf = if prev == UNSET { default } else { prev };
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
    merge_flag(&mut conf.enable, prev.enable, 0);
    merge_flag(&mut conf.pass_error_message, prev.pass_error_message, 0);
    merge_flag(&mut conf.xclient, prev.xclient, 1);
    merge_flag(&mut conf.smtp_auth, prev.smtp_auth, 0);
    merge_flag(&mut conf.proxy_protocol, prev.proxy_protocol, 0);
    if conf.buffer_size == usize::MAX {
        // SAFETY: ngx_pagesize is set at startup.
        conf.buffer_size = if prev.buffer_size == usize::MAX {
            unsafe { ngx_pagesize }
        } else {
            prev.buffer_size
        };
    }
    if conf.timeout == ngx_msec_t::MAX {
        conf.timeout = if prev.timeout == ngx_msec_t::MAX {
            24 * 60 * 60000
        } else {
            prev.timeout
        };
    }
    CONF_OK
}
