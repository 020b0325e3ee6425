//! TLS to the backend, with nginx's own `ngx_ssl_*` as the stream proxy uses
//! them (`ngx_stream_proxy_ssl_init_connection`, `_handshake`, `_name`,
//! `_save_session`): the handshake runs after the TCP connect (and the PROXY
//! header) and before the login dialogue reads a byte, so no credential
//! can reach a backend that failed it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use nginx_sys::{ngx_connection_t, ngx_int_t, ngx_str_t, SSL_SESSION};

use mail_core::starttls::{BackendTls, Protocol, StartTls};
use mail_core::upstream::UpstreamStep;

use super::ssl_module::SslConf;
use crate::ffi::{shown, ETIMEDOUT, LOG_ERR, LOG_INFO};
use crate::mail_log;
use crate::nginx::Conn;
use crate::session::Session;
use crate::state::{ClientDialogue, Handover};

/// How this session's backend connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// TLS from the first byte (`proxy_ssl on`).
    Implicit,
    /// STLS/STARTTLS before the login dialogue (`proxy_starttls on`).
    StartTls,
}

/// What the handshake checks, decided when the backend is chosen and kept
/// for the session: the ticket a backend sends may come after the login.
pub struct Target {
    pub mode: Mode,
    /// The upgrade dialogue, with `Mode::StartTls`.
    upgrade: Option<StartTls>,
    /// The name sent as SNI and verified: `proxy_ssl_name`, else the host
    /// the auth server named, without its port.
    name: Vec<u8>,
    addr: SocketAddr,
}

impl crate::session::SessionState for Target {
    fn module() -> *const nginx_sys::ngx_module_t {
        core::ptr::addr_of!(super::ssl_module::ngx_mail_rs_proxy_ssl_module)
    }
}

fn conf(sess: Session) -> &'static SslConf {
    sess.conf::<SslConf>()
}

/// Decides how to reach the backend named `name` ("host:port") at `addr`:
/// the auth server's `Auth-Server-TLS` and `Auth-Server-Name` if it sent
/// them, else this server's directives.
pub fn choose(sess: Session, addr: SocketAddr, name: &[u8], handover: &Handover) -> Mode {
    let scf = conf(sess);
    // implicit TLS wins where both are on: it never sends a plain byte
    let mode = match handover.backend_tls {
        Some(BackendTls::Implicit) => Mode::Implicit,
        Some(BackendTls::StartTls) => Mode::StartTls,
        Some(BackendTls::Off) => Mode::Off,
        None if scf.enable != 0 => Mode::Implicit,
        None if scf.starttls != 0 => Mode::StartTls,
        None => Mode::Off,
    };
    let client = &handover.client;
    let upgrade = (mode == Mode::StartTls).then(|| {
        StartTls::new(match client {
            ClientDialogue::Pop3 => Protocol::Pop3,
            // a tag of our own where the client's is missing: the replies
            // to our commands are found by it
            ClientDialogue::Imap { tag } if tag.is_empty() => Protocol::Imap {
                tag: b"s ".to_vec(),
            },
            ClientDialogue::Imap { tag } => Protocol::Imap { tag: tag.clone() },
            ClientDialogue::Smtp { .. } => Protocol::Smtp {
                server_name: sess.server_name().to_vec(),
            },
            ClientDialogue::Sieve => Protocol::Sieve,
        })
    });
    // SAFETY: the merged name lives in the configuration pool.
    let configured = unsafe { crate::ffi::bytes(&scf.name) };
    let name = match &handover.backend_tls_name {
        Some(chosen) => host_of(chosen),
        None if configured.is_empty() => host_of(name),
        None => host_of(configured),
    };
    sess.keep_state(Target {
        mode,
        upgrade,
        name: name.to_vec(),
        addr,
    });
    mode
}

/// A name without its port, as `ngx_stream_proxy_ssl_name` strips it.
fn host_of(name: &[u8]) -> &[u8] {
    let from = if name.first() == Some(&b'[') {
        name.iter().position(|&b| b == b']').unwrap_or(0)
    } else {
        0
    };
    let end = name
        .iter()
        .skip(from)
        .position(|&b| b == b':')
        .map_or(name.len(), |i| from + i);
    name.get(..end).unwrap_or(name)
}

/// Whether the backend connection still needs its handshake.
pub fn pending(sess: Session, uc: Conn) -> bool {
    !uc.is_tls() && sess.with_state(|t: &mut Target| t.mode) == Some(Mode::Implicit)
}

/// The next step of the STARTTLS dialogue while it runs: `None` once the
/// login dialogue has the backend (or without `proxy_starttls`).
pub fn upgrade_step(
    sess: Session,
    data: &[u8],
    full: bool,
) -> Option<(UpstreamStep, &'static core::ffi::CStr)> {
    sess.with_state(|t: &mut Target| {
        let d = t.upgrade.as_mut().filter(|d| !d.ready())?;
        let step = d.on_data(data, full);
        Some((step, d.action()))
    })
    .flatten()
}

/// After a STARTTLS handshake: what the login dialogue reads first (the
/// greeting again, or `None`: read the backend). `None` outside STARTTLS.
pub fn take_greeting(sess: Session) -> Option<Option<Vec<u8>>> {
    sess.with_state(|t: &mut Target| t.upgrade.take().map(|mut d| d.take_greeting()))
        .flatten()
}

/// Starts the handshake; `super::upstream::tls_ready` or an error follows.
pub fn start(sess: Session, uc: Conn) {
    sess.set_action(c"SSL handshaking to upstream");
    let scf = conf(sess);
    let Some(name) = sess.with_state(|t: &mut Target| t.name.clone()) else {
        return super::upstream::internal_server_error(sess);
    };
    let c = uc.raw();
    // SAFETY: c is the live backend connection, scf.ssl the context made at
    // merge; the SSL object is c's from here on, freed by `shutdown`.
    unsafe {
        let flags =
            (nginx_sys::NGX_SSL_BUFFER | nginx_sys::NGX_SSL_CLIENT) as nginx_sys::ngx_uint_t;
        if nginx_sys::ngx_ssl_create_connection(scf.ssl, c, flags) != nginx_sys::NGX_OK as ngx_int_t
        {
            return super::upstream::internal_server_error(sess);
        }
        if scf.server_name != 0 && !set_server_name(sess, uc, &name) {
            return super::upstream::internal_server_error(sess);
        }
        if scf.session_reuse != 0 {
            (*(*c).ssl).save_session = Some(save_session);
            if let Some(key) = cache_key(sess) {
                if let Some(saved) = cached(&key) {
                    if nginx_sys::ngx_ssl_set_session(c, saved) != nginx_sys::NGX_OK as ngx_int_t {
                        return super::upstream::internal_server_error(sess);
                    }
                }
            }
        }
        let rc = nginx_sys::ngx_ssl_handshake(c);
        if rc == nginx_sys::NGX_AGAIN as ngx_int_t {
            (*(*c).ssl).handler = Some(handshake_handler);
            return;
        }
    }
    handshake_done(sess, uc);
}

/// SNI, as RFC 6066 allows it: never an IP literal.
fn set_server_name(sess: Session, uc: Conn, name: &[u8]) -> bool {
    let literal = name.first() == Some(&b'[')
        || core::str::from_utf8(name).is_ok_and(|n| n.parse::<std::net::IpAddr>().is_ok());
    if name.is_empty() || literal {
        return true;
    }
    let Ok(cname) = std::ffi::CString::new(name) else {
        return true;
    };
    crate::mail_debug!(uc.log(), "upstream SSL server name: \"{}\"", shown(name));
    // SAFETY: uc has its SSL object; OpenSSL copies the name.
    let rc = unsafe {
        nginx_sys::SSL_ctrl(
            (*(*uc.raw()).ssl).connection,
            nginx_sys::SSL_CTRL_SET_TLSEXT_HOSTNAME as core::ffi::c_int,
            nginx_sys::TLSEXT_NAMETYPE_host_name as core::ffi::c_long,
            cname.as_ptr().cast_mut().cast(),
        )
    };
    if rc == 0 {
        mail_log!(
            LOG_ERR,
            sess.log(),
            "SSL_set_tlsext_host_name(\"{}\") failed",
            shown(name)
        );
        return false;
    }
    true
}

/// `ngx_ssl_handshake_handler` calls this when the handshake is over or
/// timed out.
unsafe extern "C" fn handshake_handler(c: *mut ngx_connection_t) {
    // SAFETY: the backend connection's data is its live session.
    let (sess, uc) = unsafe { (Session::from_raw((*c).data.cast()), Conn::from_raw(c)) };
    handshake_done(sess, uc);
}

fn handshake_done(sess: Session, uc: Conn) {
    let name = sess
        .with_state(|t: &mut Target| t.name.clone())
        .unwrap_or_default();
    // SAFETY: uc is live and has its SSL object.
    let handshaked = unsafe { (*(*uc.raw()).ssl).handshaked() != 0 };
    if !handshaked {
        if uc.read().timedout() || uc.write().timedout() {
            mail_log!(LOG_INFO, uc.log(), errno = ETIMEDOUT; "upstream timed out");
            uc.set_timedout();
        } else {
            // nginx logged OpenSSL's reason just before, at the level it
            // gives that reason
            mail_log!(
                LOG_ERR,
                sess.log(),
                "upstream SSL handshake with \"{}\" failed",
                shown(&name)
            );
        }
        return super::upstream::internal_server_error(sess);
    }
    if conf(sess).verify != 0 && !verified(sess, uc, &name) {
        return super::upstream::internal_server_error(sess);
    }
    // SAFETY: as above.
    if unsafe { nginx_sys::SSL_session_reused((*(*uc.raw()).ssl).connection) } != 0 {
        crate::mail_debug!(uc.log(), "mail proxy upstream SSL session reused");
    }
    super::upstream::tls_ready(sess, uc);
}

/// `proxy_ssl_verify`: the chain (checked during the handshake, which
/// nginx's callback lets finish) and the name.
fn verified(sess: Session, uc: Conn, name: &[u8]) -> bool {
    // SAFETY: uc is live with a finished handshake.
    let rc = unsafe { nginx_sys::SSL_get_verify_result((*(*uc.raw()).ssl).connection) };
    if rc != nginx_sys::X509_V_OK as core::ffi::c_long {
        // SAFETY: OpenSSL returns a static NUL-terminated string.
        let why =
            unsafe { core::ffi::CStr::from_ptr(nginx_sys::X509_verify_cert_error_string(rc)) };
        mail_log!(
            LOG_ERR,
            sess.log(),
            "upstream SSL certificate verify error: ({}:{}) for \"{}\"",
            rc,
            shown(why.to_bytes()),
            shown(name)
        );
        return false;
    }
    let mut host = ngx_str_t {
        len: name.len(),
        data: name.as_ptr().cast_mut(),
    };
    // SAFETY: uc is live; `host` points into `name`, alive for the call.
    if unsafe { nginx_sys::ngx_ssl_check_host(uc.raw(), &mut host) }
        != nginx_sys::NGX_OK as ngx_int_t
    {
        mail_log!(
            LOG_ERR,
            sess.log(),
            "upstream SSL certificate does not match \"{}\"",
            shown(name)
        );
        return false;
    }
    true
}

/// Frees the backend connection's SSL object before its socket closes,
/// without waiting for the backend's close_notify (as the stream proxy).
pub fn shutdown(uc: Conn) {
    let c = uc.raw();
    // SAFETY: c is live; with both flags set ngx_ssl_shutdown neither
    // sends nor waits, so it finishes here and frees the SSL object.
    unsafe {
        if (*c).ssl.is_null() {
            return;
        }
        (*(*c).ssl).set_no_wait_shutdown(1);
        (*(*c).ssl).set_no_send_shutdown(1);
        let _ = nginx_sys::ngx_ssl_shutdown(c);
    }
}

/// Sessions to resume, per worker: one per server context, backend address
/// and name, the latest the backend gave.
type Key = (usize, SocketAddr, Vec<u8>);

struct Saved(*mut SSL_SESSION);
// SAFETY: a worker is one thread; the mutex only satisfies `static`.
unsafe impl Send for Saved {}

static CACHE: Mutex<Option<HashMap<Key, Saved>>> = Mutex::new(None);

/// A bound on what one worker keeps; past it the cache starts afresh.
const CACHE_MAX: usize = 4096;

fn cache_key(sess: Session) -> Option<Key> {
    let ssl = conf(sess).ssl as usize;
    sess.with_state(|t: &mut Target| (ssl, t.addr, t.name.clone()))
}

fn cached(key: &Key) -> Option<*mut SSL_SESSION> {
    let cache = CACHE.lock().ok()?;
    cache.as_ref()?.get(key).map(|s| s.0)
}

/// `c->ssl->save_session`: the backend gave a session (or a TLS 1.3
/// ticket) to resume.
unsafe extern "C" fn save_session(c: *mut ngx_connection_t) {
    // SAFETY: the backend connection's data is its live session; the
    // session is ours to keep (ngx_ssl_get_session took a reference).
    unsafe {
        let sess = Session::from_raw((*c).data.cast());
        let Some(key) = cache_key(sess) else { return };
        let got = nginx_sys::ngx_ssl_get_session(c);
        if got.is_null() {
            return;
        }
        let Ok(mut cache) = CACHE.lock() else {
            nginx_sys::SSL_SESSION_free(got);
            return;
        };
        let map = cache.get_or_insert_with(HashMap::new);
        if map.len() >= CACHE_MAX && !map.contains_key(&key) {
            for (_, old) in map.drain() {
                nginx_sys::SSL_SESSION_free(old.0);
            }
        }
        if let Some(old) = map.insert(key, Saved(got)) {
            nginx_sys::SSL_SESSION_free(old.0);
        }
    }
}

/// The worker ends: its saved sessions go with it.
pub fn forget_sessions() {
    let Ok(mut cache) = CACHE.lock() else { return };
    if let Some(map) = cache.take() {
        for (_, old) in map {
            // SAFETY: each was a reference of ours.
            unsafe { nginx_sys::SSL_SESSION_free(old.0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn port_is_stripped() {
        assert_eq!(host_of(b"127.0.0.1:993"), b"127.0.0.1");
        assert_eq!(host_of(b"[::1]:993"), b"[::1]");
        assert_eq!(host_of(b"mail.example"), b"mail.example");
        assert_eq!(host_of(b"::1"), b"");
    }
}
