//! `ngx_mail_rs_sieve_module`: the sieve protocol (ManageSieve, RFC 5804),
//! its directives and confs. nginx has no stock module for it, so its
//! directives shadow nothing and are never forwarded.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr::{self, addr_of, addr_of_mut};

use mail_core::auth_bits;
use mail_core::sieve::{self, Capabilities, DEFAULT_CAPABILITIES};
use nginx_sys::{
    ngx_command_t, ngx_conf_bitmask_t, ngx_conf_set_bitmask_slot, ngx_conf_t, ngx_module_t,
    ngx_pcalloc, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE,
};

use super::conf::SieveSrvConf;
use super::handler;
use crate::bindings::{
    ngx_mail_capabilities, ngx_mail_module_t, ngx_mail_protocol_t, NGX_MAIL_MAIN_CONF,
    NGX_MAIL_SRV_CONF,
};
use crate::conf::{
    bitmask, capabilities_array, conf_error, keep_in_conf_pool, mail_module, merge_auth_methods,
    merge_capabilities, ngx_str, NULL_BITMASK,
};
use crate::ffi::{bytes, shown, CONF_ERROR, CONF_OK};

/// `s->protocol`: a 3-bit field in nginx's session, 0 to 2 being pop3,
/// imap and smtp. Only stock's auth_http and proxy modules read it, and no
/// sieve session reaches them.
const NGX_MAIL_SIEVE_PROTOCOL: ngx_uint_t = 3;

pub static mut SIEVE_PROTOCOL: ngx_mail_protocol_t = ngx_mail_protocol_t {
    name: ngx_str(c"sieve"),
    alpn: ngx_str(c"\x0bmanagesieve"),
    port: [4190, 0, 0, 0],
    type_: NGX_MAIL_SIEVE_PROTOCOL,
    init_session: Some(handler::init_session),
    init_protocol: Some(handler::init_protocol),
    // only ngx_mail_read_command calls it, and our handlers read for themselves
    parse_command: None,
    auth_state: Some(handler::auth_state),
    internal_server_error: ngx_str(c"BYE \"internal server error\"\r\n"),
    cert_error: ngx_str(c"BYE \"SSL certificate error\"\r\n"),
    no_cert: ngx_str(c"BYE \"No required SSL certificate\"\r\n"),
};

static mut AUTH_METHODS: [ngx_conf_bitmask_t; 5] = [
    bitmask(c"plain", auth_bits::PLAIN),
    bitmask(c"login", auth_bits::LOGIN),
    bitmask(c"cram-md5", auth_bits::CRAM_MD5),
    bitmask(c"external", auth_bits::EXTERNAL),
    NULL_BITMASK,
];

const SRV: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_1MORE;

crate::directives! {
    // no stock module of that name: nothing is forwarded
    shadows c"";
    c"sieve_capabilities" =>
        set_capabilities, SRV, offset_of!(SieveSrvConf, capabilities), ptr::null_mut();
    c"sieve_auth" =>
        ngx_conf_set_bitmask_slot, SRV, offset_of!(SieveSrvConf, auth_methods), addr_of_mut!(AUTH_METHODS).cast();
}

/// `sieve_capabilities`: each argument is one line of the block as it is
/// sent, checked here so that a typo cannot break every client.
unsafe extern "C" fn set_capabilities(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: cf->args holds the directive's name and its arguments.
    let args = unsafe {
        let args = (*cf).args;
        let elts = (*args).elts.cast::<ngx_str_t>();
        (1..(*args).nelts)
            .map(|i| bytes(&*elts.add(i)))
            .collect::<Vec<_>>()
    };
    if let Some(bad) = args.iter().find(|line| !sieve::line_ok(line)) {
        return conf_error(
            cf,
            &format!(
                "invalid value \"{}\" in \"sieve_capabilities\" directive, \
                 it must be a quoted name and an optional quoted value",
                shown(bad)
            ),
        );
    }
    // SAFETY: nginx's own setter, called as nginx would call it.
    unsafe { ngx_mail_capabilities(cf, cmd, conf) }
}

static mut CTX: ngx_mail_module_t = ngx_mail_module_t {
    protocol: addr_of_mut!(SIEVE_PROTOCOL),
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

#[no_mangle]
pub static mut ngx_mail_rs_sieve_module: ngx_module_t =
    mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast());

unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let conf = ngx_pcalloc((*cf).pool, size_of::<SieveSrvConf>()).cast::<SieveSrvConf>();
        let Some(caps) = capabilities_array(cf) else {
            return ptr::null_mut();
        };
        if conf.is_null() {
            return ptr::null_mut();
        }
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
            &*parent.cast::<SieveSrvConf>(),
            &mut *child.cast::<SieveSrvConf>(),
        )
    };
    merge_auth_methods(&mut conf.auth_methods, prev.auth_methods);
    let Some(caps) = merge_capabilities(
        &mut conf.capabilities,
        &prev.capabilities,
        &DEFAULT_CAPABILITIES,
    ) else {
        return CONF_ERROR;
    };
    // SAFETY: cf is the live configuration.
    match unsafe { keep_in_conf_pool(cf, Capabilities::build(&caps, conf.auth_methods)) } {
        Some(p) => conf.replies = p,
        None => return CONF_ERROR,
    }
    CONF_OK
}

impl crate::session::ModuleConf for SieveSrvConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_sieve_module)
    }
}

impl crate::session::SessionState for super::handler::SieveState {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_sieve_module)
    }
}
