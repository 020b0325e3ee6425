//! The proxy module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use nginx_sys::{ngx_flag_t, ngx_int_t, ngx_msec_t, ngx_uint_t};

#[repr(C)]
pub struct ProxyConf {
    pub enable: ngx_flag_t,
    pub pass_error_message: ngx_flag_t,
    pub xclient: ngx_flag_t,
    /// `off` (0), `on` or `plain` (1), `login` ([`SMTP_AUTH_LOGIN`]).
    pub smtp_auth: ngx_uint_t,
    /// `off` (0), `on` (1: v1) or `v2` (2), as nginx 1.31.4 numbers them.
    pub proxy_protocol: ngx_uint_t,
    pub buffer_size: usize,
    pub timeout: ngx_msec_t,
    /// freenginx's `max_commands` (its mail core's, not in nginx 1.28):
    /// commands a client may send before logging in.
    pub max_commands: ngx_int_t,
    /// `proxy_pass_client_info` (ours): IMAP ID / POP3 XCLIENT with the
    /// client's address before the backend login.
    pub pass_client_info: ngx_flag_t,
}

/// `proxy_smtp_auth login`.
pub const SMTP_AUTH_LOGIN: ngx_uint_t = 2;

/// `proxy_protocol v2`.
pub const PROXY_PROTOCOL_V2: ngx_uint_t = 2;

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static ProxyConf {
    s.conf::<ProxyConf>()
}
