//! The pop3 module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use mail_core::pop3::Capabilities;
use nginx_sys::{ngx_array_t, ngx_uint_t};

/// Our pop3 server conf. `auth_methods` 0 means unset, as nginx's bitmask
/// merge wants; `client_buffer_size` `usize::MAX`.
#[repr(C)]
pub struct Pop3SrvConf {
    pub client_buffer_size: usize,
    pub auth_methods: ngx_uint_t,
    pub capabilities: ngx_array_t,
    pub replies: *const Capabilities,
}

impl Pop3SrvConf {
    pub fn replies(&self) -> Option<&'static Capabilities> {
        // SAFETY: set once in merge to a value owned by the cycle pool.
        unsafe { self.replies.as_ref() }
    }
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static Pop3SrvConf {
    s.conf::<Pop3SrvConf>()
}
