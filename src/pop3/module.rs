//! `ngx_mail_rs_pop3_module`: the pop3 protocol, its directives and confs.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr::{self, addr_of, addr_of_mut};

use mail_core::auth_bits;
use mail_core::pop3::{Capabilities, DEFAULT_CAPABILITIES};
use nginx_sys::{
    ngx_conf_bitmask_t, ngx_conf_set_bitmask_slot, ngx_conf_set_size_slot, ngx_conf_t,
    ngx_module_t, ngx_pcalloc, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_TAKE1,
};

use super::conf::Pop3SrvConf;
use super::handler;
use crate::bindings::{
    ngx_mail_capabilities, ngx_mail_module_t, ngx_mail_protocol_t, NGX_MAIL_MAIN_CONF,
    NGX_MAIL_POP3_PROTOCOL, NGX_MAIL_SRV_CONF,
};
use crate::conf::{
    bitmask, capabilities_array, keep_in_conf_pool, mail_module, merge, merge_auth_methods,
    merge_capabilities, ngx_str, NULL_BITMASK,
};
use crate::ffi::{CONF_ERROR, CONF_OK};

pub static mut POP3_PROTOCOL: ngx_mail_protocol_t = ngx_mail_protocol_t {
    name: ngx_str(c"pop3"),
    alpn: ngx_str(c"\x04pop3"),
    port: [110, 995, 0, 0],
    type_: NGX_MAIL_POP3_PROTOCOL as ngx_uint_t,
    init_session: Some(handler::init_session),
    init_protocol: Some(handler::init_protocol),
    // only ngx_mail_read_command calls it, and our handlers read for themselves
    parse_command: None,
    auth_state: Some(handler::auth_state),
    internal_server_error: ngx_str(c"-ERR internal server error\r\n"),
    cert_error: ngx_str(c"-ERR SSL certificate error\r\n"),
    no_cert: ngx_str(c"-ERR No required SSL certificate\r\n"),
};

static mut AUTH_METHODS: [ngx_conf_bitmask_t; 7] = [
    bitmask(c"plain", auth_bits::PLAIN),
    bitmask(c"apop", auth_bits::APOP),
    bitmask(c"cram-md5", auth_bits::CRAM_MD5),
    bitmask(c"external", auth_bits::EXTERNAL),
    bitmask(c"xoauth2", auth_bits::XOAUTH2),
    bitmask(c"oauthbearer", auth_bits::OAUTHBEARER),
    NULL_BITMASK,
];

const SRV: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF;

// pop3_client_buffer is ours (nginx PR 1590): stock 1.28 has no such
// directive, so set_and_forward finds none to forward it to
crate::directives! {
    shadows c"ngx_mail_pop3_module";
    c"pop3_client_buffer" =>
        ngx_conf_set_size_slot, SRV | NGX_CONF_TAKE1, offset_of!(Pop3SrvConf, client_buffer_size), ptr::null_mut();
    c"pop3_capabilities" =>
        ngx_mail_capabilities, SRV | NGX_CONF_1MORE, offset_of!(Pop3SrvConf, capabilities), ptr::null_mut();
    c"pop3_auth" =>
        ngx_conf_set_bitmask_slot, SRV | NGX_CONF_1MORE, offset_of!(Pop3SrvConf, auth_methods), addr_of_mut!(AUTH_METHODS).cast();
}

static mut CTX: ngx_mail_module_t = ngx_mail_module_t {
    protocol: addr_of_mut!(POP3_PROTOCOL),
    create_main_conf: None,
    init_main_conf: Some(take_over_guessed_servers),
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

#[no_mangle]
pub static mut ngx_mail_rs_pop3_module: ngx_module_t = ngx_module_t {
    init_module: Some(crate::conf::announce),
    ..mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast())
};

unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let conf = ngx_pcalloc((*cf).pool, size_of::<Pop3SrvConf>()).cast::<Pop3SrvConf>();
        let Some(caps) = capabilities_array(cf) else {
            return ptr::null_mut();
        };
        if conf.is_null() {
            return ptr::null_mut();
        }
        (*conf).client_buffer_size = usize::MAX;
        (*conf).capabilities = caps;
        conf.cast()
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
            &*parent.cast::<Pop3SrvConf>(),
            &mut *child.cast::<Pop3SrvConf>(),
        )
    };
    merge_auth_methods(&mut conf.auth_methods, prev.auth_methods);
    if conf.auth_methods & auth_bits::PLAIN as ngx_uint_t != 0 {
        conf.auth_methods |= auth_bits::LOGIN as ngx_uint_t;
    }
    // stock's fixed 128 bytes, unless a bearer token mechanism is on: a
    // token does not fit, and nginx PR 1590's default is a page
    let bearer = (auth_bits::XOAUTH2 | auth_bits::OAUTHBEARER) as ngx_uint_t;
    let default = match conf.auth_methods & bearer {
        0 => mail_core::pop3::COMMAND_BUFFER,
        _ => crate::ffi::page_size(),
    };
    merge(
        &mut conf.client_buffer_size,
        prev.client_buffer_size,
        usize::MAX,
        default,
    );
    // with limit_conn, freenginx's default: RESP-CODES, so that clients know
    // the [SYS/TEMP] of its refusal (stock 1.28's default otherwise)
    let mut defaults = DEFAULT_CAPABILITIES.to_vec();
    // SAFETY: nginx merges this server with cf->ctx its own.
    if unsafe { crate::limit::module::server_has_limits(cf) } {
        defaults.push(c"RESP-CODES");
    }
    let Some(caps) = merge_capabilities(&mut conf.capabilities, &prev.capabilities, &defaults)
    else {
        return CONF_ERROR;
    };
    // SAFETY: cf is the live configuration.
    match unsafe { keep_in_conf_pool(cf, Capabilities::build(&caps, conf.auth_methods)) } {
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
    unsafe { crate::conf::take_over_guessed_servers(cf, addr_of_mut!(POP3_PROTOCOL)) }
}

impl crate::session::ModuleConf for Pop3SrvConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_pop3_module)
    }
}

impl crate::session::SessionState for super::handler::Pop3State {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_pop3_module)
    }
}
