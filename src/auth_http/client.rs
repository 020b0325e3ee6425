//! The auth_http client on nginx's event loop: one new connection per
//! attempt, the request built and the response judged by mail-core.

use core::ptr;

use mail_core::auth_http::{
    decide, parse_response, Decision, ParseError, ProxyProtocolInfo, Request, SmtpEnvelope, SslInfo,
};
use mail_core::AuthMethod;
use nginx_sys::{
    ngx_add_timer, ngx_close_connection, ngx_connection_t, ngx_create_pool, ngx_del_timer,
    ngx_destroy_pool, ngx_event_connect_peer, ngx_event_get_peer, ngx_event_t,
    ngx_handle_read_event, ngx_handle_write_event, ngx_msec_t, ngx_pcalloc, ngx_peer_connection_t,
    ngx_pnalloc, ngx_pool_t, ngx_str_t,
};

use super::conf;
use crate::ffi::{
    bytes, log_fmt, pool_str, shown, ETIMEDOUT, LOG_ERR, LOG_INFO, NGX_AGAIN, NGX_BUSY,
    NGX_DECLINED, NGX_ERROR,
};
use crate::mail_log;
use crate::session::Session;
use crate::state::Handover;

/// nginx reads at most this much of an auth response, as stock does.
const RESPONSE_LIMIT: usize = 1024;

/// One request to the auth server. Its pool, as in stock nginx, holds the
/// request and the response buffer too: heap buffers freed in the middle of
/// a session's allocations would fragment the worker's heap.
pub struct AuthAttempt {
    pool: *mut ngx_pool_t,
    peer: *mut ngx_peer_connection_t,
    request: ngx_str_t,
    sent: usize,
    /// RESPONSE_LIMIT bytes in the pool, `received` of them read so far.
    response: *mut u8,
    received: usize,
}

impl AuthAttempt {
    fn request(&self) -> &[u8] {
        // SAFETY: the request was copied into this attempt's live pool.
        unsafe { bytes(&self.request) }
    }

    fn response(&self) -> &[u8] {
        // SAFETY: the buffer has RESPONSE_LIMIT bytes in this attempt's live
        // pool, of which the first `received` were written by recv.
        unsafe { core::slice::from_raw_parts(self.response, self.received) }
    }
}

/// The auth stage's per-session state, in the auth_http module's slot: the
/// login asked for, the request in flight, and what a sleep ends in.
pub struct AuthState {
    handover: Handover,
    attempt: Option<AuthAttempt>,
    /// True while the session sleeps on `Auth-Wait` before asking again
    /// (false: it sleeps before telling the client of a refusal).
    wait: bool,
}

/// The client said enough: ask the auth server (`ngx_mail_auth`).
pub fn start_login(sess: Session, handover: Handover) {
    sess.set_state(AuthState {
        handover,
        attempt: None,
        wait: false,
    });
    let s = sess.raw();
    // SAFETY: s, its buffer and connection are live.
    unsafe {
        let b = (*s).buffer;
        if (*b).pos == (*b).last {
            (*b).pos = (*b).start;
            (*b).last = (*b).start;
        } else {
            // commands pipelined behind this one run once the answer (or a
            // refusal) is out: ngx_mail_send re-runs a blocked session
            (*s).set_blocked(1);
        }
        let rev = (*sess.connection()).read;
        if (*rev).timer_set() != 0 {
            ngx_del_timer(rev);
        }
        (*s).login_attempt += 1;
    }
    start(sess);
}

fn ssl_info(sess: Session, pool: *mut ngx_pool_t, out: &mut [ngx_str_t; 8]) -> bool {
    #[cfg(ngx_mail_ssl)]
    // SAFETY: c->ssl is checked; the ngx_ssl_get_* helpers allocate in pool.
    unsafe {
        use nginx_sys::*;
        let c = sess.connection();
        if (*c).ssl.is_null() {
            return false;
        }
        let get = |f: unsafe extern "C" fn(
            *mut ngx_connection_t,
            *mut ngx_pool_t,
            *mut ngx_str_t,
        ) -> ngx_int_t,
                   dst: &mut ngx_str_t| {
            *dst = ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
            f(c, pool, dst) == 0
        };
        let [protocol, cipher, verify, subject, issuer, serial, fingerprint, cert] = out;
        // these two return a static C string and leave the length unset
        for (f, dst) in [
            (
                ngx_ssl_get_protocol as unsafe extern "C" fn(_, _, _) -> _,
                &mut *protocol,
            ),
            (ngx_ssl_get_cipher_name, &mut *cipher),
        ] {
            if get(f, dst) && !dst.data.is_null() {
                dst.len = core::ffi::CStr::from_ptr(dst.data.cast()).to_bytes().len();
            }
        }
        let sslcf: &crate::bindings::ngx_mail_ssl_conf_t =
            sess.conf::<crate::bindings::ngx_mail_ssl_conf_t>();
        if sslcf.verify != 0 {
            get(ngx_ssl_get_client_verify, verify);
            get(ngx_ssl_get_subject_dn, subject);
            get(ngx_ssl_get_issuer_dn, issuer);
            get(ngx_ssl_get_serial_number, serial);
            get(ngx_ssl_get_fingerprint, fingerprint);
            if conf::conf(sess).pass_client_cert != 0 {
                let mut raw = ngx_str_t {
                    len: 0,
                    data: ptr::null_mut(),
                };
                if get(ngx_ssl_get_raw_certificate, &mut raw) {
                    let mut escaped = Vec::new();
                    mail_core::auth_http::escape(bytes(&raw), &mut escaped);
                    if let Some(e) = pool_str(pool, &escaped) {
                        *cert = e;
                    }
                }
            }
        }
        true
    }
    #[cfg(not(ngx_mail_ssl))]
    {
        let _ = (sess, pool, out);
        false
    }
}

fn build_request(sess: Session, pool: *mut ngx_pool_t) -> Vec<u8> {
    let s = sess.raw();
    let c = sess.connection();
    let ahcf = conf::conf(sess);
    let cscf = sess.core_conf();
    let method = sess
        .with_state(|auth: &mut AuthState| auth.handover.method)
        .unwrap_or(AuthMethod::Plain);
    let mut ssl = [ngx_str_t {
        len: 0,
        data: ptr::null_mut(),
    }; 8];
    let tls = ssl_info(sess, pool, &mut ssl);
    // SAFETY: every string read here is a live pool or config string.
    unsafe {
        let pp = (*c).proxy_protocol;
        let req = Request {
            uri: bytes(&ahcf.uri),
            host: bytes(&ahcf.host_header),
            method,
            login: bytes(&(*s).login),
            passwd: bytes(&(*s).passwd),
            salt: bytes(&(*s).salt),
            protocol: bytes(&(*cscf.protocol).name),
            login_attempt: (*s).login_attempt,
            client_ip: bytes(&(*c).addr_text),
            client_host: bytes(&(*s).host),
            proxy_protocol: (!pp.is_null()).then(|| ProxyProtocolInfo {
                src_addr: bytes(&(*pp).src_addr),
                src_port: (*pp).src_port,
                dst_addr: bytes(&(*pp).dst_addr),
                dst_port: (*pp).dst_port,
            }),
            smtp: (method == AuthMethod::None).then(|| SmtpEnvelope {
                helo: bytes(&(*s).smtp_helo),
                from: bytes(&(*s).smtp_from),
                to: bytes(&(*s).smtp_to),
            }),
            ssl: tls.then(|| SslInfo {
                protocol: bytes(&ssl[0]),
                cipher: bytes(&ssl[1]),
                verify: bytes(&ssl[2]),
                subject: bytes(&ssl[3]),
                issuer: bytes(&ssl[4]),
                serial: bytes(&ssl[5]),
                fingerprint: bytes(&ssl[6]),
                cert: bytes(&ssl[7]),
            }),
            extra_headers: bytes(&ahcf.header),
        };
        let out = req.build();
        if req.salted() {
            // the digest went to the auth server; only Auth-Pass may log in
            sess.forget_password();
        }
        out
    }
}

/// `ngx_mail_auth_http_init`: connect and send one request.
fn start(sess: Session) {
    sess.set_action(c"in http auth state");
    let c = sess.connection();
    let ahcf = conf::conf(sess);
    // SAFETY: the client connection and its log are live; the new pool and
    // peer struct belong to this attempt and are freed by finish().
    unsafe {
        let pool = ngx_create_pool(2048, (*c).log);
        if pool.is_null() {
            return sess.internal_server_error();
        }
        let peer =
            ngx_pcalloc(pool, size_of::<ngx_peer_connection_t>()).cast::<ngx_peer_connection_t>();
        if peer.is_null() {
            ngx_destroy_pool(pool);
            return sess.internal_server_error();
        }
        let request = pool_str(pool, &build_request(sess, pool));
        let response = ngx_pnalloc(pool, RESPONSE_LIMIT).cast::<u8>();
        let (Some(request), false) = (request, response.is_null()) else {
            ngx_destroy_pool(pool);
            return sess.internal_server_error();
        };
        let attempt = AuthAttempt {
            pool,
            peer,
            request,
            sent: 0,
            response,
            received: 0,
        };
        // without our state the attempt is dropped with the closure, which
        // frees its pool
        if sess
            .with_state(|auth: &mut AuthState| auth.attempt = Some(attempt))
            .is_none()
        {
            return sess.internal_server_error();
        }

        (*peer).sockaddr = (*ahcf.peer).sockaddr;
        (*peer).socklen = (*ahcf.peer).socklen;
        (*peer).name = &mut (*ahcf.peer).name;
        (*peer).get = Some(ngx_event_get_peer);
        (*peer).log = (*c).log;
        (*peer).set_log_error(1); // NGX_ERROR_ERR

        let rc = ngx_event_connect_peer(peer);
        if rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED {
            return fail(sess);
        }
        let pc = (*peer).connection;
        (*pc).data = sess.raw().cast();
        (*pc).pool = (*c).pool;
        (*(*c).read).handler = Some(block_read);
        (*(*pc).read).handler = Some(read_handler);
        (*(*pc).write).handler = Some(write_handler);
        ngx_add_timer((*pc).read, ahcf.timeout);
        ngx_add_timer((*pc).write, ahcf.timeout);
        if rc == 0 {
            write_handler((*pc).write);
        }
    }
}

impl Drop for AuthAttempt {
    /// Closes the auth connection and frees the attempt's pool, however the
    /// attempt ends, even with its session's pool.
    fn drop(&mut self) {
        // SAFETY: the peer connection (if any) and the pool belong to this
        // attempt and are released exactly once, here; the request and the
        // response (passwords, Auth-Pass) are zeroed before the pool goes.
        unsafe {
            ptr::write_bytes(self.request.data, 0, self.request.len);
            ptr::write_bytes(self.response, 0, RESPONSE_LIMIT);
            let pc = (*self.peer).connection;
            if !pc.is_null() {
                ngx_close_connection(pc);
            }
            ngx_destroy_pool(self.pool);
        }
    }
}

/// Ends the attempt in flight, if any (dropped once our state is no
/// longer borrowed: that closes its connection and frees its pool).
fn finish(sess: Session) {
    drop(
        sess.with_state(|auth: &mut AuthState| auth.attempt.take())
            .flatten(),
    );
}

fn fail(sess: Session) {
    finish(sess);
    sess.internal_server_error();
}

fn peer_name(sess: Session) -> crate::ffi::Shown<'static> {
    let ahcf = conf::conf(sess);
    // SAFETY: the peer name is a config string.
    shown(unsafe { bytes(&(*ahcf.peer).name) })
}

unsafe extern "C" fn block_read(rev: *mut ngx_event_t) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast()) };
    // the attempt in flight goes with our state
    if sess.ends_at_shutdown() {
        return;
    }
    // SAFETY: rev is the client's read event.
    if unsafe { ngx_handle_read_event(rev, 0) } != 0 {
        fail(sess);
    }
}

/// The auth connection is marked `close` at `worker_shutdown_timeout`: the
/// session it serves ends with it. True when it did.
fn ends_at_shutdown(pc: *mut ngx_connection_t, sess: Session) -> bool {
    // SAFETY: pc is the attempt's live connection.
    if unsafe { (*pc).close() } == 0 {
        return false;
    }
    finish(sess);
    // SAFETY: the client connection is live; it is marked so that the
    // session ends as at the client's own event.
    unsafe { (*sess.connection()).set_close(1) };
    sess.ends_at_shutdown()
}

unsafe extern "C" fn write_handler(wev: *mut ngx_event_t) {
    // SAFETY: wev belongs to the auth connection, whose data is the session.
    let (pc, sess) = unsafe {
        let pc = (*wev).data.cast::<ngx_connection_t>();
        (pc, Session::of(pc))
    };
    if ends_at_shutdown(pc, sess) {
        return;
    }
    // SAFETY: wev is live.
    if unsafe { (*wev).timedout() } != 0 {
        // SAFETY: the log is live.
        unsafe {
            log_fmt(
                LOG_ERR,
                (*wev).log,
                ETIMEDOUT,
                format_args!("auth http server {} timed out", peer_name(sess)),
            )
        };
        return fail(sess);
    }
    // the send runs with the attempt borrowed; what may end the session
    // runs after
    let sent = sess
        .with_state(|auth: &mut AuthState| {
            let attempt = auth.attempt.as_mut()?;
            let rest = attempt.request().get(attempt.sent..).unwrap_or_default();
            // SAFETY: pc is live.
            let send = unsafe { (*pc).send }?;
            // SAFETY: pc is live; send reads rest.len() bytes.
            let n = unsafe { send(pc, rest.as_ptr().cast_mut(), rest.len()) };
            if n == NGX_ERROR {
                return None;
            }
            attempt.sent += n.max(0) as usize;
            Some(attempt.sent == attempt.request.len)
        })
        .flatten();
    match sent {
        None => return fail(sess),
        Some(true) => {
            // SAFETY: wev is live.
            unsafe {
                (*wev).handler = Some(dummy_handler);
                if (*wev).timer_set() != 0 {
                    ngx_del_timer(wev);
                }
                if ngx_handle_write_event(wev, 0) != 0 {
                    fail(sess);
                }
            }
            return;
        }
        Some(false) => {}
    }
    // SAFETY: wev is live.
    unsafe {
        if (*wev).timer_set() == 0 {
            ngx_add_timer(wev, conf::conf(sess).timeout);
        }
    }
}

unsafe extern "C" fn dummy_handler(_ev: *mut ngx_event_t) {}

/// What one read of the auth response gave.
enum Read {
    Again,
    Failed,
    /// RESPONSE_LIMIT bytes and still no whole header.
    Full,
    Parsed(Result<Option<mail_core::auth_http::Response>, ParseError>),
}

unsafe extern "C" fn read_handler(rev: *mut ngx_event_t) {
    // SAFETY: rev belongs to the auth connection, whose data is the session.
    let (pc, sess) = unsafe {
        let pc = (*rev).data.cast::<ngx_connection_t>();
        (pc, Session::of(pc))
    };
    if ends_at_shutdown(pc, sess) {
        return;
    }
    // SAFETY: rev is live.
    if unsafe { (*rev).timedout() } != 0 {
        // SAFETY: the log is live.
        unsafe {
            log_fmt(
                LOG_ERR,
                (*rev).log,
                ETIMEDOUT,
                format_args!("auth http server {} timed out", peer_name(sess)),
            )
        };
        return fail(sess);
    }
    // the read and the parse run with the attempt borrowed; what may end
    // the session runs after
    let read = sess
        .with_state(|auth: &mut AuthState| {
            let Some(attempt) = auth.attempt.as_mut() else {
                return Read::Failed;
            };
            let room = RESPONSE_LIMIT - attempt.received;
            if room == 0 {
                return Read::Full;
            }
            // SAFETY: pc is live.
            let Some(recv) = (unsafe { (*pc).recv }) else {
                return Read::Failed;
            };
            // SAFETY: pc is live; recv writes at most room bytes after the
            // received ones, inside the RESPONSE_LIMIT-byte buffer.
            let n = unsafe { recv(pc, attempt.response.add(attempt.received), room) };
            if n == NGX_AGAIN {
                return Read::Again;
            }
            if n <= 0 {
                return Read::Failed;
            }
            attempt.received += (n as usize).min(room);
            Read::Parsed(parse_response(attempt.response()))
        })
        .unwrap_or(Read::Failed);
    let parsed = match read {
        Read::Again => return,
        Read::Failed => return fail(sess),
        Read::Full => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} sent invalid header in response",
                peer_name(sess)
            );
            return fail(sess);
        }
        Read::Parsed(parsed) => parsed,
    };
    let resp = match parsed {
        Ok(None) => return,
        Ok(Some(resp)) => resp,
        Err(e) => {
            let what = match e {
                ParseError::InvalidResponse => "invalid response",
                ParseError::InvalidHeader => "invalid header in response",
            };
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} sent {}",
                peer_name(sess),
                what
            );
            return fail(sess);
        }
    };
    finish(sess);
    let s = sess.raw();
    // SAFETY: s is live.
    let have_password = unsafe { !(*s).passwd.data.is_null() };
    // judged with the protocol state borrowed; acted on after
    let judged = sess.with_state(|auth: &mut AuthState| {
        let decision = decide(resp, have_password, auth.handover.password_required());
        let refusal = match &decision {
            Decision::Refused {
                text, error_code, ..
            } => Some(auth.handover.refusal(text, error_code.as_deref())),
            _ => None,
        };
        // what the sleep after this answer ends in (sleep_handler)
        auth.wait = matches!(decision, Decision::Wait { .. });
        (decision, refusal)
    });
    let Some((decision, refusal)) = judged else {
        return sess.internal_server_error();
    };
    match decision {
        Decision::Refused { text, sleep, .. } => {
            mail_log!(
                LOG_INFO,
                sess.log(),
                "client login failed: \"{}\"",
                shown(&text)
            );
            if !sess.set_out(&refusal.unwrap_or_default()) {
                return sess.internal_server_error();
            }
            if sleep == 0 {
                sess.set_quit();
                return sess.send();
            }
            sleep_for(sess, sleep);
        }
        Decision::Wait { sleep } => {
            if sleep == 0 {
                return start(sess);
            }
            sleep_for(sess, sleep);
        }
        Decision::MissingServer => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} did not send server or port",
                peer_name(sess)
            );
            sess.internal_server_error();
        }
        Decision::MissingPassword => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} did not send password",
                peer_name(sess)
            );
            sess.internal_server_error();
        }
        Decision::InvalidServer(addr) => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} sent invalid server address:\"{}\"",
                peer_name(sess),
                shown(&addr)
            );
            sess.internal_server_error();
        }
        Decision::InvalidPort(port) => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} sent invalid server port:\"{}\"",
                peer_name(sess),
                shown(&port)
            );
            sess.internal_server_error();
        }
        Decision::Proxy {
            addr,
            name,
            login,
            passwd,
        } => {
            // SAFETY: s and its pool are live.
            unsafe {
                if let Some(login) = login {
                    match pool_str(sess.pool(), &login) {
                        Some(l) => (*s).login = l,
                        None => return sess.internal_server_error(),
                    }
                }
                if let Some(passwd) = passwd {
                    match pool_str(sess.pool(), &passwd) {
                        Some(p) => (*s).passwd = p,
                        None => return sess.internal_server_error(),
                    }
                }
            }
            // the auth stage is over; the login goes on to the proxy
            let Some(auth) = sess.take_state::<AuthState>() else {
                return sess.internal_server_error();
            };
            crate::proxy::upstream::connect(sess, addr, &name, auth.handover);
        }
    }
}

fn sleep_for(sess: Session, seconds: u64) {
    let ms = seconds.saturating_mul(1000).min(ngx_msec_t::MAX as u64 / 2) as ngx_msec_t;
    // SAFETY: the client connection is live.
    unsafe {
        let rev = (*sess.connection()).read;
        ngx_add_timer(rev, ms);
        (*rev).handler = Some(sleep_handler);
    }
}

/// After `Auth-Wait`: ask again, or tell the client of the refusal and let
/// it try again.
unsafe extern "C" fn sleep_handler(rev: *mut ngx_event_t) {
    // SAFETY: rev is the client's read event.
    let (c, sess) = unsafe {
        let c = (*rev).data.cast::<ngx_connection_t>();
        (c, Session::of(c))
    };
    if sess.ends_at_shutdown() {
        return;
    }
    // SAFETY: rev is live.
    if unsafe { (*rev).timedout() } == 0 {
        // SAFETY: as above.
        if unsafe { (*rev).active() } != 0 && unsafe { ngx_handle_read_event(rev, 0) } != 0 {
            sess.close();
        }
        return;
    }
    // SAFETY: as above.
    unsafe { (*rev).set_timedout(0) };
    // true: ask the auth server again; false: the refusal goes out and the
    // client may try again, so the auth stage is over
    let Some(ask_again) = sess.with_state(|auth: &mut AuthState| auth.wait) else {
        return sess.close();
    };
    if ask_again {
        return start(sess);
    }
    drop(sess.take_state::<AuthState>());
    // back to the protocol's auth state, through nginx's own table
    // SAFETY: a server's protocol is set when its configuration is read,
    // and lives as long as it.
    let auth_state = unsafe { (*sess.core_conf().protocol).auth_state };
    // A retry starts from nothing: no password or digest of the refused
    // attempt may reach the next request (CVE-2026-27651 class).
    sess.forget_password();
    // SAFETY: rev is live.
    unsafe { (*rev).handler = auth_state };
    sess.set_action(c"in auth state");
    sess.send();
    // SAFETY: c stays allocated; destroyed is set when it was closed.
    if unsafe { (*c).destroyed() } != 0 {
        return;
    }
    // SAFETY: the connection is live.
    unsafe {
        ngx_add_timer(rev, sess.core_conf().timeout);
        if (*rev).ready() != 0 {
            if let Some(h) = (*rev).handler {
                h(rev);
            }
            return;
        }
    }
    sess.handle_read_event();
}
