//! `ngx_mail_rs_auth_http_module`: the `auth_http*` directives.

use core::cell::Cell;
use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr::{self, addr_of, addr_of_mut};

use nginx_sys::{
    ngx_array_create, ngx_array_push, ngx_atoi, ngx_command_t, ngx_conf_set_flag_slot,
    ngx_conf_set_msec_slot, ngx_conf_t, ngx_keyval_t, ngx_module_t, ngx_msec_t, ngx_parse_time,
    ngx_parse_url, ngx_pcalloc, ngx_str_t, ngx_uint_t, ngx_url_t, NGX_CONF_FLAG, NGX_CONF_TAKE1,
    NGX_CONF_TAKE12, NGX_CONF_TAKE123, NGX_CONF_TAKE2,
};

use super::conf::{AuthHttpConf, AuthServer, ServerList};
use crate::bindings::{ngx_mail_module_t, NGX_MAIL_MAIN_CONF, NGX_MAIL_SRV_CONF};
use crate::conf::{conf_error, mail_module, merge, ngx_str, srv_ctx};
use crate::ffi::{bytes, pool_str, CONF_ERROR, CONF_OK};
use mail_core::auth_http::failover::{Peer, MAX_SERVERS};

const SRV: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF;

crate::directives! {
    shadows c"ngx_mail_auth_http_module";
    c"auth_http" => set_auth_http, SRV | NGX_CONF_TAKE1, 0, ptr::null_mut();
    c"auth_http_timeout" =>
        ngx_conf_set_msec_slot, SRV | NGX_CONF_TAKE1, offset_of!(AuthHttpConf, timeout), ptr::null_mut();
    c"auth_http_header" => set_auth_http_header, SRV | NGX_CONF_TAKE2, 0, ptr::null_mut();
    c"auth_http_pass_client_cert" =>
        ngx_conf_set_flag_slot, SRV | NGX_CONF_FLAG, offset_of!(AuthHttpConf, pass_client_cert), ptr::null_mut();
    c"auth_http_keepalive" => set_keepalive, SRV | NGX_CONF_TAKE12, 0, ptr::null_mut();
    c"auth_http_server" => set_auth_http_server, SRV | NGX_CONF_TAKE123, 0, ptr::null_mut();
    c"auth_http_cache" => set_cache, SRV | NGX_CONF_TAKE123, 0, ptr::null_mut();
}

static mut CTX: ngx_mail_module_t = srv_ctx(create_conf, merge_conf);

#[no_mangle]
pub static mut ngx_mail_rs_auth_http_module: ngx_module_t =
    mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast());

impl crate::session::ModuleConf for AuthHttpConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_auth_http_module)
    }
}

unsafe extern "C" fn create_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf and its pool are live while configuring.
    unsafe {
        let conf = ngx_pcalloc((*cf).pool, size_of::<AuthHttpConf>()).cast::<AuthHttpConf>();
        if conf.is_null() {
            return ptr::null_mut();
        }
        (*conf).timeout = ngx_msec_t::MAX;
        (*conf).pass_client_cert = -1;
        (*conf).keepalive = ngx_uint_t::MAX;
        (*conf).keepalive_timeout = ngx_msec_t::MAX;
        (*conf).cache_zone = unset_zone();
        (*conf).cache_valid = ngx_msec_t::MAX;
        (*conf).cache_invalid = ngx_msec_t::MAX;
        (*conf).file = (*(*cf).conf_file).file.name.data;
        (*conf).line = (*(*cf).conf_file).line;
        conf.cast()
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
            &mut *parent.cast::<AuthHttpConf>(),
            &mut *child.cast::<AuthHttpConf>(),
        )
    };
    if conf.servers.is_null() {
        conf.servers = prev.servers;
        if conf.servers.is_null() {
            // SAFETY: file is the config file name, NUL-terminated.
            let file = unsafe { core::ffi::CStr::from_ptr(conf.file.cast()) };
            crate::mail_log!(
                crate::ffi::LOG_EMERG,
                // SAFETY: cf is live.
                unsafe { (*cf).log },
                "no \"auth_http\" is defined for server in {}:{}",
                file.to_string_lossy(),
                conf.line
            );
            return CONF_ERROR;
        }
    }
    merge(&mut conf.timeout, prev.timeout, ngx_msec_t::MAX, 60000);
    merge(&mut conf.pass_client_cert, prev.pass_client_cert, -1, 0);
    merge(&mut conf.keepalive, prev.keepalive, ngx_uint_t::MAX, 0);
    if conf.cache_zone == unset_zone() {
        conf.cache_zone = prev.cache_zone;
        conf.cache_valid = prev.cache_valid;
        conf.cache_invalid = prev.cache_invalid;
    }
    if conf.cache_zone == unset_zone() {
        conf.cache_zone = ptr::null_mut();
    }
    merge(
        &mut conf.cache_valid,
        prev.cache_valid,
        ngx_msec_t::MAX,
        60_000,
    );
    merge(
        &mut conf.cache_invalid,
        prev.cache_invalid,
        ngx_msec_t::MAX,
        0,
    );
    // 60s as the http upstream's keepalive_timeout
    merge(
        &mut conf.keepalive_timeout,
        prev.keepalive_timeout,
        ngx_msec_t::MAX,
        60000,
    );
    if conf.headers.is_null() {
        conf.headers = prev.headers;
        conf.header = prev.header;
    }
    if !conf.headers.is_null() && conf.header.len == 0 {
        let mut joined = Vec::new();
        // SAFETY: headers holds nelts ngx_keyval_t from the config pool.
        unsafe {
            let a = &*conf.headers;
            let elts = a.elts.cast::<ngx_keyval_t>();
            for i in 0..a.nelts {
                let kv = &*elts.add(i);
                joined.extend_from_slice(bytes(&kv.key));
                joined.extend_from_slice(b": ");
                joined.extend_from_slice(bytes(&kv.value));
                joined.extend_from_slice(b"\r\n");
            }
            match pool_str((*cf).pool, &joined) {
                Some(s) => conf.header = s,
                None => return CONF_ERROR,
            }
        }
    }
    CONF_OK
}

/// One auth server from its URL, as stock's `auth_http` reads it.
///
/// # Safety
/// `cf` is live; `url` is a directive argument.
unsafe fn auth_server(cf: *mut ngx_conf_t, url: ngx_str_t) -> Result<AuthServer, *mut c_char> {
    // SAFETY: cf and its pool are live while configuring.
    unsafe {
        let mut u: ngx_url_t = core::mem::zeroed();
        u.url = url;
        u.default_port = 80;
        u.set_uri_part(1);
        if bytes(&u.url).starts_with(b"http://") {
            u.url.len -= 7;
            u.url.data = u.url.data.add(7);
        }
        if ngx_parse_url((*cf).pool, &mut u) != 0 {
            if !u.err.is_null() {
                let err = core::ffi::CStr::from_ptr(u.err).to_string_lossy();
                return Err(conf_error(
                    cf,
                    &format!(
                        "{} in auth_http \"{}\"",
                        err,
                        String::from_utf8_lossy(bytes(&u.url))
                    ),
                ));
            }
            return Err(CONF_ERROR);
        }
        let host_header = if u.family != libc_af_unix() {
            u.host
        } else {
            ngx_str(c"localhost")
        };
        let uri = if u.uri.len == 0 { ngx_str(c"/") } else { u.uri };
        Ok(AuthServer {
            peer: u.addrs,
            host_header,
            uri,
            // nginx's upstream defaults
            state: Cell::new(Peer::new(1, 10_000)),
        })
    }
}

/// A new list for `ahcf`, with room for `n` servers.
///
/// # Safety
/// `cf` is live.
unsafe fn new_list(cf: *mut ngx_conf_t, n: usize, failover: bool) -> *mut ServerList {
    // SAFETY: the pool is live; the list is plain data.
    unsafe {
        let servers = ngx_array_create((*cf).pool, n, size_of::<AuthServer>());
        let list = ngx_pcalloc((*cf).pool, size_of::<ServerList>()).cast::<ServerList>();
        if servers.is_null() || list.is_null() {
            return ptr::null_mut();
        }
        list.write(ServerList {
            servers,
            failover,
            next: Cell::new(0),
        });
        list
    }
}

/// Appends `server` to the list; false when out of memory.
///
/// # Safety
/// `list` is a live list of this configuration.
unsafe fn push(list: *mut ServerList, server: AuthServer) -> bool {
    // SAFETY: the array holds AuthServers; the slot is written whole.
    unsafe {
        let slot = ngx_array_push((*list).servers).cast::<AuthServer>();
        if slot.is_null() {
            return false;
        }
        slot.write(server);
    }
    true
}

/// `auth_http URL;` (stock): the one auth server, a later one replacing it
/// as in stock.
unsafe extern "C" fn set_auth_http(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our conf and the parsed arguments.
    unsafe {
        let ahcf = &mut *conf.cast::<AuthHttpConf>();
        if !ahcf.servers.is_null() && (*ahcf.servers).failover {
            return conf_error(
                cf,
                "\"auth_http\" directive conflicts with \"auth_http_server\"",
            );
        }
        let value = (*(*cf).args).elts.cast::<ngx_str_t>();
        let server = match auth_server(cf, *value.add(1)) {
            Ok(server) => server,
            Err(rv) => return rv,
        };
        let list = new_list(cf, 1, false);
        if list.is_null() || !push(list, server) {
            return CONF_ERROR;
        }
        ahcf.servers = list;
    }
    CONF_OK
}

/// `auth_http_server URL [max_fails=N] [fail_timeout=T];` (ours): one of
/// several auth servers, asked in turn, the next one tried when one cannot
/// be connected to, times out or sends what cannot be read. The
/// parameters are the http upstream `server`'s.
unsafe extern "C" fn set_auth_http_server(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our conf and the parsed arguments.
    let (ahcf, args) = unsafe {
        let a = &*(*cf).args;
        (
            &mut *conf.cast::<AuthHttpConf>(),
            core::slice::from_raw_parts(a.elts.cast::<ngx_str_t>(), a.nelts),
        )
    };
    let first = ahcf.servers.is_null();
    // SAFETY: a list set by this module's directives, in the cycle's pool.
    if !first && unsafe { !(*ahcf.servers).failover } {
        return conf_error(
            cf,
            "\"auth_http_server\" directive conflicts with \"auth_http\"",
        );
    }
    let Some(&url) = args.get(1) else {
        return CONF_ERROR;
    };
    // SAFETY: cf is live.
    let mut server = match unsafe { auth_server(cf, url) } {
        Ok(server) => server,
        Err(rv) => return rv,
    };
    // SAFETY: directive arguments live in the configuration's buffers.
    let text = |s: &ngx_str_t| String::from_utf8_lossy(unsafe { bytes(s) }).into_owned();
    for param in args.get(2..).unwrap_or_default() {
        let p = text(param);
        if let Some(n) = p.strip_prefix("max_fails=") {
            match n.parse::<u32>() {
                Ok(v) if n.bytes().all(|b| b.is_ascii_digit()) => {
                    server.state.get_mut().max_fails = v
                }
                _ => return conf_error(cf, &format!("invalid parameter \"{p}\"")),
            }
        } else if let Some(t) = p.strip_prefix("fail_timeout=") {
            let mut s = ngx_str_t {
                len: t.len(),
                data: t.as_ptr().cast_mut(),
            };
            // SAFETY: s points into `p`, alive for the call.
            let ms = unsafe { ngx_parse_time(&mut s, 0) };
            if ms < 0 {
                return conf_error(cf, &format!("invalid parameter \"{p}\""));
            }
            server.state.get_mut().fail_timeout = ms as u64;
        } else {
            return conf_error(cf, &format!("invalid parameter \"{p}\""));
        }
    }
    // SAFETY: cf is live; the list is this level's.
    unsafe {
        if first {
            ahcf.servers = new_list(cf, 4, true);
            if ahcf.servers.is_null() {
                return CONF_ERROR;
            }
            // stock's merge wants an auth_http at every level it merges:
            // it gets the first server's URL, which it never uses
            let rv = crate::conf::forward_to_stock(cf, c"ngx_mail_auth_http_module", b"auth_http");
            if rv != CONF_OK {
                return rv;
            }
        }
        if (*(*ahcf.servers).servers).nelts >= MAX_SERVERS {
            return conf_error(cf, &format!("too many auth servers, at most {MAX_SERVERS}"));
        }
        if !push(ahcf.servers, server) {
            return CONF_ERROR;
        }
    }
    CONF_OK
}

/// `auth_http_keepalive N [timeout=T];`: the words of the http upstream's
/// `keepalive N` and `keepalive_timeout T`, in one directive as the mail
/// server has no upstream block.
unsafe extern "C" fn set_keepalive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our conf and the parsed arguments.
    let (ahcf, args) = unsafe {
        let a = &*(*cf).args;
        (
            &mut *conf.cast::<AuthHttpConf>(),
            core::slice::from_raw_parts(a.elts.cast::<ngx_str_t>(), a.nelts),
        )
    };
    if ahcf.keepalive != ngx_uint_t::MAX {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: directive arguments live in the configuration's buffers.
    let text = |s: &ngx_str_t| String::from_utf8_lossy(unsafe { bytes(s) }).into_owned();
    let Some(number) = args.get(1) else {
        return CONF_ERROR;
    };
    // SAFETY: the argument's bytes.
    let n = unsafe { ngx_atoi(number.data, number.len) };
    if n <= 0 {
        return conf_error(
            cf,
            &format!(
                "invalid value \"{}\" in \"auth_http_keepalive\" directive",
                text(number)
            ),
        );
    }
    ahcf.keepalive = n as ngx_uint_t;
    if let Some(param) = args.get(2) {
        let p = text(param);
        let Some(value) = p.strip_prefix("timeout=") else {
            return conf_error(cf, &format!("invalid parameter \"{p}\""));
        };
        let mut s = ngx_str_t {
            len: value.len(),
            data: value.as_ptr().cast_mut(),
        };
        // SAFETY: s points into `p`, alive for the call.
        let ms = unsafe { ngx_parse_time(&mut s, 0) };
        if ms < 0 || ms as u64 >= ngx_msec_t::MAX as u64 {
            return conf_error(cf, &format!("invalid timeout \"{value}\""));
        }
        ahcf.keepalive_timeout = ms as ngx_msec_t;
    }
    CONF_OK
}

/// `auth_http_cache` not set at this level (null is `off`).
fn unset_zone() -> *mut nginx_sys::ngx_shm_zone_t {
    ptr::NonNull::dangling().as_ptr()
}

/// `auth_http_cache zone=name:size [valid=time] [invalid=time] | off;`:
/// the words of nginx's `proxy_cache_path keys_zone=` and
/// `proxy_cache_valid`.
unsafe extern "C" fn set_cache(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our conf and the parsed arguments.
    let (ahcf, args) = unsafe {
        let a = &*(*cf).args;
        (
            &mut *conf.cast::<AuthHttpConf>(),
            core::slice::from_raw_parts(a.elts.cast::<ngx_str_t>(), a.nelts),
        )
    };
    if ahcf.cache_zone != unset_zone() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    // SAFETY: directive arguments live in the configuration's buffers.
    let text = |s: &ngx_str_t| String::from_utf8_lossy(unsafe { bytes(s) }).into_owned();
    let params = args.get(1..).unwrap_or_default();
    if params.len() == 1 && text(&params[0]) == "off" {
        ahcf.cache_zone = ptr::null_mut();
        return CONF_OK;
    }
    let mut zone: Option<(ngx_str_t, usize)> = None;
    let (mut valid, mut invalid) = (60_000, 0);
    for param in params {
        let p = text(param);
        if let Some(rest) = p.strip_prefix("zone=") {
            let Some((name, size)) = rest.split_once(':') else {
                return conf_error(cf, &format!("invalid zone size \"{p}\""));
            };
            let mut s = ngx_str_t {
                len: size.len(),
                data: size.as_ptr().cast_mut(),
            };
            // SAFETY: s points into `p`, alive for the call.
            let n = unsafe { nginx_sys::ngx_parse_size(&mut s) };
            if name.is_empty() || n == nginx_sys::NGX_ERROR as isize {
                return conf_error(cf, &format!("invalid zone size \"{p}\""));
            }
            if (n as usize) < 8 * crate::ffi::page_size() {
                return conf_error(cf, &format!("zone \"{name}\" is too small"));
            }
            // the name's bytes in the argument, which lives for the cycle
            let name = ngx_str_t {
                len: name.len(),
                // SAFETY: "zone=" is 5 bytes of the argument.
                data: unsafe { param.data.add(5) },
            };
            zone = Some((name, n as usize));
        } else if let Some((word, t)) = p
            .split_once('=')
            .filter(|(w, _)| *w == "valid" || *w == "invalid")
        {
            let mut s = ngx_str_t {
                len: t.len(),
                data: t.as_ptr().cast_mut(),
            };
            // SAFETY: s points into `p`, alive for the call.
            let ms = unsafe { ngx_parse_time(&mut s, 0) };
            if ms < 0 {
                return conf_error(cf, &format!("invalid time value \"{t}\""));
            }
            if word == "valid" {
                valid = ms as ngx_msec_t;
            } else {
                invalid = ms as ngx_msec_t;
            }
        } else {
            return conf_error(cf, &format!("invalid parameter \"{p}\""));
        }
    }
    let Some((mut name, size)) = zone else {
        return conf_error(cf, "\"auth_http_cache\" must have \"zone\" parameter");
    };
    #[cfg(not(ngx_mail_ssl))]
    {
        let _ = (&mut name, size);
        return conf_error(
            cf,
            "\"auth_http_cache\" needs OpenSSL (nginx built with --with-mail_ssl_module)",
        );
    }
    #[cfg(ngx_mail_ssl)]
    {
        // SAFETY: cf is live; the name's bytes live for the cycle.
        ahcf.cache_zone = match unsafe { super::cache::add_zone(cf, &mut name, size) } {
            Ok(zone) => zone,
            Err(rv) => return rv,
        };
    }
    ahcf.cache_valid = valid;
    ahcf.cache_invalid = invalid;
    CONF_OK
}

fn libc_af_unix() -> i32 {
    nginx_sys::AF_UNIX as i32
}

unsafe extern "C" fn set_auth_http_header(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our conf and the parsed arguments.
    unsafe {
        let ahcf = &mut *conf.cast::<AuthHttpConf>();
        if ahcf.headers.is_null() {
            ahcf.headers = ngx_array_create((*cf).pool, 1, size_of::<ngx_keyval_t>());
            if ahcf.headers.is_null() {
                return CONF_ERROR;
            }
        }
        let kv = ngx_array_push(ahcf.headers).cast::<ngx_keyval_t>();
        if kv.is_null() {
            return CONF_ERROR;
        }
        let value = (*(*cf).args).elts.cast::<ngx_str_t>();
        (*kv).key = *value.add(1);
        (*kv).value = *value.add(2);
    }
    CONF_OK
}

impl crate::session::SessionState for super::client::AuthState {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_auth_http_module)
    }
}

/// A refused bearer token login whose SASL error challenge is out: the
/// protocol stage takes it before it reads the client's answer.
impl crate::session::SessionState for mail_core::sasl::Refusal {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_auth_http_module)
    }
}
