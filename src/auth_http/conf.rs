//! The auth_http module's server conf, as its stage reads it. The directives
//! that fill it and the module tables are in `module.rs`.

use core::cell::Cell;

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
    /// A Cell: every session reads the conf through shared references.
    pub state: Cell<Peer>,
}

/// A level's auth servers, in the cycle's pool.
pub struct ServerList {
    /// `AuthServer`s, in the order configured.
    pub servers: *mut ngx_array_t,
    /// From `auth_http_server` (ours): round robin with failover. From
    /// `auth_http`: stock's one server, no failure counted.
    pub failover: bool,
    /// This worker's round robin position.
    pub next: Cell<usize>,
}

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
    fn list(&'static self) -> &'static ServerList {
        // SAFETY: merge refuses a server without auth servers; the list
        // lives in the cycle's pool.
        unsafe { &*self.servers }
    }

    fn servers(&'static self) -> &'static [AuthServer] {
        // SAFETY: the array lives in the cycle's pool and holds nelts
        // AuthServers.
        unsafe {
            let a = &*self.list().servers;
            core::slice::from_raw_parts(a.elts.cast::<AuthServer>(), a.nelts)
        }
    }

    /// Server `i` of the list.
    pub fn server(&'static self, i: usize) -> Option<&'static AuthServer> {
        self.servers().get(i)
    }

    /// Round robin with failover (`auth_http_server`)?
    pub fn failover(&'static self) -> bool {
        self.list().failover
    }

    /// The next server for a login that tried `tried`.
    pub fn pick(&'static self, tried: &mut Tried, now: u64) -> Pick {
        let servers = self.servers();
        let mut peers: Vec<Peer> = servers.iter().map(|s| s.state.get()).collect();
        let mut next = self.list().next.get();
        let picked = pick(&mut peers, &mut next, tried, now);
        self.list().next.set(next);
        servers
            .iter()
            .zip(peers)
            .for_each(|(server, peer)| server.state.set(peer));
        picked
    }

    /// Server `i` failed; true when that makes it down.
    pub fn failed(&'static self, i: usize, now: u64) -> bool {
        self.server(i).is_some_and(|s| {
            let mut peer = s.state.get();
            let down = peer.failed(now);
            s.state.set(peer);
            down
        })
    }

    pub fn succeeded(&'static self, i: usize) {
        if let Some(s) = self.server(i) {
            let mut peer = s.state.get();
            peer.succeeded();
            s.state.set(peer);
        }
    }

    /// The `auth_http_header` lines, joined.
    pub fn extra_headers(&'static self) -> &'static [u8] {
        self.header.as_bytes()
    }
}
