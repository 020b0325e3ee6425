//! `ngx_mail_rs_proxy_ssl_module`: TLS to the backends (ours; stock, freenginx
//! and Angie talk to mail backends in plain text only). The directives are
//! the stream proxy's `proxy_ssl*`, with its defaults; the `SSL_CTX` is built
//! at merge with nginx's own `ngx_ssl_*`, as `ngx_stream_proxy_set_ssl` does,
//! and shared by every server that sets none of them.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr::{self, addr_of, addr_of_mut};

use nginx_sys::{
    ngx_array_t, ngx_conf_t, ngx_flag_t, ngx_module_t, ngx_pcalloc, ngx_str_t, ngx_uint_t,
};
#[cfg(ngx_mail_ssl)]
use nginx_sys::{
    ngx_command_t, ngx_conf_set_bitmask_slot, ngx_conf_set_flag_slot, ngx_conf_set_keyval_slot,
    ngx_conf_set_num_slot, ngx_conf_set_str_slot, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_TAKE1,
    NGX_CONF_TAKE2,
};

use crate::bindings::ngx_mail_module_t;
#[cfg(ngx_mail_ssl)]
use crate::bindings::{NGX_MAIL_MAIN_CONF, NGX_MAIL_SRV_CONF};
use crate::conf::{mail_module, merge, srv_ctx};
use crate::ffi::{CONF_ERROR, CONF_OK};

/// The backend TLS settings of one server.
#[repr(C)]
pub struct SslConf {
    /// `proxy_ssl`: TLS from the first byte (implicit TLS).
    pub enable: ngx_flag_t,
    /// `proxy_starttls`: STLS/STARTTLS before the login dialogue.
    pub starttls: ngx_flag_t,
    pub session_reuse: ngx_flag_t,
    /// `NGX_SSL_*` bits; 0 while unset, as `ngx_conf_set_bitmask_slot` wants.
    pub protocols: ngx_uint_t,
    pub ciphers: ngx_str_t,
    /// `proxy_ssl_name`; empty: the host the auth server named.
    pub name: ngx_str_t,
    pub server_name: ngx_flag_t,
    pub verify: ngx_flag_t,
    pub verify_depth: ngx_uint_t,
    pub trusted_certificate: ngx_str_t,
    pub crl: ngx_str_t,
    pub certificate: ngx_str_t,
    pub certificate_key: ngx_str_t,
    pub passwords: *mut ngx_array_t,
    pub conf_commands: *mut ngx_array_t,
    /// The context every backend connection of this server is made from.
    #[cfg(ngx_mail_ssl)]
    pub ssl: *mut nginx_sys::ngx_ssl_t,
}

const UNSET: ngx_flag_t = -1;
const UNSET_UINT: ngx_uint_t = ngx_uint_t::MAX;
const UNSET_PTR: *mut ngx_array_t = usize::MAX as *mut ngx_array_t;

#[cfg(ngx_mail_ssl)]
const FLAG: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_FLAG;
#[cfg(ngx_mail_ssl)]
const TAKE1: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_TAKE1;

#[cfg(ngx_mail_ssl)]
crate::directives! {
    // no stock module has any of these; the name is only what set_and_forward looks in
    shadows c"ngx_mail_proxy_module";
    c"proxy_ssl" => ngx_conf_set_flag_slot, FLAG, offset_of!(SslConf, enable), ptr::null_mut();
    c"proxy_starttls" =>
        ngx_conf_set_flag_slot, FLAG, offset_of!(SslConf, starttls), ptr::null_mut();
    c"proxy_ssl_session_reuse" =>
        ngx_conf_set_flag_slot, FLAG, offset_of!(SslConf, session_reuse), ptr::null_mut();
    c"proxy_ssl_protocols" => ngx_conf_set_bitmask_slot,
        NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_1MORE,
        offset_of!(SslConf, protocols), addr_of_mut!(PROTOCOLS).cast();
    c"proxy_ssl_ciphers" =>
        ngx_conf_set_str_slot, TAKE1, offset_of!(SslConf, ciphers), ptr::null_mut();
    c"proxy_ssl_name" => ngx_conf_set_str_slot, TAKE1, offset_of!(SslConf, name), ptr::null_mut();
    c"proxy_ssl_server_name" =>
        ngx_conf_set_flag_slot, FLAG, offset_of!(SslConf, server_name), ptr::null_mut();
    c"proxy_ssl_verify" =>
        ngx_conf_set_flag_slot, FLAG, offset_of!(SslConf, verify), ptr::null_mut();
    c"proxy_ssl_verify_depth" =>
        ngx_conf_set_num_slot, TAKE1, offset_of!(SslConf, verify_depth), ptr::null_mut();
    c"proxy_ssl_trusted_certificate" => ngx_conf_set_str_slot, TAKE1,
        offset_of!(SslConf, trusted_certificate), ptr::null_mut();
    c"proxy_ssl_crl" => ngx_conf_set_str_slot, TAKE1, offset_of!(SslConf, crl), ptr::null_mut();
    c"proxy_ssl_certificate" =>
        ngx_conf_set_str_slot, TAKE1, offset_of!(SslConf, certificate), ptr::null_mut();
    c"proxy_ssl_certificate_key" =>
        ngx_conf_set_str_slot, TAKE1, offset_of!(SslConf, certificate_key), ptr::null_mut();
    c"proxy_ssl_password_file" => set_password_file, TAKE1, 0, ptr::null_mut();
    c"proxy_ssl_conf_command" => ngx_conf_set_keyval_slot,
        NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF | NGX_CONF_TAKE2,
        offset_of!(SslConf, conf_commands), ptr::null_mut();
}

#[cfg(not(ngx_mail_ssl))]
static mut COMMANDS: [nginx_sys::ngx_command_t; 1] = [crate::conf::NULL_COMMAND];

/// The stream proxy's protocol names.
#[cfg(ngx_mail_ssl)]
static mut PROTOCOLS: [nginx_sys::ngx_conf_bitmask_t; 7] = {
    use crate::conf::{bitmask, NULL_BITMASK};
    [
        bitmask(c"SSLv2", nginx_sys::NGX_SSL_SSLv2 as usize),
        bitmask(c"SSLv3", nginx_sys::NGX_SSL_SSLv3 as usize),
        bitmask(c"TLSv1", nginx_sys::NGX_SSL_TLSv1 as usize),
        bitmask(c"TLSv1.1", nginx_sys::NGX_SSL_TLSv1_1 as usize),
        bitmask(c"TLSv1.2", nginx_sys::NGX_SSL_TLSv1_2 as usize),
        bitmask(c"TLSv1.3", nginx_sys::NGX_SSL_TLSv1_3 as usize),
        NULL_BITMASK,
    ]
};

/// `proxy_ssl_password_file`, as `ngx_stream_proxy_ssl_password_file`.
#[cfg(ngx_mail_ssl)]
unsafe extern "C" fn set_password_file(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's conf and the directive's two
    // arguments in cf->args.
    unsafe {
        let conf = &mut *conf.cast::<SslConf>();
        if conf.passwords != UNSET_PTR {
            return c"is duplicate".as_ptr().cast_mut();
        }
        let file = (*(*cf).args).elts.cast::<ngx_str_t>().add(1);
        conf.passwords = nginx_sys::ngx_ssl_read_password_file(cf, file);
        if conf.passwords.is_null() {
            return CONF_ERROR;
        }
    }
    CONF_OK
}

static mut CTX: ngx_mail_module_t = srv_ctx(create_conf, merge_conf);

#[no_mangle]
pub static mut ngx_mail_rs_proxy_ssl_module: ngx_module_t = ngx_module_t {
    exit_process: Some(exit_process),
    exit_master: Some(exit_process),
    ..mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast())
};

/// nginx unloads this module right after: the sessions kept to resume
/// are freed first.
unsafe extern "C" fn exit_process(_cycle: *mut nginx_sys::ngx_cycle_t) {
    #[cfg(ngx_mail_ssl)]
    super::ssl::forget_sessions();
}

impl crate::session::ModuleConf for SslConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_proxy_ssl_module)
    }
}

const NO_STR: ngx_str_t = ngx_str_t {
    len: 0,
    data: ptr::null_mut(),
};

unsafe extern "C" fn create_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let p = ngx_pcalloc((*cf).pool, size_of::<SslConf>()).cast::<SslConf>();
        if p.is_null() {
            return ptr::null_mut();
        }
        *p = SslConf {
            enable: UNSET,
            starttls: UNSET,
            session_reuse: UNSET,
            protocols: 0,
            ciphers: NO_STR,
            name: NO_STR,
            server_name: UNSET,
            verify: UNSET,
            verify_depth: UNSET_UINT,
            trusted_certificate: NO_STR,
            crl: NO_STR,
            certificate: NO_STR,
            certificate_key: NO_STR,
            passwords: UNSET_PTR,
            conf_commands: UNSET_PTR,
            #[cfg(ngx_mail_ssl)]
            ssl: ptr::null_mut(),
        };
        p.cast()
    }
}

fn merge_str(conf: &mut ngx_str_t, prev: ngx_str_t, default: &'static core::ffi::CStr) {
    if conf.data.is_null() {
        *conf = if prev.data.is_null() {
            crate::conf::ngx_str(default)
        } else {
            prev
        };
    }
}

unsafe extern "C" fn merge_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes two confs of this module.
    let (prev, conf) = unsafe {
        (
            &mut *parent.cast::<SslConf>(),
            &mut *child.cast::<SslConf>(),
        )
    };
    // a server that sets nothing shares the level above's context
    #[cfg(ngx_mail_ssl)]
    let own = conf.protocols != 0
        || !conf.ciphers.data.is_null()
        || !conf.certificate.data.is_null()
        || !conf.certificate_key.data.is_null()
        || conf.passwords != UNSET_PTR
        || conf.verify != UNSET
        || conf.verify_depth != UNSET_UINT
        || !conf.trusted_certificate.data.is_null()
        || !conf.crl.data.is_null()
        || conf.session_reuse != UNSET
        || conf.conf_commands != UNSET_PTR;
    merge(&mut conf.enable, prev.enable, UNSET, 0);
    merge(&mut conf.starttls, prev.starttls, UNSET, 0);
    merge(&mut conf.session_reuse, prev.session_reuse, UNSET, 1);
    merge(
        &mut conf.protocols,
        prev.protocols,
        0,
        // stream's default, TLSv1.2 TLSv1.3, spelled out: nginx before
        // 1.23.4 (Debian's 1.22) has no NGX_SSL_DEFAULT_PROTOCOLS
        nginx_sys::NGX_CONF_BITMASK_SET as ngx_uint_t
            | nginx_sys::NGX_SSL_TLSv1_2 as ngx_uint_t
            | nginx_sys::NGX_SSL_TLSv1_3 as ngx_uint_t,
    );
    merge_str(&mut conf.ciphers, prev.ciphers, c"DEFAULT");
    merge_str(&mut conf.name, prev.name, c"");
    merge(&mut conf.server_name, prev.server_name, UNSET, 0);
    merge(&mut conf.verify, prev.verify, UNSET, 0);
    merge(&mut conf.verify_depth, prev.verify_depth, UNSET_UINT, 1);
    merge_str(&mut conf.trusted_certificate, prev.trusted_certificate, c"");
    merge_str(&mut conf.crl, prev.crl, c"");
    merge_str(&mut conf.certificate, prev.certificate, c"");
    merge_str(&mut conf.certificate_key, prev.certificate_key, c"");
    merge(
        &mut conf.passwords,
        prev.passwords,
        UNSET_PTR,
        ptr::null_mut(),
    );
    merge(
        &mut conf.conf_commands,
        prev.conf_commands,
        UNSET_PTR,
        ptr::null_mut(),
    );
    #[cfg(ngx_mail_ssl)]
    {
        if !own && !prev.ssl.is_null() {
            conf.ssl = prev.ssl;
            return CONF_OK;
        }
        // SAFETY: cf is the live configuration; conf is merged.
        if !unsafe { build_ctx(cf, conf) } {
            return CONF_ERROR;
        }
        // the mail{} level's context, made for its first server, serves
        // every other server that sets nothing either
        if !own && prev.ssl.is_null() {
            prev.ssl = conf.ssl;
        }
    }
    #[cfg(not(ngx_mail_ssl))]
    let _ = cf;
    CONF_OK
}

/// `ngx_stream_proxy_set_ssl`. The context is made whether or not
/// `proxy_ssl` is on: the auth server may ask for TLS per session
/// (`Auth-Server-TLS`).
///
/// # Safety
/// `cf` is the live configuration.
#[cfg(ngx_mail_ssl)]
unsafe fn build_ctx(cf: *mut ngx_conf_t, conf: &mut SslConf) -> bool {
    use crate::conf::conf_error;
    use crate::ffi::bytes;
    use nginx_sys::*;
    // SAFETY: cf, its pool and log are live while configuring; every
    // string and array is merged and lives in the configuration pool.
    unsafe {
        let ssl = ngx_pcalloc((*cf).pool, size_of::<ngx_ssl_t>()).cast::<ngx_ssl_t>();
        if ssl.is_null() {
            return false;
        }
        (*ssl).log = (*cf).log;
        conf.ssl = ssl;
        if ngx_ssl_create(ssl, conf.protocols, ptr::null_mut()) != NGX_OK as ngx_int_t {
            return false;
        }
        let cln = ngx_pool_cleanup_add((*cf).pool, 0);
        if cln.is_null() {
            ngx_ssl_cleanup_ctx(ssl.cast());
            return false;
        }
        (*cln).handler = Some(ngx_ssl_cleanup_ctx);
        (*cln).data = ssl.cast();
        let ok = NGX_OK as ngx_int_t;
        if ngx_ssl_ciphers(cf, ssl, &mut conf.ciphers, 0) != ok {
            return false;
        }
        if conf.certificate.len != 0 {
            if conf.certificate_key.len == 0 {
                let _ = conf_error(
                    cf,
                    &format!(
                        "no \"proxy_ssl_certificate_key\" is defined for certificate \"{}\"",
                        crate::ffi::shown(bytes(&conf.certificate))
                    ),
                );
                return false;
            }
            if ngx_ssl_certificate(
                cf,
                ssl,
                &mut conf.certificate,
                &mut conf.certificate_key,
                conf.passwords,
            ) != ok
            {
                return false;
            }
        }
        if conf.verify != 0 {
            if conf.trusted_certificate.len == 0 {
                if conf.enable != 0 || conf.starttls != 0 {
                    let _ = conf_error(cf, "no proxy_ssl_trusted_certificate for proxy_ssl_verify");
                    return false;
                }
                // only the auth server asks for TLS here: with no CA to
                // verify against, every such backend is refused
            } else {
                if ngx_ssl_trusted_certificate(
                    cf,
                    ssl,
                    &mut conf.trusted_certificate,
                    conf.verify_depth as ngx_int_t,
                ) != ok
                {
                    return false;
                }
                if ngx_ssl_crl(cf, ssl, &mut conf.crl) != ok {
                    return false;
                }
            }
        }
        if ngx_ssl_client_session_cache(cf, ssl, conf.session_reuse as ngx_uint_t) != ok {
            return false;
        }
        ngx_ssl_conf_commands(cf, ssl, conf.conf_commands) == ok
    }
}
