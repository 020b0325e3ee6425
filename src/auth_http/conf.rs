//! The auth_http module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use nginx_sys::{ngx_addr_t, ngx_array_t, ngx_flag_t, ngx_msec_t, ngx_str_t, ngx_uint_t};

use crate::ffi::bytes;

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
    pub file: *mut u8,
    pub line: ngx_uint_t,
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static AuthHttpConf {
    s.conf::<AuthHttpConf>()
}

impl AuthHttpConf {
    /// The auth server's address.
    pub fn peer(&self) -> &'static ngx_addr_t {
        // SAFETY: set from the `auth_http` URL at configuration, in the
        // cycle's pool; merge refuses a server without one.
        unsafe { &*self.peer }
    }

    /// The auth server's name, for log lines.
    pub fn peer_name(&self) -> &'static [u8] {
        // SAFETY: a configuration string.
        unsafe { bytes(&self.peer().name) }
    }

    pub fn uri(&self) -> &'static [u8] {
        // SAFETY: a configuration string.
        unsafe { bytes(&self.uri) }
    }

    pub fn host_header(&self) -> &'static [u8] {
        // SAFETY: a configuration string.
        unsafe { bytes(&self.host_header) }
    }

    /// The `auth_http_header` lines, joined.
    pub fn extra_headers(&self) -> &'static [u8] {
        // SAFETY: a configuration string.
        unsafe { bytes(&self.header) }
    }
}
