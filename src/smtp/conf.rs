//! The smtp module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use mail_core::smtp::Replies;
use nginx_sys::{ngx_array_t, ngx_msec_t, ngx_uint_t};

/// Our smtp server conf; unset values are those nginx's merges expect.
#[repr(C)]
pub struct SmtpSrvConf {
    pub client_buffer_size: usize,
    pub greeting_delay: ngx_msec_t,
    pub auth_methods: ngx_uint_t,
    pub capabilities: ngx_array_t,
    pub replies: *const Replies,
}

impl SmtpSrvConf {
    pub fn replies(&self) -> Option<&'static Replies> {
        // SAFETY: set once in merge to a value owned by the cycle pool.
        unsafe { self.replies.as_ref() }
    }
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static SmtpSrvConf {
    s.conf::<SmtpSrvConf>()
}
