//! An nginx built without http: the http module entry of this .so stays
//! (the module tables in lib.rs list it) but has no context and no
//! directives, so nginx, which has no http{} block to read, never uses it.

use nginx_sys::{ngx_module_t, ngx_uint_t};

/// `NGX_HTTP_MODULE` ("HTTP"), which this nginx's headers do not define.
const HTTP_MODULE: ngx_uint_t = 0x5054_5448;

#[no_mangle]
pub static mut ngx_http_mail_rs_metrics_module: ngx_module_t = ngx_module_t {
    type_: HTTP_MODULE,
    ..ngx_module_t::default()
};
