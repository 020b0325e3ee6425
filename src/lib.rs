//! ngx-mail-rs: nginx's POP3, IMAP, SMTP and ManageSieve proxy, auth_http client and proxy, as a
//! Rust dynamic module that takes over from the stock C modules in the same
//! nginx. The protocol logic lives in the `mail-core` crate; this crate is
//! the FFI shell around nginx's event loop, timers and pools.
#![allow(clippy::missing_safety_doc)]

mod alloc;
mod apply;
mod auth_http;
mod bindings;
mod client;
mod conf;
mod ffi;
mod imap;
mod limit;
mod nginx;
mod observe;
mod peer;
mod pop3;
mod proxy;
mod resolve;
mod session;
mod session_fields;
mod session_proxy;
mod sieve;
mod slots;
mod smtp;
mod state;

use core::ffi::c_char;
use core::ptr::{addr_of, null};

use nginx_sys::ngx_module_t;

pub use auth_http::module::ngx_mail_rs_auth_http_module;
pub use imap::module::ngx_mail_rs_imap_module;
pub use limit::module::ngx_mail_rs_limit_module;
pub use observe::http::ngx_http_mail_rs_metrics_module;
pub use observe::module::ngx_mail_rs_observe_module;
pub use pop3::module::ngx_mail_rs_pop3_module;
pub use proxy::module::ngx_mail_rs_proxy_module;
pub use proxy::ssl_module::ngx_mail_rs_proxy_ssl_module;
pub use sieve::module::ngx_mail_rs_sieve_module;
pub use smtp::module::ngx_mail_rs_smtp_module;

#[global_allocator]
static ALLOCATOR: alloc::WorkerAlloc = alloc::WorkerAlloc::new();

#[no_mangle]
pub static mut ngx_modules: [*const ngx_module_t; 11] = [
    addr_of!(ngx_mail_rs_limit_module),
    addr_of!(ngx_mail_rs_pop3_module),
    addr_of!(ngx_mail_rs_imap_module),
    addr_of!(ngx_mail_rs_smtp_module),
    addr_of!(ngx_mail_rs_sieve_module),
    addr_of!(ngx_mail_rs_auth_http_module),
    addr_of!(ngx_mail_rs_proxy_module),
    addr_of!(ngx_mail_rs_proxy_ssl_module),
    addr_of!(ngx_mail_rs_observe_module),
    // an http module, in no order list: nginx appends it to the http
    // modules (it is a content handler, no filter)
    addr_of!(ngx_http_mail_rs_metrics_module),
    null(),
];

#[no_mangle]
pub static mut ngx_module_names: [*const c_char; 11] = [
    c"ngx_mail_rs_limit_module".as_ptr(),
    c"ngx_mail_rs_pop3_module".as_ptr(),
    c"ngx_mail_rs_imap_module".as_ptr(),
    c"ngx_mail_rs_smtp_module".as_ptr(),
    c"ngx_mail_rs_sieve_module".as_ptr(),
    c"ngx_mail_rs_auth_http_module".as_ptr(),
    c"ngx_mail_rs_proxy_module".as_ptr(),
    c"ngx_mail_rs_proxy_ssl_module".as_ptr(),
    c"ngx_mail_rs_observe_module".as_ptr(),
    c"ngx_http_mail_rs_metrics_module".as_ptr(),
    null(),
];

/// Our modules, then every stock module we must come before: nginx inserts
/// each of ours ahead of the first of its successors already loaded, which
/// puts all of ours right after ngx_mail_ssl_module in every build shape.
/// The limit module comes first: the protocols' merges read its conf.
#[no_mangle]
pub static mut ngx_module_order: [*const c_char; 16] = [
    c"ngx_mail_rs_limit_module".as_ptr(),
    c"ngx_mail_rs_pop3_module".as_ptr(),
    c"ngx_mail_rs_imap_module".as_ptr(),
    c"ngx_mail_rs_smtp_module".as_ptr(),
    c"ngx_mail_rs_sieve_module".as_ptr(),
    c"ngx_mail_rs_auth_http_module".as_ptr(),
    c"ngx_mail_rs_proxy_module".as_ptr(),
    c"ngx_mail_rs_proxy_ssl_module".as_ptr(),
    c"ngx_mail_rs_observe_module".as_ptr(),
    c"ngx_mail_pop3_module".as_ptr(),
    c"ngx_mail_imap_module".as_ptr(),
    c"ngx_mail_smtp_module".as_ptr(),
    c"ngx_mail_auth_http_module".as_ptr(),
    c"ngx_mail_proxy_module".as_ptr(),
    c"ngx_mail_realip_module".as_ptr(),
    null(),
];
