//! `ngx_http_mail_rs_metrics_module`: `location = /metrics { mail_metrics
//! NAME; }` serves a mail `metrics_zone` in the Prometheus text format.
//!
//! An http module in a mail module's .so: nginx may have been built
//! without http, and then no `ngx_http_*` symbol exists to bind to when
//! the .so is loaded. So this file names none: the few http functions the
//! handler calls are looked up at configuration time (`dlsym`), which only
//! happens when an http{} block uses `mail_metrics` (and so http is there).
//! The module entry itself is only data; nginx never calls into it
//! without an http{} block.

use core::ffi::{c_char, c_void, CStr};
use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_command_t, ngx_conf_t, ngx_http_conf_ctx_t,
    ngx_http_core_loc_conf_t, ngx_http_module_t, ngx_http_request_t, ngx_int_t, ngx_module_t,
    ngx_pcalloc, ngx_shm_zone_t, ngx_str_t, ngx_uint_t, NGX_CONF_TAKE1, NGX_HTTP_LOC_CONF,
    NGX_HTTP_MODULE,
};

use super::module::ngx_mail_rs_observe_module;
use crate::conf::{conf_error, ngx_str, NULL_COMMAND};
use crate::ffi::{CONF_ERROR, CONF_OK, NGX_ERROR};

struct LocConf {
    zone: *mut ngx_shm_zone_t,
}

const LOC_CONF_OFFSET: usize = core::mem::offset_of!(ngx_http_conf_ctx_t, loc_conf);

static mut COMMANDS: [ngx_command_t; 2] = [
    ngx_command_t {
        name: ngx_str(c"mail_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_mail_metrics),
        conf: LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    NULL_COMMAND,
];

static mut CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: None,
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(create_loc_conf),
    merge_loc_conf: None,
};

#[no_mangle]
pub static mut ngx_http_mail_rs_metrics_module: ngx_module_t = ngx_module_t {
    ctx: addr_of_mut!(CTX).cast(),
    commands: addr_of_mut!(COMMANDS).cast(),
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

type SendHeader = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;
type OutputFilter = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_chain_t) -> ngx_int_t;

static SEND_HEADER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static OUTPUT_FILTER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static DISCARD_BODY: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: a lookup in the process's global symbols (nginx exports
    // its own for dynamic modules); RTLD_DEFAULT is the null handle.
    unsafe { nginx_sys::dlsym(ptr::null_mut(), name.as_ptr()) }
}

unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: the pool is live while configuring.
    unsafe { ngx_pcalloc((*cf).pool, size_of::<LocConf>()) }
}

unsafe extern "C" fn set_mail_metrics(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our loc conf and the directive's arguments.
    let (conf, mut name) = unsafe {
        let elts = (*(*cf).args).elts.cast::<ngx_str_t>();
        (&mut *conf.cast::<LocConf>(), *elts.add(1))
    };
    if !conf.zone.is_null() {
        return conf_error(cf, "\"mail_metrics\" directive is duplicate");
    }
    let core = symbol(c"ngx_http_core_module").cast::<ngx_module_t>();
    let (send, filter, discard) = (
        symbol(c"ngx_http_send_header"),
        symbol(c"ngx_http_output_filter"),
        symbol(c"ngx_http_discard_request_body"),
    );
    if core.is_null() || send.is_null() || filter.is_null() || discard.is_null() {
        return conf_error(
            cf,
            "\"mail_metrics\": nginx's http functions are not exported",
        );
    }
    SEND_HEADER.store(send, Relaxed);
    OUTPUT_FILTER.store(filter, Relaxed);
    DISCARD_BODY.store(discard, Relaxed);
    // SAFETY: cf is live; the mail side declares the zone with the same
    // tag and its size (size 0 here: found, or left for mail{} to size;
    // nginx rejects a zone that stays unsized).
    let zone = unsafe {
        nginx_sys::ngx_shared_memory_add(
            cf,
            &mut name,
            0,
            ptr::addr_of_mut!(ngx_mail_rs_observe_module).cast(),
        )
    };
    if zone.is_null() {
        return CONF_ERROR;
    }
    conf.zone = zone;
    // SAFETY: cf->ctx is the location's http ctx; its loc_conf has the
    // core module's conf at its ctx_index.
    unsafe {
        let ctx = (*cf).ctx.cast::<ngx_http_conf_ctx_t>();
        let clcf = (*(*ctx).loc_conf.add((*core).ctx_index)).cast::<ngx_http_core_loc_conf_t>();
        (*clcf).handler = Some(handler);
    }
    CONF_OK
}

const CONTENT_TYPE: &CStr = c"text/plain; version=0.0.4; charset=utf-8";

unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: set only with all three looked up; they have these types.
    let (send_header, output_filter, discard): (SendHeader, OutputFilter, SendHeader) = unsafe {
        (
            core::mem::transmute::<*mut c_void, SendHeader>(SEND_HEADER.load(Relaxed)),
            core::mem::transmute::<*mut c_void, OutputFilter>(OUTPUT_FILTER.load(Relaxed)),
            core::mem::transmute::<*mut c_void, SendHeader>(DISCARD_BODY.load(Relaxed)),
        )
    };
    // SAFETY: nginx calls a content handler with a live request whose
    // loc_conf has ours at our ctx_index.
    unsafe {
        let method = (*r).method;
        if method & (nginx_sys::NGX_HTTP_GET | nginx_sys::NGX_HTTP_HEAD) as ngx_uint_t == 0 {
            return nginx_sys::NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        let rc = discard(r);
        if rc != 0 {
            return rc;
        }
        let conf = *(*r).loc_conf.add(ngx_http_mail_rs_metrics_module.ctx_index);
        let zone = (*conf.cast::<LocConf>()).zone;
        let Some(snapshot) = zone.as_ref().and_then(super::metrics::snapshot) else {
            return nginx_sys::NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t;
        };
        let nginx = CStr::from_ptr(nginx_sys::NGINX_VERSION.as_ptr().cast())
            .to_str()
            .unwrap_or("");
        let body = mail_core::metrics::render(&snapshot, env!("CARGO_PKG_VERSION"), nginx);

        let out = &mut (*r).headers_out;
        out.status = nginx_sys::NGX_HTTP_OK as ngx_uint_t;
        out.content_length_n = body.len() as i64;
        out.content_type = ngx_str(CONTENT_TYPE);
        out.content_type_len = CONTENT_TYPE.to_bytes().len();
        let rc = send_header(r);
        if rc == NGX_ERROR || rc > 0 || (*r).header_only() != 0 {
            return rc;
        }
        let b = nginx_sys::ngx_create_temp_buf((*r).pool, body.len()).cast::<ngx_buf_t>();
        if b.is_null() {
            return NGX_ERROR;
        }
        ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
        (*b).last = (*b).last.add(body.len());
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        let mut chain = ngx_chain_t {
            buf: b,
            next: ptr::null_mut(),
        };
        output_filter(r, &mut chain)
    }
}
