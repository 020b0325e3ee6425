//! The sieve module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use mail_core::sieve::Capabilities;
use nginx_sys::{ngx_array_t, ngx_uint_t};

/// Our sieve server conf. `auth_methods` 0 means unset, as nginx's bitmask
/// merge wants.
#[repr(C)]
pub struct SieveSrvConf {
    pub auth_methods: ngx_uint_t,
    pub capabilities: ngx_array_t,
    pub replies: *const Capabilities,
}

impl SieveSrvConf {
    pub fn replies(&self) -> Option<&'static Capabilities> {
        // SAFETY: set once in merge to a value owned by the cycle pool.
        unsafe { self.replies.as_ref() }
    }
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static SieveSrvConf {
    s.conf::<SieveSrvConf>()
}
