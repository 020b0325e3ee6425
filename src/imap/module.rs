//! `ngx_mail_rs_imap_module`: the imap protocol, its directives and confs.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr::{self, addr_of, addr_of_mut};

use mail_core::auth_bits;
use mail_core::imap::{Capabilities, DEFAULT_CAPABILITIES};
use nginx_sys::{
    ngx_conf_bitmask_t, ngx_conf_set_bitmask_slot, ngx_conf_set_size_slot, ngx_conf_t,
    ngx_module_t, ngx_pcalloc, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_TAKE1,
};

use super::conf::ImapSrvConf;
use super::handler;
use crate::bindings::{
    ngx_mail_capabilities, ngx_mail_module_t, ngx_mail_protocol_t, NGX_MAIL_IMAP_PROTOCOL,
    NGX_MAIL_MAIN_CONF, NGX_MAIL_SRV_CONF,
};
use crate::conf::{
    bitmask, capabilities_array, conf_error, keep_in_conf_pool, mail_module, merge,
    merge_auth_methods, merge_capabilities, ngx_str, NULL_BITMASK,
};
use crate::ffi::{CONF_ERROR, CONF_OK};

pub static mut IMAP_PROTOCOL: ngx_mail_protocol_t = ngx_mail_protocol_t {
    name: ngx_str(c"imap"),
    alpn: ngx_str(c"\x04imap"),
    port: [143, 993, 0, 0],
    type_: NGX_MAIL_IMAP_PROTOCOL as ngx_uint_t,
    init_session: Some(handler::init_session),
    init_protocol: Some(handler::init_protocol),
    // only ngx_mail_read_command calls it, and our handlers read for themselves
    parse_command: None,
    auth_state: Some(handler::auth_state),
    internal_server_error: ngx_str(c"* BAD internal server error\r\n"),
    cert_error: ngx_str(c"* BYE SSL certificate error\r\n"),
    no_cert: ngx_str(c"* BYE No required SSL certificate\r\n"),
};

static mut AUTH_METHODS: [ngx_conf_bitmask_t; 7] = [
    bitmask(c"plain", auth_bits::PLAIN),
    bitmask(c"login", auth_bits::LOGIN),
    bitmask(c"cram-md5", auth_bits::CRAM_MD5),
    bitmask(c"external", auth_bits::EXTERNAL),
    bitmask(c"xoauth2", auth_bits::XOAUTH2),
    bitmask(c"oauthbearer", auth_bits::OAUTHBEARER),
    NULL_BITMASK,
];

const STOCK: &core::ffi::CStr = c"ngx_mail_imap_module";

const SRV: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF;

crate::directives! {
    shadows STOCK;
    c"imap_client_buffer" =>
        ngx_conf_set_size_slot, SRV | NGX_CONF_TAKE1, offset_of!(ImapSrvConf, client_buffer_size), ptr::null_mut();
    c"imap_capabilities" =>
        ngx_mail_capabilities, SRV | NGX_CONF_1MORE, offset_of!(ImapSrvConf, capabilities), ptr::null_mut();
    // ours: stock has no directive of that name to forward to
    c"imap_id" =>
        ngx_mail_capabilities, SRV | NGX_CONF_1MORE, offset_of!(ImapSrvConf, id), ptr::null_mut();
    c"imap_auth" =>
        ngx_conf_set_bitmask_slot, SRV | NGX_CONF_1MORE, offset_of!(ImapSrvConf, auth_methods), addr_of_mut!(AUTH_METHODS).cast();
}

static mut CTX: ngx_mail_module_t = ngx_mail_module_t {
    protocol: addr_of_mut!(IMAP_PROTOCOL),
    create_main_conf: None,
    init_main_conf: Some(take_over_guessed_servers),
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

#[no_mangle]
pub static mut ngx_mail_rs_imap_module: ngx_module_t =
    mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast());

unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let conf = ngx_pcalloc((*cf).pool, size_of::<ImapSrvConf>()).cast::<ImapSrvConf>();
        let (Some(caps), Some(id)) = (capabilities_array(cf), capabilities_array(cf)) else {
            return ptr::null_mut();
        };
        if conf.is_null() {
            return ptr::null_mut();
        }
        (*conf).client_buffer_size = usize::MAX;
        (*conf).capabilities = caps;
        (*conf).id = id;
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
            &*parent.cast::<ImapSrvConf>(),
            &mut *child.cast::<ImapSrvConf>(),
        )
    };
    merge(
        &mut conf.client_buffer_size,
        prev.client_buffer_size,
        usize::MAX,
        crate::ffi::page_size(),
    );
    // unlike pop3, imap's "plain" does not imply AUTH=LOGIN
    merge_auth_methods(&mut conf.auth_methods, prev.auth_methods);
    let Some(caps) = merge_capabilities(
        &mut conf.capabilities,
        &prev.capabilities,
        &DEFAULT_CAPABILITIES,
    ) else {
        return CONF_ERROR;
    };
    let Some(id) = merge_capabilities(&mut conf.id, &prev.id, &[]) else {
        return CONF_ERROR;
    };
    if let Err(why) = mail_core::imap::id::check_config(&id) {
        return conf_error(cf, &format!("\"imap_id\" {why}"));
    }
    let replies = Capabilities::build(&caps, conf.auth_methods).with_id(&id);
    // SAFETY: cf is the live configuration.
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
    unsafe { crate::conf::take_over_guessed_servers(cf, addr_of_mut!(IMAP_PROTOCOL)) }
}

impl crate::session::ModuleConf for ImapSrvConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_imap_module)
    }
}

impl crate::session::SessionState for super::handler::ImapState {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_imap_module)
    }
}
