//! `metrics_zone NAME [SIZE]` in mail{}: the counters live in a shared
//! memory zone, so every worker counts into the same ones, and a reload
//! that keeps the zone's name and size keeps the zone (nginx hands the new
//! cycle the same memory) and so the counts. Atomics only: no lock.

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use mail_core::metrics::{self as m, bucket_index, protocol_index, Snapshot};
use mail_core::session_log::{AuthResult, CloseReason};
use mail_core::AuthMethod;
use nginx_sys::{ngx_command_t, ngx_conf_t, ngx_int_t, ngx_msec_t, ngx_shm_zone_t, ngx_str_t};

use super::module::{ngx_mail_rs_observe_module, ObserveConf};
use crate::conf::conf_error;
use crate::ffi::{bytes, CONF_OK};
use crate::session::Session;

/// A zone's handle: nginx's shared zone (its memory holds `Counters`).
pub type Zone = ngx_shm_zone_t;

// "ngxmail1", and the layout's size: a zone a reload hands over from a
// module build with other counters is not read as ours
const MAGIC: u64 = 0x6e67_786d_6169_6c31 ^ size_of::<Counters>() as u64;
const DEFAULT_SIZE: usize = 64 * 1024;

#[derive(Default)]
struct Hist {
    buckets: [AtomicU64; m::B],
    sum_ms: AtomicU64,
}

#[derive(Default)]
#[repr(C)]
struct Counters {
    magic: AtomicU64,
    connections: [AtomicU64; m::P],
    active: [AtomicI64; m::P],
    auth: [[[AtomicU64; m::R]; m::M]; m::P],
    sessions: [[AtomicU64; m::C]; m::P],
    bytes: [[AtomicU64; 2]; m::P],
    tls_handshakes: [AtomicU64; m::P],
    tls_failures: [AtomicU64; m::P],
    auth_latency: [Hist; m::P],
    connect_latency: [Hist; m::P],
}

fn counters(zone: &Zone) -> Option<&'static Counters> {
    // SAFETY: the zone's data is our Counters once `init_zone` ran (the
    // magic says so); atomics may be shared by every process.
    let c = unsafe { zone.data.cast::<Counters>().as_ref() }?;
    (c.magic.load(Relaxed) == MAGIC).then_some(c)
}

/// `metrics_zone NAME [SIZE]`.
pub unsafe extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's conf and the directive's args.
    let (conf, args) = unsafe {
        let a = (*cf).args;
        let elts = (*a).elts.cast::<ngx_str_t>();
        let args: Vec<ngx_str_t> = (1..(*a).nelts).map(|i| *elts.add(i)).collect();
        (&mut *conf.cast::<ObserveConf>(), args)
    };
    if !conf.zone.is_null() {
        return conf_error(cf, "\"metrics_zone\" directive is duplicate");
    }
    let Some(mut name) = args.first().copied() else {
        return conf_error(
            cf,
            "invalid number of arguments in \"metrics_zone\" directive",
        );
    };
    let mut size = DEFAULT_SIZE;
    if let Some(v) = args.get(1) {
        // SAFETY: the argument is the parser's string.
        let mut v = *v;
        let n = unsafe { nginx_sys::ngx_parse_size(&mut v) };
        if n < 0 {
            // SAFETY: as above.
            let shown = String::from_utf8_lossy(unsafe { bytes(&v) }).into_owned();
            return conf_error(cf, &format!("invalid zone size \"{shown}\""));
        }
        size = n as usize;
    }
    // the counters and nginx's own slab header at the start of a zone
    let min = size_of::<Counters>() + 8 * 1024;
    if size < min {
        return conf_error(
            cf,
            &format!("metrics zone is too small, needs at least {min} bytes"),
        );
    }
    // SAFETY: cf is live; the tag is this module, so the http side finds
    // the same zone by name.
    let zone = unsafe {
        nginx_sys::ngx_shared_memory_add(
            cf,
            &mut name,
            size,
            core::ptr::addr_of_mut!(ngx_mail_rs_observe_module).cast(),
        )
    };
    if zone.is_null() {
        return crate::ffi::CONF_ERROR;
    }
    // SAFETY: the zone is the cycle's.
    unsafe {
        (*zone).init = Some(init_zone);
        (*zone).noreuse = 0;
    }
    conf.zone = zone;
    CONF_OK
}

/// The zone's memory is set up: the previous cycle's counters when it
/// is a reload's (same name and size), else new ones, at zero, from the
/// zone's slab pool.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls this with the zone, whose memory starts with
    // its slab pool, before any worker runs; `data` is the previous
    // cycle's zone data (our counters) or null.
    unsafe {
        if !data.is_null() && (*data.cast::<Counters>()).magic.load(Relaxed) == MAGIC {
            (*zone).data = data;
            return 0;
        }
        let pool = (*zone).shm.addr.cast::<nginx_sys::ngx_slab_pool_t>();
        if (*zone).shm.exists != 0 && data.is_null() {
            (*zone).data = (*pool).data;
            return 0;
        }
        let p = nginx_sys::ngx_slab_alloc(pool, size_of::<Counters>()).cast::<Counters>();
        if p.is_null() {
            return crate::ffi::NGX_ERROR;
        }
        p.write(Counters::default());
        (*p).magic.store(MAGIC, Relaxed);
        (*pool).data = p.cast();
        (*zone).data = p.cast();
    }
    0
}

fn with_counters(conf: &ObserveConf, protocol: &[u8], f: impl FnOnce(&Counters, usize)) {
    let Some(c) = conf.zone().and_then(counters) else {
        return;
    };
    if let Some(p) = protocol_index(protocol) {
        f(c, p);
    }
}

fn observe(h: &Hist, ms: ngx_msec_t) {
    let ms = ms as u64;
    if let Some(b) = h.buckets.get(bucket_index(ms)) {
        b.fetch_add(1, Relaxed);
    }
    h.sum_ms.fetch_add(ms, Relaxed);
}

pub fn session_started(sess: Session, conf: &ObserveConf) {
    with_counters(conf, sess.protocol_name(), |c, p| {
        if let (Some(n), Some(a)) = (c.connections.get(p), c.active.get(p)) {
            n.fetch_add(1, Relaxed);
            a.fetch_add(1, Relaxed);
        }
    });
}

pub fn tls_done(sess: Session) {
    tls_handshake(sess.conf::<ObserveConf>(), sess.protocol_name(), true);
}

/// A client TLS handshake ended, completed or not.
pub fn tls_handshake(conf: &ObserveConf, protocol: &[u8], ok: bool) {
    with_counters(conf, protocol, |c, p| {
        let counter = if ok {
            c.tls_handshakes.get(p)
        } else {
            c.tls_failures.get(p)
        };
        if let Some(n) = counter {
            n.fetch_add(1, Relaxed);
        }
    });
}

pub fn auth_done(sess: Session, method: Option<AuthMethod>, result: AuthResult, ms: ngx_msec_t) {
    let mech = m::mechanism_index(method.unwrap_or(AuthMethod::Plain));
    let r = AuthResult::ALL
        .iter()
        .position(|&x| x == result)
        .unwrap_or(0);
    with_counters(sess.conf::<ObserveConf>(), sess.protocol_name(), |c, p| {
        if let Some(n) = c
            .auth
            .get(p)
            .and_then(|a| a.get(mech))
            .and_then(|a| a.get(r))
        {
            n.fetch_add(1, Relaxed);
        }
        if let Some(h) = c.auth_latency.get(p) {
            observe(h, ms);
        }
    });
}

pub fn backend_connected(sess: Session, ms: ngx_msec_t) {
    with_counters(sess.conf::<ObserveConf>(), sess.protocol_name(), |c, p| {
        if let Some(h) = c.connect_latency.get(p) {
            observe(h, ms);
        }
    });
}

pub fn session_ended(
    conf: &ObserveConf,
    protocol: &[u8],
    reason: CloseReason,
    to_backend: u64,
    to_client: u64,
) {
    with_counters(conf, protocol, |c, p| {
        if let Some(a) = c.active.get(p) {
            a.fetch_sub(1, Relaxed);
        }
        if let Some(n) = c.sessions.get(p).and_then(|s| s.get(reason.index())) {
            n.fetch_add(1, Relaxed);
        }
        if let Some([b0, b1]) = c.bytes.get(p) {
            b0.fetch_add(to_backend, Relaxed);
            b1.fetch_add(to_client, Relaxed);
        }
    });
}

/// The counters of `zone` now, for the exposition.
pub fn snapshot(zone: &Zone) -> Option<Snapshot> {
    let c = counters(zone)?;
    let mut s = Snapshot::default();
    let load = |a: &AtomicU64| a.load(Relaxed);
    for p in 0..m::P {
        let get = |arr: &[AtomicU64; m::P]| arr.get(p).map_or(0, load);
        if let Some(v) = s.connections.get_mut(p) {
            *v = get(&c.connections);
        }
        if let (Some(v), Some(a)) = (s.active.get_mut(p), c.active.get(p)) {
            *v = a.load(Relaxed);
        }
        if let Some(v) = s.tls_handshakes.get_mut(p) {
            *v = get(&c.tls_handshakes);
        }
        if let Some(v) = s.tls_failures.get_mut(p) {
            *v = get(&c.tls_failures);
        }
        if let (Some(dst), Some(src)) = (s.auth.get_mut(p), c.auth.get(p)) {
            for (d, sr) in dst.iter_mut().zip(src) {
                for (x, y) in d.iter_mut().zip(sr) {
                    *x = load(y);
                }
            }
        }
        if let (Some(dst), Some(src)) = (s.sessions.get_mut(p), c.sessions.get(p)) {
            for (x, y) in dst.iter_mut().zip(src) {
                *x = load(y);
            }
        }
        if let (Some(dst), Some(src)) = (s.bytes.get_mut(p), c.bytes.get(p)) {
            for (x, y) in dst.iter_mut().zip(src) {
                *x = load(y);
            }
        }
        for (dst, src) in [
            (&mut s.auth_latency, &c.auth_latency),
            (&mut s.connect_latency, &c.connect_latency),
        ] {
            if let (Some(d), Some(sr)) = (dst.get_mut(p), src.get(p)) {
                for (x, y) in d.buckets.iter_mut().zip(&sr.buckets) {
                    *x = load(y);
                }
                d.sum_ms = load(&sr.sum_ms);
            }
        }
    }
    Some(s)
}
