//! `ngx_mail_rs_smtp_module`: the smtp protocol, its directives and confs.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr::{self, addr_of, addr_of_mut};

use mail_core::auth_bits;
use mail_core::smtp::Replies;
use nginx_sys::{
    ngx_conf_bitmask_t, ngx_conf_set_bitmask_slot, ngx_conf_set_msec_slot, ngx_conf_set_size_slot,
    ngx_conf_t, ngx_module_t, ngx_msec_t, ngx_pcalloc, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_TAKE1,
};

use super::conf::SmtpSrvConf;
use super::handler;
use crate::bindings::{
    ngx_mail_capabilities, ngx_mail_conf_ctx_t, ngx_mail_core_module, ngx_mail_core_srv_conf_t,
    ngx_mail_module_t, ngx_mail_protocol_t, NGX_MAIL_MAIN_CONF, NGX_MAIL_SMTP_PROTOCOL,
    NGX_MAIL_SRV_CONF,
};
use crate::conf::{
    bitmask, capabilities_array, keep_in_conf_pool, mail_module, merge, merge_capabilities,
    ngx_str, NULL_BITMASK,
};
use crate::ffi::{bytes, CONF_ERROR, CONF_OK};

pub static mut SMTP_PROTOCOL: ngx_mail_protocol_t = ngx_mail_protocol_t {
    name: ngx_str(c"smtp"),
    alpn: ngx_str(c"\x04smtp"),
    port: [25, 465, 587, 0],
    type_: NGX_MAIL_SMTP_PROTOCOL as ngx_uint_t,
    init_session: Some(handler::init_session),
    init_protocol: Some(handler::init_protocol),
    // only ngx_mail_read_command calls it, and our handlers read for themselves
    parse_command: None,
    auth_state: Some(handler::auth_state),
    internal_server_error: ngx_str(c"451 4.3.2 Internal server error\r\n"),
    cert_error: ngx_str(c"421 4.7.1 SSL certificate error\r\n"),
    no_cert: ngx_str(c"421 4.7.1 No required SSL certificate\r\n"),
};

static mut AUTH_METHODS: [ngx_conf_bitmask_t; 8] = [
    bitmask(c"plain", auth_bits::PLAIN),
    bitmask(c"login", auth_bits::LOGIN),
    bitmask(c"cram-md5", auth_bits::CRAM_MD5),
    bitmask(c"external", auth_bits::EXTERNAL),
    bitmask(c"xoauth2", auth_bits::XOAUTH2),
    bitmask(c"oauthbearer", auth_bits::OAUTHBEARER),
    bitmask(c"none", auth_bits::NONE),
    NULL_BITMASK,
];

const STOCK: &core::ffi::CStr = c"ngx_mail_smtp_module";

const SRV: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF;

crate::directives! {
    shadows STOCK;
    c"smtp_client_buffer" =>
        ngx_conf_set_size_slot, SRV | NGX_CONF_TAKE1, offset_of!(SmtpSrvConf, client_buffer_size), ptr::null_mut();
    c"smtp_greeting_delay" =>
        ngx_conf_set_msec_slot, SRV | NGX_CONF_TAKE1, offset_of!(SmtpSrvConf, greeting_delay), ptr::null_mut();
    c"smtp_capabilities" =>
        ngx_mail_capabilities, SRV | NGX_CONF_1MORE, offset_of!(SmtpSrvConf, capabilities), ptr::null_mut();
    c"smtp_auth" =>
        ngx_conf_set_bitmask_slot, SRV | NGX_CONF_1MORE, offset_of!(SmtpSrvConf, auth_methods), addr_of_mut!(AUTH_METHODS).cast();
}

static mut CTX: ngx_mail_module_t = ngx_mail_module_t {
    protocol: addr_of_mut!(SMTP_PROTOCOL),
    create_main_conf: None,
    init_main_conf: Some(take_over_guessed_servers),
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

#[no_mangle]
pub static mut ngx_mail_rs_smtp_module: ngx_module_t =
    mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast());

const UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;

unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let conf = ngx_pcalloc((*cf).pool, size_of::<SmtpSrvConf>()).cast::<SmtpSrvConf>();
        let Some(caps) = capabilities_array(cf) else {
            return ptr::null_mut();
        };
        if conf.is_null() {
            return ptr::null_mut();
        }
        (*conf).client_buffer_size = usize::MAX;
        (*conf).greeting_delay = UNSET_MSEC;
        (*conf).capabilities = caps;
        conf.cast()
    }
}

/// The server's `server_name`, merged by the core module before us.
///
/// # Safety
/// `cf` must be the configuration of the server being merged.
unsafe fn server_name(cf: *mut ngx_conf_t) -> &'static [u8] {
    // SAFETY: while merging, cf->ctx is the server's mail conf ctx.
    unsafe {
        let ctx = (*cf).ctx.cast::<ngx_mail_conf_ctx_t>();
        let cscf = (*(*ctx).srv_conf.add(ngx_mail_core_module.ctx_index))
            .cast::<ngx_mail_core_srv_conf_t>();
        bytes(&(*cscf).server_name)
    }
}

unsafe extern "C" fn merge_srv_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our two confs of this module.
    let (prev, conf) = unsafe {
        (
            &*parent.cast::<SmtpSrvConf>(),
            &mut *child.cast::<SmtpSrvConf>(),
        )
    };
    merge(
        &mut conf.client_buffer_size,
        prev.client_buffer_size,
        usize::MAX,
        crate::ffi::page_size(),
    );
    merge(&mut conf.greeting_delay, prev.greeting_delay, UNSET_MSEC, 0);
    merge(
        &mut conf.auth_methods,
        prev.auth_methods,
        0,
        (nginx_sys::NGX_CONF_BITMASK_SET as usize | auth_bits::PLAIN | auth_bits::LOGIN)
            as ngx_uint_t,
    );
    let Some(caps) = merge_capabilities(&mut conf.capabilities, &prev.capabilities, &[]) else {
        return CONF_ERROR;
    };
    // SAFETY: cf is the server's live configuration.
    let replies = Replies::build(unsafe { server_name(cf) }, &caps, conf.auth_methods);
    // SAFETY: as above.
    match unsafe { keep_in_conf_pool(cf, replies) } {
        Some(p) => conf.replies = p,
        None => return CONF_ERROR,
    }
    CONF_OK
}

unsafe extern "C" fn take_over_guessed_servers(
    cf: *mut ngx_conf_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx as init_main_conf with the mail{} ctx.
    unsafe { crate::conf::take_over_guessed_servers(cf, addr_of_mut!(SMTP_PROTOCOL)) }
}

impl crate::session::ModuleConf for SmtpSrvConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_smtp_module)
    }
}

impl crate::session::SessionState for super::handler::SmtpState {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_smtp_module)
    }
}

impl crate::session::SessionState for super::resolver::Lookup {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_smtp_module)
    }
}
