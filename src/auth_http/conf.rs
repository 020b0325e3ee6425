//! The auth_http module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use nginx_sys::{ngx_addr_t, ngx_array_t, ngx_flag_t, ngx_msec_t, ngx_str_t, ngx_uint_t};

#[repr(C)]
pub struct AuthHttpConf {
    pub peer: *mut ngx_addr_t,
    pub host_header: ngx_str_t,
    pub uri: ngx_str_t,
    /// `auth_http_header` lines, joined at merge time.
    pub header: ngx_str_t,
    pub headers: *mut ngx_array_t,
    pub timeout: ngx_msec_t,
    pub pass_client_cert: ngx_flag_t,
    /// `auth_http_keepalive` (ours): idle connections kept per worker and
    /// auth server; 0 is stock's one connection per login.
    pub keepalive: ngx_uint_t,
    /// How long an idle kept connection waits for the next login.
    pub keepalive_timeout: ngx_msec_t,
    pub file: *mut u8,
    pub line: ngx_uint_t,
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static AuthHttpConf {
    s.conf::<AuthHttpConf>()
}

impl AuthHttpConf {
    /// The auth server's address.
    pub fn peer(&'static self) -> &'static ngx_addr_t {
        // SAFETY: set from the `auth_http` URL at configuration, in the
        // cycle's pool; merge refuses a server without one.
        unsafe { &*self.peer }
    }

    /// The auth server's name, for log lines.
    pub fn peer_name(&'static self) -> &'static [u8] {
        self.peer().name.as_bytes()
    }

    pub fn uri(&'static self) -> &'static [u8] {
        self.uri.as_bytes()
    }

    pub fn host_header(&'static self) -> &'static [u8] {
        self.host_header.as_bytes()
    }

    /// The `auth_http_header` lines, joined.
    pub fn extra_headers(&'static self) -> &'static [u8] {
        self.header.as_bytes()
    }
}
