//! The auth_http module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use mail_core::auth_http::failover::{pick, Peer, Pick, Tried};
use nginx_sys::{ngx_addr_t, ngx_array_t, ngx_flag_t, ngx_msec_t, ngx_str_t, ngx_uint_t};

#[repr(C)]
pub struct AuthHttpConf {
    /// The auth servers: `auth_http`'s one, or the `auth_http_server`s.
    pub servers: *mut ServerList,
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
    /// `auth_http_cache` (ours): the zone's shm zone, or null; unset is
    /// `UNSET_ZONE`.
    pub cache_zone: *mut nginx_sys::ngx_shm_zone_t,
    pub cache_valid: ngx_msec_t,
    pub cache_invalid: ngx_msec_t,
    pub file: *mut u8,
    pub line: ngx_uint_t,
}

/// One auth server.
pub struct AuthServer {
    pub peer: *mut ngx_addr_t,
    pub host_header: ngx_str_t,
    pub uri: ngx_str_t,
    /// Its failures, counted per worker: the configuration's memory is the
    /// worker's own after the fork, as the round-robin upstream's peers.
    pub state: Peer,
}

impl core::borrow::Borrow<Peer> for AuthServer {
    fn borrow(&self) -> &Peer {
        &self.state
    }
}

impl core::borrow::BorrowMut<Peer> for AuthServer {
    fn borrow_mut(&mut self) -> &mut Peer {
        &mut self.state
    }
}

/// A level's auth servers, in the cycle's pool.
pub struct ServerList {
    /// `AuthServer`s, in the order configured.
    pub servers: *mut ngx_array_t,
    /// From `auth_http_server` (ours): round robin with failover. From
    /// `auth_http`: stock's one server, no failure counted.
    pub failover: bool,
    /// This worker's round robin position.
    pub next: usize,
}

/// This server's conf.
pub fn conf(s: crate::session::Session) -> &'static AuthHttpConf {
    s.conf::<AuthHttpConf>()
}

impl AuthServer {
    /// The auth server's address.
    pub fn peer(&'static self) -> &'static ngx_addr_t {
        // SAFETY: set from the URL at configuration, in the cycle's pool.
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
}

impl AuthHttpConf {
    fn list(&'static self) -> *mut ServerList {
        // merge refuses a server without auth servers
        self.servers
    }

    /// The servers, for the worker's accounting. Each call makes a new
    /// borrow that ends before the caller's next call: the worker is one
    /// thread and no borrow is kept across events.
    #[expect(
        clippy::mut_from_ref,
        reason = "per-worker state in the conf, see above"
    )]
    fn servers_mut(&'static self) -> &'static mut [AuthServer] {
        // SAFETY: the list and its array live in the cycle's pool; the
        // array holds nelts AuthServers; see above for the borrow.
        unsafe {
            let a = &*(*self.list()).servers;
            core::slice::from_raw_parts_mut(a.elts.cast::<AuthServer>(), a.nelts)
        }
    }

    /// Server `i` of the list.
    pub fn server(&'static self, i: usize) -> Option<&'static AuthServer> {
        let servers: &'static [AuthServer] = self.servers_mut();
        servers.get(i)
    }

    /// Round robin with failover (`auth_http_server`)?
    pub fn failover(&'static self) -> bool {
        // SAFETY: the list lives in the cycle's pool.
        unsafe { (*self.list()).failover }
    }

    /// The next server for a login that tried `tried`.
    pub fn pick(&'static self, tried: &mut Tried, now: u64) -> Pick {
        // SAFETY: as servers_mut.
        let next = unsafe { &mut (*self.list()).next };
        pick(self.servers_mut(), next, tried, now)
    }

    /// Server `i` failed; true when that makes it down.
    pub fn failed(&'static self, i: usize, now: u64) -> bool {
        self.servers_mut()
            .get_mut(i)
            .is_some_and(|s| s.state.failed(now))
    }

    pub fn succeeded(&'static self, i: usize) {
        if let Some(s) = self.servers_mut().get_mut(i) {
            s.state.succeeded();
        }
    }

    /// The `auth_http_header` lines, joined.
    pub fn extra_headers(&'static self) -> &'static [u8] {
        self.header.as_bytes()
    }
}
