//! One request to an auth server: which server (`auth_http`'s one, or the
//! next `auth_http_server` in turn), a kept connection or a new one, and
//! what happens when the server fails: stock's error for `auth_http`, the
//! next server for `auth_http_server`s, all within `auth_http_timeout`.

use mail_core::auth_http::failover::{Pick, Tried};
use mail_core::auth_http::{Request, SmtpEnvelope};
use mail_core::AuthMethod;
use nginx_sys::ngx_msec_t;

use super::client::{block_read, fail, finish, read_handler, write_handler, AuthState};
use super::conf::{self, AuthServer};
use super::keepalive;
use crate::ffi::{shown, LOG_WARN};
use crate::mail_log;
use crate::nginx::Pool;
use crate::peer::{Connect, PeerRequest};
use crate::session::Session;

/// nginx reads at most this much of an auth response, as stock does.
const RESPONSE_LIMIT: usize = 1024;

pub(super) fn now() -> ngx_msec_t {
    // SAFETY: nginx's clock, updated by the event loop of this thread.
    unsafe { nginx_sys::ngx_current_msec }
}

/// What is left of this request's `auth_http_timeout`; 0 when nothing.
fn left(deadline: ngx_msec_t) -> ngx_msec_t {
    // wrapping: ngx_msec_t is nginx's wrapping clock
    let left = deadline.wrapping_sub(now());
    if (left as isize) > 0 {
        left
    } else {
        0
    }
}

/// What is left of this request's `auth_http_timeout`, for a timer.
pub(super) fn time_left(sess: Session) -> ngx_msec_t {
    let deadline = sess.with_state(|auth: &mut AuthState| auth.deadline);
    deadline.map_or(1, |d| left(d).max(1))
}

/// The server this request is asking, if any.
pub(super) fn current(sess: Session) -> Option<&'static AuthServer> {
    let i = sess.with_state(|auth: &mut AuthState| auth.server)?;
    conf::conf(sess).server(i)
}

/// The request for `server`, its TLS strings in `pool`.
fn build_request(sess: Session, pool: Pool, server: &'static AuthServer) -> Vec<u8> {
    let ahcf = conf::conf(sess);
    let method = sess
        .with_state(|auth: &mut AuthState| auth.handover.method)
        .unwrap_or(AuthMethod::Plain);
    let (helo, from, to) = sess.envelope();
    let req = Request {
        uri: server.uri(),
        host: server.host_header(),
        method,
        login: sess.login(),
        passwd: sess.passwd().unwrap_or_default(),
        salt: sess.salt().unwrap_or_default(),
        protocol: sess.protocol_name(),
        login_attempt: sess.login_attempt(),
        client_ip: sess.client_addr(),
        client_host: sess.host(),
        proxy_protocol: sess.proxy_protocol(),
        smtp: (method == AuthMethod::None).then_some(SmtpEnvelope { helo, from, to }),
        ssl: sess.client_tls(pool, ahcf.pass_client_cert != 0),
        extra_headers: ahcf.extra_headers(),
        keepalive: ahcf.keepalive > 0,
    };
    let salted = req.salted();
    // the digest goes to the auth server; only Auth-Pass may log in, so
    // the password is forgotten once an answer is in (a next server gets
    // the same request meanwhile)
    sess.with_state(|auth: &mut AuthState| auth.salted = salted);
    req.build()
}

/// `ngx_mail_auth_http_init`: a new question to the auth servers (a login,
/// or asking again after `WAIT`), with the whole `auth_http_timeout`.
pub(super) fn start(sess: Session) {
    sess.set_action(c"in http auth state");
    let deadline = now().wrapping_add(conf::conf(sess).timeout);
    sess.with_state(|auth: &mut AuthState| {
        auth.tried = Tried::default();
        auth.deadline = deadline;
    });
    ask(sess);
}

/// Sends the request to the next server in turn.
fn ask(sess: Session) {
    let log = sess.log();
    let ahcf = conf::conf(sess);
    let Some(mut tried) = sess.with_state(|auth: &mut AuthState| auth.tried) else {
        return sess.internal_server_error();
    };
    let i = match ahcf.pick(&mut tried, u64::try_from(now()).unwrap_or(u64::MAX)) {
        Pick::Server(i) => i,
        Pick::Revived(i) => {
            mail_log!(
                LOG_WARN,
                log,
                "no live auth http servers, asking them again"
            );
            i
        }
        // the last server's failure is logged
        Pick::Exhausted => return fail(sess),
    };
    let Some(server) = ahcf.server(i) else {
        return sess.internal_server_error();
    };
    let Some(pool) = Pool::create(2048, log) else {
        return sess.internal_server_error();
    };
    sess.with_state(|auth: &mut AuthState| {
        auth.tried = tried;
        auth.server = i;
    });
    let request = build_request(sess, pool, server);
    let Some(mut attempt) = PeerRequest::new(pool, &request, RESPONSE_LIMIT) else {
        return sess.internal_server_error();
    };
    let kept = (ahcf.keepalive > 0)
        .then(|| keepalive::take(server.peer()))
        .flatten();
    let connect = match kept {
        Some(c) => {
            crate::mail_debug!(log, "mail auth http reusing a kept connection");
            attempt.adopt(c);
            Connect::Done(c)
        }
        None => attempt.connect(server.peer(), log),
    };
    // without our state the attempt is dropped with the closure, which
    // frees its pool
    let deadline = sess.with_state(|auth: &mut AuthState| {
        auth.attempt = Some(attempt);
        auth.reused = kept.is_some();
        auth.draining = None;
        auth.deadline
    });
    let Some(deadline) = deadline else {
        return sess.internal_server_error();
    };
    launch(sess, connect, left(deadline).max(1));
}

/// A kept connection failed before any byte of the answer (the server
/// closed it while it was idle): the request once more, to the same
/// server on a new connection, within what is left of `auth_http_timeout`.
pub(super) fn retry(sess: Session) {
    crate::mail_debug!(sess.log(), "mail auth http kept connection lost, retrying");
    let log = sess.log();
    let Some(server) = current(sess) else {
        return fail(sess);
    };
    let connect = sess
        .with_state(|auth: &mut AuthState| {
            auth.reused = false;
            let attempt = auth.attempt.as_mut()?;
            attempt.restart();
            Some((attempt.connect(server.peer(), log), auth.deadline))
        })
        .flatten();
    let Some((connect, deadline)) = connect else {
        return fail(sess);
    };
    launch(sess, connect, left(deadline).max(1));
}

/// Hands the attempt's connection (new or kept) its handlers and timers.
fn launch(sess: Session, connect: Connect, timeout: ngx_msec_t) {
    let (pc, now) = match connect {
        Connect::Failed => return server_failed(sess),
        Connect::Pending(pc) => (pc, false),
        Connect::Done(pc) => (pc, true),
    };
    pc.set_data(sess.raw().cast());
    pc.set_pool(sess.pool_handle());
    pc.set_log(sess.log());
    sess.read_event().set_handler(block_read);
    pc.read().set_handler(read_handler);
    pc.write().set_handler(write_handler);
    pc.read().add_timer(timeout);
    pc.write().add_timer(timeout);
    if now {
        pc.write().call();
    }
}

/// The server could not be connected to, timed out, or sent what cannot be
/// read (logged already). With `auth_http` that is stock's error; with
/// `auth_http_server`s the failure is counted and the next server asked,
/// while `auth_http_timeout` lasts.
pub(super) fn server_failed(sess: Session) {
    let ahcf = conf::conf(sess);
    if !ahcf.failover() {
        return fail(sess);
    }
    finish(sess);
    let Some((i, deadline)) = sess.with_state(|auth: &mut AuthState| (auth.server, auth.deadline))
    else {
        return fail(sess);
    };
    if ahcf.failed(i, u64::try_from(now()).unwrap_or(u64::MAX)) {
        if let Some(server) = ahcf.server(i) {
            mail_log!(
                LOG_WARN,
                sess.log(),
                "auth http server {} temporarily disabled",
                shown(server.peer_name())
            );
        }
    }
    if left(deadline) == 0 {
        return fail(sess);
    }
    ask(sess);
}

/// A whole answer: the server is well.
pub(super) fn server_answered(sess: Session) {
    let ahcf = conf::conf(sess);
    if !ahcf.failover() {
        return;
    }
    if let Some(i) = sess.with_state(|auth: &mut AuthState| auth.server) {
        ahcf.succeeded(i);
    }
}
