//! The imap module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use mail_core::imap::Capabilities;
use nginx_sys::{ngx_array_t, ngx_uint_t};

/// Our imap server conf; unset values are those nginx's merges expect.
#[repr(C)]
pub struct ImapSrvConf {
    pub client_buffer_size: usize,
    pub auth_methods: ngx_uint_t,
    pub capabilities: ngx_array_t,
    /// `imap_id` (ours): name/value pairs for the answer to ID.
    pub id: ngx_array_t,
    pub replies: *const Capabilities,
}

impl ImapSrvConf {
    pub fn replies(&self) -> Option<&'static Capabilities> {
        // SAFETY: set once in merge to a value owned by the cycle pool.
        unsafe { self.replies.as_ref() }
    }
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static ImapSrvConf {
    s.conf::<ImapSrvConf>()
}
