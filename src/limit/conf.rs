//! The limit module's server conf, as the stages read it. The directives
//! that fill it and the module tables are in `module.rs`.

use nginx_sys::{ngx_array_t, ngx_flag_t, ngx_shm_zone_t, ngx_uint_t};

use super::zone::{ctx_of, ZoneCtx};

/// One `limit_conn zone number;`.
#[repr(C)]
pub struct Limit {
    pub shm_zone: *mut ngx_shm_zone_t,
    pub conn: ngx_uint_t,
}

#[repr(C)]
pub struct LimitConf {
    /// `limit_conn`s of this level (an array of `Limit` in the
    /// configuration pool), or null: then the level above's.
    pub limits: *mut ngx_array_t,
    pub log_level: ngx_uint_t,
    pub dry_run: ngx_flag_t,
    /// `limit_rate`, bytes a second; 0: unlimited.
    pub rate: usize,
    /// `limit_rate_after`, bytes.
    pub rate_after: usize,
    /// Whether a limit's key is an auth server header (`$auth_http_*`),
    /// whose values must be kept from the auth response.
    pub auth_http_keys: bool,
}

impl LimitConf {
    /// This server's limits: each zone and its number.
    pub fn limits(&self) -> impl Iterator<Item = (&'static ZoneCtx, &Limit)> {
        let all: &[Limit] = if self.limits.is_null() {
            &[]
        } else {
            // SAFETY: an array of Limit from the configuration pool, which
            // lives as long as the configuration.
            unsafe {
                let a = &*self.limits;
                if a.nelts == 0 || a.elts.is_null() {
                    &[]
                } else {
                    core::slice::from_raw_parts(a.elts.cast::<Limit>(), a.nelts)
                }
            }
        };
        all.iter().filter_map(|l| {
            // SAFETY: a limit_conn's zone is one of this cycle's.
            unsafe { ctx_of(l.shm_zone) }.map(|z| (z, l))
        })
    }
}

impl Limit {
    /// The zone's name.
    pub fn zone_name(&self) -> &[u8] {
        // SAFETY: the zone and its name live as long as the configuration.
        unsafe { crate::ffi::bytes(&(*self.shm_zone).shm.name) }
    }
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static LimitConf {
    s.conf::<LimitConf>()
}
