//! The auth_http client on nginx's event loop: one new connection per
//! attempt as stock, or with `auth_http_keepalive` a kept one when the
//! worker has one; the request built and the response judged by mail-core.

use mail_core::auth_http::failover::Tried;
use mail_core::auth_http::{decide, Decision, ParseError};
use mail_core::sasl::{self, Refusal};
use nginx_sys::ngx_msec_t;

use super::attempt::{current, retry, server_answered, server_failed, start, time_left};
use super::read::{read_some, Draining, Read};
use super::{conf, keepalive};
use crate::ffi::{shown, ETIMEDOUT, LOG_ERR, LOG_INFO};
use crate::mail_log;
use crate::nginx::{Event, Io};
use crate::peer::PeerRequest;
use crate::session::Session;
use crate::state::{ClientDialogue, Handover};

/// The auth stage's per-session state, in the auth_http module's slot: the
/// login asked for, the request in flight, and what a sleep ends in.
pub struct AuthState {
    pub(super) handover: Handover,
    pub(super) attempt: Option<PeerRequest>,
    /// True while the session sleeps on `Auth-Wait` before asking again
    /// (false: it sleeps before telling the client of a refusal).
    wait: bool,
    /// A bearer token login refused with `Auth-Error-SASL`: the challenge
    /// is the reply, and this answers the client's dummy response.
    sasl_refusal: Option<Refusal>,
    /// The attempt's connection was kept from an earlier login and has not
    /// answered yet: if the server closed it meanwhile, one retry on a new
    /// connection.
    pub(super) reused: bool,
    /// A kept-alive response whose headers are in: the answer, held until
    /// the body is read to its end so that the connection can be reused.
    pub(super) draining: Option<Draining>,
    /// When `auth_http_timeout` runs out for this request: a retry or the
    /// next server gets what is left of it, never more.
    pub(super) deadline: ngx_msec_t,
    /// The server asked (its index in the conf's list), and the ones this
    /// request asked before.
    pub(super) server: usize,
    pub(super) tried: Tried,
    /// APOP or CRAM-MD5: the password is forgotten once an answer is in.
    pub(super) salted: bool,
    /// `auth_http_cache`: the login's key, when its answer may be kept,
    /// and the answer as read (up to 1024 bytes) until it is judged.
    pub(super) cache_key: Option<[u8; 32]>,
    pub(super) cache_raw: Vec<u8>,
    /// An answer found in the cache, for the posted event that acts on it.
    pub(super) cached: Option<Vec<u8>>,
}

/// The client said enough: ask the auth server (`ngx_mail_auth`).
pub fn start_login(sess: Session, handover: Handover) {
    crate::observe::auth_started(sess, handover.method);
    sess.set_state(AuthState {
        handover,
        attempt: None,
        wait: false,
        sasl_refusal: None,
        reused: false,
        draining: None,
        deadline: 0,
        server: 0,
        tried: Tried::default(),
        salted: false,
        cache_key: None,
        cache_raw: Vec::new(),
        cached: None,
    });
    match sess.buffer() {
        Some(b) if b.is_empty() => b.reset(),
        // commands pipelined behind this one run once the answer (or a
        // refusal) is out: ngx_mail_send re-runs a blocked session
        Some(_) => sess.set_blocked(true),
        None => {}
    }
    sess.read_event().del_timer();
    sess.count_login_attempt();
    #[cfg(ngx_mail_ssl)]
    if super::cache::answer_from_cache(sess) {
        return;
    }
    start(sess);
}

/// Ends the attempt in flight, if any (dropped once our state is no
/// longer borrowed: that closes its connection and frees its pool).
pub(super) fn finish(sess: Session) {
    drop(
        sess.with_state(|auth: &mut AuthState| auth.attempt.take())
            .flatten(),
    );
}

pub(super) fn fail(sess: Session) {
    crate::observe::auth_failed(sess, false);
    finish(sess);
    sess.internal_server_error();
}

fn peer_name(sess: Session) -> crate::ffi::Shown<'static> {
    shown(current(sess).map(|s| s.peer_name()).unwrap_or_default())
}

crate::event_handler!(pub(super) block_read => client_event);

/// The client talks while the auth server is asked: that waits.
fn client_event(sess: Session, rev: Event) {
    // the attempt in flight goes with our state
    if sess.ends_at_shutdown() {
        return;
    }
    if !rev.handle_read() {
        fail(sess);
    }
}

/// The auth server timed out: true when it did (the session is gone).
fn timed_out(ev: Event, sess: Session) -> bool {
    if !ev.timedout() {
        return false;
    }
    mail_log!(LOG_ERR, ev.log(), errno = ETIMEDOUT;
        "auth http server {} timed out", peer_name(sess));
    crate::observe::auth_failed(sess, true);
    server_failed(sess);
    true
}

crate::event_handler!(pub(super) write_handler => send_request);

fn send_request(sess: Session, wev: Event) {
    let pc = wev.connection();
    crate::mail_debug!(pc.log(), "mail auth http write handler");
    if sess.peer_ends_at_shutdown(pc, finish) || timed_out(wev, sess) {
        return;
    }
    // the send runs with the attempt borrowed; what may end the session
    // runs after
    let sent = sess
        .with_state(|auth: &mut AuthState| {
            let attempt = auth.attempt.as_mut()?;
            match pc.send(attempt.unsent()) {
                // a kept connection the server reset meanwhile
                Io::Error if auth.reused => Some(Err(())),
                Io::Error => None,
                Io::Done(n) => {
                    attempt.mark_sent(n);
                    Some(Ok(attempt.unsent().is_empty()))
                }
                Io::Again | Io::Closed => Some(Ok(false)),
            }
        })
        .flatten();
    match sent {
        None => server_failed(sess),
        Some(Err(())) => retry(sess),
        Some(Ok(true)) => {
            wev.set_handler(nothing_to_send);
            wev.del_timer();
            if !wev.handle_write() {
                fail(sess);
            }
        }
        Some(Ok(false)) => {
            if !wev.timer_set() {
                wev.add_timer(time_left(sess));
            }
        }
    }
}

crate::event_handler!(nothing_to_send => ignore);

fn ignore(_sess: Session, _ev: Event) {}

crate::event_handler!(pub(super) read_handler => read_response);

fn read_response(sess: Session, rev: Event) {
    let pc = rev.connection();
    crate::mail_debug!(pc.log(), "mail auth http read handler");
    if sess.peer_ends_at_shutdown(pc, finish) || timed_out(rev, sess) {
        return;
    }
    let keepalive = conf::conf(sess).keepalive > 0;
    // epoll reports readiness once per arrival: read until there is nothing
    // more (a kept-alive body may be longer than the buffer)
    let read = loop {
        // the read and the parse run with the attempt borrowed; what may
        // end the session runs after
        let read = sess
            .with_state(|auth: &mut AuthState| read_some(sess, auth, pc, keepalive))
            .unwrap_or(Read::Failed);
        match read {
            Read::More if rev.ready() => continue,
            Read::More | Read::Again => return,
            read => break read,
        }
    };
    let (resp, reusable) = match read {
        Read::Again | Read::More => return,
        Read::Retry => return retry(sess),
        Read::Failed => return server_failed(sess),
        Read::Full => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} sent invalid header in response",
                peer_name(sess)
            );
            return server_failed(sess);
        }
        Read::Invalid(e) => {
            let what = match e {
                ParseError::InvalidResponse => "invalid response",
                ParseError::InvalidHeader | ParseError::InvalidLength | ParseError::Chunked => {
                    "invalid header in response"
                }
            };
            mail_log!(
                LOG_ERR,
                sess.log(),
                "auth http server {} sent {}",
                peer_name(sess),
                what
            );
            return server_failed(sess);
        }
        Read::Whole(resp, reusable) => (*resp, reusable),
    };
    server_answered(sess);
    if let Some(server) = current(sess).filter(|_| reusable) {
        let ahcf = conf::conf(sess);
        let kept = sess
            .with_state(|auth: &mut AuthState| auth.attempt.as_mut().and_then(PeerRequest::release))
            .flatten();
        if let Some(c) = kept {
            keepalive::keep(c, server.peer(), ahcf.keepalive, ahcf.keepalive_timeout);
        }
    }
    finish(sess);
    #[cfg(ngx_mail_ssl)]
    super::cache::store(sess, &resp);
    judge(sess, resp);
}

/// What the answer (from the server or the cache) decides, done.
pub(super) fn judge(sess: Session, resp: mail_core::auth_http::Response) {
    if sess.with_state(|auth: &mut AuthState| auth.salted) == Some(true) {
        // the digest went to the auth server; only Auth-Pass may log in
        sess.forget_password();
    }
    crate::mail_debug!(sess.log(), "mail auth http process headers");
    let have_password = sess.passwd().is_some();
    // judged with the auth state borrowed; acted on after
    let judged = sess.with_state(|auth: &mut AuthState| {
        let decision = decide(resp, have_password, auth.handover.password_required());
        let refusal = match &decision {
            Decision::Refused {
                text,
                error_code,
                sleep,
                sasl,
            } => Some(refuse(auth, text, error_code.as_deref(), *sleep, sasl)),
            _ => None,
        };
        // what the sleep after this answer ends in (sleep_handler)
        auth.wait = matches!(decision, Decision::Wait { .. });
        (decision, refusal, auth.sasl_refusal.is_some())
    });
    let Some((decision, refusal, challenged)) = judged else {
        return sess.internal_server_error();
    };
    act_on(sess, decision, refusal, challenged);
}

/// The client's reply to a refusal: the refusal itself, or for a bearer
/// token login with `Auth-Error-SASL` the error challenge (`+ value`,
/// `334 value`), the refusal kept for the client's dummy response, and the
/// session ending after it when there is no `Auth-Wait` (freenginx).
fn refuse(
    auth: &mut AuthState,
    text: &[u8],
    error_code: Option<&[u8]>,
    sleep: u64,
    sasl: &Option<Vec<u8>>,
) -> Vec<u8> {
    let reply = auth.handover.refusal(text, error_code);
    let method = auth.handover.method;
    let Some(value) = sasl.as_deref().filter(|_| method.takes_sasl_error()) else {
        return reply;
    };
    let prefix: &[u8] = match auth.handover.client {
        ClientDialogue::Smtp { .. } => b"334 ",
        _ => b"+ ",
    };
    auth.sasl_refusal = Some(Refusal {
        method,
        reply,
        quit: sleep == 0,
    });
    sasl::error_challenge(prefix, value)
}

/// What the auth server decided, done.
fn act_on(sess: Session, decision: Decision, refusal: Option<Vec<u8>>, challenged: bool) {
    crate::observe::auth_decided(sess, &decision);
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
            match (sleep, challenged) {
                (0, false) => {
                    sess.set_quit();
                    sess.send();
                }
                // the challenge goes out now; the refusal ends the session
                (0, true) => back_to_client(sess, sess.read_event()),
                _ => sleep_for(sess, sleep),
            }
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
            smtp_auth,
            tls,
            tls_name,
        } => {
            if login.is_some_and(|l| !sess.set_login(&l))
                || passwd.is_some_and(|p| !sess.set_passwd(&p))
            {
                return sess.internal_server_error();
            }
            // the auth stage is over; the login goes on to the proxy
            let Some(mut auth) = sess.take_state::<AuthState>() else {
                return sess.internal_server_error();
            };
            auth.handover.smtp_auth = smtp_auth;
            auth.handover.backend_tls = tls;
            auth.handover.backend_tls_name = tls_name;
            if !crate::limit::conn::admit(sess, &auth.handover) {
                return;
            }
            crate::proxy::upstream::connect(sess, addr, &name, auth.handover);
        }
    }
}

fn sleep_for(sess: Session, seconds: u64) {
    crate::mail_debug!(sess.log(), "mail auth sleep {}s", seconds);
    let ms = seconds.saturating_mul(1000).min(ngx_msec_t::MAX as u64 / 2) as ngx_msec_t;
    let rev = sess.read_event();
    rev.add_timer(ms);
    rev.set_handler(sleep_handler);
}

crate::event_handler!(
    /// After `Auth-Wait`: ask again, or tell the client of the refusal and
    /// let it try again.
    sleep_handler => wake
);

fn wake(sess: Session, rev: Event) {
    crate::mail_debug!(sess.log(), "mail auth sleep handler");
    if sess.ends_at_shutdown() {
        return;
    }
    if !rev.timedout() {
        if rev.active() && !rev.handle_read() {
            sess.close();
        }
        return;
    }
    rev.set_timedout(false);
    // true: ask the auth server again; false: the refusal goes out and the
    // client may try again, so the auth stage is over
    let Some(ask_again) = sess.with_state(|auth: &mut AuthState| auth.wait) else {
        return sess.close();
    };
    if ask_again {
        return start(sess);
    }
    back_to_client(sess, rev);
}

/// The refusal (or the error challenge) goes out and the client may answer
/// or try again: the auth stage is over (`ngx_mail_auth_send_error`).
fn back_to_client(sess: Session, rev: Event) {
    let refusal = sess
        .take_state::<AuthState>()
        .and_then(|auth| auth.sasl_refusal);
    if let Some(refusal) = refusal {
        // for the protocol stage, in this module's slot
        sess.set_state(refusal);
    }
    // A retry starts from nothing: no password or digest of the refused
    // attempt may reach the next request (CVE-2026-27651 class).
    sess.forget_password();
    // back to the protocol's auth state, through nginx's own table
    let Some(auth_state) = sess.protocol_auth_state() else {
        return sess.internal_server_error();
    };
    rev.set_handler(auth_state);
    sess.set_action(c"in auth state");
    // the connection's struct outlives a close that frees the session
    let c = sess.client();
    sess.send();
    if c.destroyed() {
        return;
    }
    rev.add_timer(sess.core_conf().timeout);
    if rev.ready() {
        return rev.call();
    }
    let _ = sess.handle_read_event();
}
