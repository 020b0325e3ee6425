//! `ngx_mail_rs_limit_module`: freenginx 1.29's `limit_conn_zone`,
//! `limit_conn`, `limit_conn_log_level`, `limit_conn_dry_run`,
//! `limit_rate` and `limit_rate_after` for mail. Stock nginx 1.28 has none
//! of them, so nothing is forwarded to a stock module.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr::{self, addr_of, addr_of_mut};

use mail_core::limit::Key;
use nginx_sys::{
    ngx_array_create, ngx_array_push, ngx_atoi, ngx_command_t, ngx_conf_enum_t,
    ngx_conf_set_enum_slot, ngx_conf_set_flag_slot, ngx_conf_set_size_slot, ngx_conf_t, ngx_flag_t,
    ngx_module_t, ngx_parse_size, ngx_pcalloc, ngx_shared_memory_add, ngx_str_t, ngx_uint_t,
    NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_CONF_TAKE2,
};

use super::conf::{Limit, LimitConf};
use super::zone::{init_zone, ZoneCtx};
use crate::bindings::{ngx_mail_module_t, NGX_MAIL_MAIN_CONF, NGX_MAIL_SRV_CONF};
use crate::conf::{command, conf_error, keep_in_conf_pool, mail_module, merge, ngx_str};
use crate::conf::{srv_ctx, NULL_COMMAND};
use crate::ffi::{bytes, page_size, shown, CONF_ERROR, CONF_OK};

const MAIN: u32 = NGX_MAIL_MAIN_CONF;
const SRV: u32 = NGX_MAIL_MAIN_CONF | NGX_MAIL_SRV_CONF;

static mut LOG_LEVELS: [ngx_conf_enum_t; 5] = [
    level(c"info", nginx_sys::NGX_LOG_INFO),
    level(c"notice", nginx_sys::NGX_LOG_NOTICE),
    level(c"warn", nginx_sys::NGX_LOG_WARN),
    level(c"error", nginx_sys::NGX_LOG_ERR),
    ngx_conf_enum_t {
        name: ngx_str_t {
            len: 0,
            data: ptr::null_mut(),
        },
        value: 0,
    },
];

const fn level(name: &'static core::ffi::CStr, value: u32) -> ngx_conf_enum_t {
    ngx_conf_enum_t {
        name: ngx_str(name),
        value: value as ngx_uint_t,
    }
}

static mut COMMANDS: [ngx_command_t; 7] = [
    command(
        c"limit_conn_zone",
        MAIN | NGX_CONF_TAKE2,
        set_zone,
        0,
        ptr::null_mut(),
    ),
    command(
        c"limit_conn",
        SRV | NGX_CONF_TAKE2,
        set_limit,
        0,
        ptr::null_mut(),
    ),
    command(
        c"limit_conn_log_level",
        SRV | NGX_CONF_TAKE1,
        ngx_conf_set_enum_slot,
        offset_of!(LimitConf, log_level),
        addr_of_mut!(LOG_LEVELS).cast(),
    ),
    command(
        c"limit_conn_dry_run",
        SRV | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        offset_of!(LimitConf, dry_run),
        ptr::null_mut(),
    ),
    command(
        c"limit_rate",
        SRV | NGX_CONF_TAKE1,
        ngx_conf_set_size_slot,
        offset_of!(LimitConf, rate),
        ptr::null_mut(),
    ),
    command(
        c"limit_rate_after",
        SRV | NGX_CONF_TAKE1,
        ngx_conf_set_size_slot,
        offset_of!(LimitConf, rate_after),
        ptr::null_mut(),
    ),
    NULL_COMMAND,
];

static mut CTX: ngx_mail_module_t = srv_ctx(create_conf, merge_conf);

#[no_mangle]
pub static mut ngx_mail_rs_limit_module: ngx_module_t =
    mail_module(addr_of_mut!(CTX), addr_of_mut!(COMMANDS).cast());

impl crate::session::ModuleConf for LimitConf {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_limit_module)
    }
}

impl crate::session::SessionState for super::Limits {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_limit_module)
    }
}

impl crate::session::SessionState for super::conn::AuthKeys {
    fn module() -> *const ngx_module_t {
        addr_of!(ngx_mail_rs_limit_module)
    }
}

/// The tag of our zones: nginx keeps a zone over a reload only for the
/// same name, size and tag.
fn tag() -> *mut c_void {
    addr_of_mut!(ngx_mail_rs_limit_module).cast()
}

const UNSET: ngx_uint_t = ngx_uint_t::MAX;
const UNSET_FLAG: ngx_flag_t = -1;

unsafe extern "C" fn create_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: cf->pool is live while configuring.
    unsafe {
        let p = ngx_pcalloc((*cf).pool, size_of::<LimitConf>()).cast::<LimitConf>();
        if p.is_null() {
            return ptr::null_mut();
        }
        *p = LimitConf {
            limits: ptr::null_mut(),
            log_level: UNSET,
            dry_run: UNSET_FLAG,
            rate: usize::MAX,
            rate_after: usize::MAX,
            auth_http_keys: false,
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
            &*parent.cast::<LimitConf>(),
            &mut *child.cast::<LimitConf>(),
        )
    };
    // as freenginx: a level's limit_conns replace the level above's
    if conf.limits.is_null() {
        conf.limits = prev.limits;
    }
    merge(
        &mut conf.log_level,
        prev.log_level,
        UNSET,
        nginx_sys::NGX_LOG_ERR as ngx_uint_t,
    );
    merge(&mut conf.dry_run, prev.dry_run, UNSET_FLAG, 0);
    merge(&mut conf.rate, prev.rate, usize::MAX, 0);
    merge(&mut conf.rate_after, prev.rate_after, usize::MAX, 0);
    // limit_conn_zone (mail level only) has run for every zone by now
    let auth_http_keys = conf
        .limits()
        .any(|(zone, _)| matches!(zone.key, Key::AuthHttp(_)));
    conf.auth_http_keys = auth_http_keys;
    CONF_OK
}

/// The directive's arguments.
///
/// # Safety
/// `cf` is the live configuration, at a directive.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a mut [ngx_str_t] {
    // SAFETY: as the caller promises: args holds nelts strings.
    unsafe {
        let a = &*(*cf).args;
        core::slice::from_raw_parts_mut(a.elts.cast::<ngx_str_t>(), a.nelts)
    }
}

fn text(s: &ngx_str_t) -> String {
    // SAFETY: a directive argument, in the configuration's buffers.
    String::from_utf8_lossy(unsafe { bytes(s) }).into_owned()
}

/// `limit_conn_zone key zone=name:size;`
unsafe extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx's parser calls this with live arguments.
    let value = unsafe { args(cf) };
    let (Some(key_arg), Some(params)) = (value.get(1).copied(), value.get(2..)) else {
        return CONF_ERROR;
    };
    // SAFETY: as above.
    let key_text = unsafe { bytes(&key_arg) };
    let Some(key) = Key::parse(key_text) else {
        return conf_error(cf, &format!("invalid parameter \"{}\"", text(&key_arg)));
    };
    let mut size = 0usize;
    let mut name = ngx_str_t {
        len: 0,
        data: ptr::null_mut(),
    };
    for param in params {
        // SAFETY: as above.
        let Some(rest) = unsafe { bytes(param) }.strip_prefix(b"zone=") else {
            return conf_error(cf, &format!("invalid parameter \"{}\"", text(param)));
        };
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            return conf_error(cf, &format!("invalid zone size \"{}\"", text(param)));
        };
        // SAFETY: both parts lie inside the argument's bytes.
        let mut size_text = unsafe {
            name = ngx_str_t {
                len: colon,
                data: param.data.add(5),
            };
            ngx_str_t {
                len: rest.len() - colon - 1,
                data: param.data.add(5 + colon + 1),
            }
        };
        // SAFETY: size_text describes bytes of the argument.
        let n = unsafe { ngx_parse_size(&mut size_text) };
        if n == nginx_sys::NGX_ERROR as isize {
            return conf_error(cf, &format!("invalid zone size \"{}\"", text(param)));
        }
        if n < 8 * page_size() as isize {
            return conf_error(cf, &format!("zone \"{}\" is too small", text(param)));
        }
        size = n as usize;
    }
    if name.len == 0 {
        // SAFETY: cmd is ours, with a static name.
        let directive = text(unsafe { &(*cmd).name });
        return conf_error(cf, &format!("\"{directive}\" must have \"zone\" parameter"));
    }
    // SAFETY: cf is live; nginx copies nothing but keeps the name's bytes,
    // which live in the configuration's buffers for the cycle.
    let shm_zone = unsafe { ngx_shared_memory_add(cf, &mut name, size, tag()) };
    if shm_zone.is_null() {
        return CONF_ERROR;
    }
    // SAFETY: a zone nginx just returned; ours hold a ZoneCtx.
    if let Some(bound) = unsafe { super::zone::ctx_of(shm_zone) } {
        // SAFETY: cmd is ours, with a static name.
        let directive = text(unsafe { &(*cmd).name });
        return conf_error(
            cf,
            &format!(
                "{directive} \"{}\" is already bound to key \"{}\"",
                text(&name),
                shown(&bound.key_text)
            ),
        );
    }
    // SAFETY: cf is live; the context lives (and is dropped) with the
    // configuration pool, as long as the zone's cycle.
    let Some(ctx) = (unsafe { keep_in_conf_pool(cf, ZoneCtx::new(key_text, key)) }) else {
        return CONF_ERROR;
    };
    // SAFETY: the zone is this cycle's.
    unsafe {
        (*shm_zone).init = Some(init_zone);
        (*shm_zone).data = ctx.cast_mut().cast();
    }
    CONF_OK
}

/// `limit_conn zone number;`
unsafe extern "C" fn set_limit(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our conf and live arguments.
    let (lccf, value) = unsafe { (&mut *conf.cast::<LimitConf>(), args(cf)) };
    let (Some(mut name), Some(number)) = (value.get(1).copied(), value.get(2).copied()) else {
        return CONF_ERROR;
    };
    // SAFETY: cf is live; size 0 asks for the zone a limit_conn_zone
    // declares (before or after); nginx refuses one never declared.
    let shm_zone = unsafe { ngx_shared_memory_add(cf, &mut name, 0, tag()) };
    if shm_zone.is_null() {
        return CONF_ERROR;
    }
    // SAFETY: the pool is live; the array holds Limits.
    unsafe {
        if lccf.limits.is_null() {
            lccf.limits = ngx_array_create((*cf).pool, 1, size_of::<Limit>());
            if lccf.limits.is_null() {
                return CONF_ERROR;
            }
        }
        let a = &*lccf.limits;
        let have = core::slice::from_raw_parts(a.elts.cast::<Limit>(), a.nelts);
        if have.iter().any(|l| l.shm_zone == shm_zone) {
            return c"is duplicate".as_ptr().cast_mut();
        }
    }
    // SAFETY: the argument's bytes.
    let n = unsafe { ngx_atoi(number.data, number.len) };
    if n <= 0 {
        return conf_error(
            cf,
            &format!("invalid number of connections \"{}\"", text(&number)),
        );
    }
    if n > 65535 {
        return conf_error(cf, "connection limit must be less 65536");
    }
    // SAFETY: as above.
    unsafe {
        let slot = ngx_array_push(lccf.limits).cast::<Limit>();
        if slot.is_null() {
            return CONF_ERROR;
        }
        *slot = Limit {
            shm_zone,
            conn: n as ngx_uint_t,
        };
    }
    CONF_OK
}

/// Whether the server being merged has `limit_conn`s: its POP3 CAPA then
/// says RESP-CODES, as freenginx's does, so that clients know the
/// `[SYS/TEMP]` of a refusal. Our module is merged before the protocols'.
///
/// # Safety
/// `cf` is the live configuration, merging a server (cf->ctx is its ctx).
pub unsafe fn server_has_limits(cf: *mut ngx_conf_t) -> bool {
    // SAFETY: as the caller promises; srv_conf has our module's slot.
    unsafe {
        let ctx = (*cf).ctx.cast::<crate::bindings::ngx_mail_conf_ctx_t>();
        let conf = (*(*ctx).srv_conf.add(ngx_mail_rs_limit_module.ctx_index)).cast::<LimitConf>();
        !conf.is_null() && !(*conf).limits.is_null() && (*(*conf).limits).nelts > 0
    }
}
