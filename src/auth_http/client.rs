//! The auth_http client on nginx's event loop: one new connection per
//! attempt, the request built and the response judged by mail-core.

use mail_core::auth_http::{decide, parse_response, Decision, ParseError, Request, SmtpEnvelope};
use mail_core::sasl::{self, Refusal};
use mail_core::AuthMethod;
use nginx_sys::ngx_msec_t;

use super::conf;
use crate::ffi::{shown, ETIMEDOUT, LOG_ERR, LOG_INFO};
use crate::mail_log;
use crate::nginx::{Event, Io, Pool};
use crate::peer::{Connect, PeerRequest};
use crate::session::Session;
use crate::state::{ClientDialogue, Handover};

/// nginx reads at most this much of an auth response, as stock does.
const RESPONSE_LIMIT: usize = 1024;

/// The auth stage's per-session state, in the auth_http module's slot: the
/// login asked for, the request in flight, and what a sleep ends in.
pub struct AuthState {
    handover: Handover,
    attempt: Option<PeerRequest>,
    /// True while the session sleeps on `Auth-Wait` before asking again
    /// (false: it sleeps before telling the client of a refusal).
    wait: bool,
    /// A bearer token login refused with `Auth-Error-SASL`: the challenge
    /// is the reply, and this answers the client's dummy response.
    sasl_refusal: Option<Refusal>,
}

/// The client said enough: ask the auth server (`ngx_mail_auth`).
pub fn start_login(sess: Session, handover: Handover) {
    crate::observe::auth_started(sess, handover.method);
    sess.set_state(AuthState {
        handover,
        attempt: None,
        wait: false,
        sasl_refusal: None,
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
    start(sess);
}

/// The request for this attempt, its TLS strings in `pool`.
fn build_request(sess: Session, pool: Pool) -> Vec<u8> {
    let ahcf = conf::conf(sess);
    let method = sess
        .with_state(|auth: &mut AuthState| auth.handover.method)
        .unwrap_or(AuthMethod::Plain);
    let (helo, from, to) = sess.envelope();
    let req = Request {
        uri: ahcf.uri(),
        host: ahcf.host_header(),
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
    };
    let out = req.build();
    if req.salted() {
        // the digest went to the auth server; only Auth-Pass may log in
        sess.forget_password();
    }
    out
}

/// `ngx_mail_auth_http_init`: connect and send one request.
fn start(sess: Session) {
    sess.set_action(c"in http auth state");
    let log = sess.log();
    let ahcf = conf::conf(sess);
    let Some(pool) = Pool::create(2048, log) else {
        return sess.internal_server_error();
    };
    let request = build_request(sess, pool);
    let Some(mut attempt) = PeerRequest::new(pool, &request, RESPONSE_LIMIT) else {
        return sess.internal_server_error();
    };
    let connect = attempt.connect(ahcf.peer(), log);
    // without our state the attempt is dropped with the closure, which
    // frees its pool
    if sess
        .with_state(|auth: &mut AuthState| auth.attempt = Some(attempt))
        .is_none()
    {
        return sess.internal_server_error();
    }
    let (pc, now) = match connect {
        Connect::Failed => return fail(sess),
        Connect::Pending(pc) => (pc, false),
        Connect::Done(pc) => (pc, true),
    };
    pc.set_data(sess.raw().cast());
    pc.set_pool(sess.pool_handle());
    sess.read_event().set_handler(block_read);
    pc.read().set_handler(read_handler);
    pc.write().set_handler(write_handler);
    pc.read().add_timer(ahcf.timeout);
    pc.write().add_timer(ahcf.timeout);
    if now {
        pc.write().call();
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
    crate::observe::auth_failed(sess, false);
    finish(sess);
    sess.internal_server_error();
}

fn peer_name(sess: Session) -> crate::ffi::Shown<'static> {
    shown(conf::conf(sess).peer_name())
}

crate::event_handler!(block_read => client_event);

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
    fail(sess);
    true
}

crate::event_handler!(write_handler => send_request);

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
                Io::Error => None,
                Io::Done(n) => {
                    attempt.mark_sent(n);
                    Some(attempt.unsent().is_empty())
                }
                Io::Again | Io::Closed => Some(false),
            }
        })
        .flatten();
    match sent {
        None => fail(sess),
        Some(true) => {
            wev.set_handler(nothing_to_send);
            wev.del_timer();
            if !wev.handle_write() {
                fail(sess);
            }
        }
        Some(false) => {
            if !wev.timer_set() {
                wev.add_timer(conf::conf(sess).timeout);
            }
        }
    }
}

crate::event_handler!(nothing_to_send => ignore);

fn ignore(_sess: Session, _ev: Event) {}

/// What one read of the auth response gave.
enum Read {
    Again,
    Failed,
    /// RESPONSE_LIMIT bytes and still no whole header.
    Full,
    Parsed(Result<Option<mail_core::auth_http::Response>, ParseError>),
}

crate::event_handler!(read_handler => read_response);

fn read_response(sess: Session, rev: Event) {
    let pc = rev.connection();
    crate::mail_debug!(pc.log(), "mail auth http read handler");
    if sess.peer_ends_at_shutdown(pc, finish) || timed_out(rev, sess) {
        return;
    }
    // the read and the parse run with the attempt borrowed; what may end
    // the session runs after
    let read = sess
        .with_state(|auth: &mut AuthState| {
            let Some(attempt) = auth.attempt.as_mut() else {
                return Read::Failed;
            };
            let room = attempt.room();
            if room.is_empty() {
                return Read::Full;
            }
            match pc.recv(room) {
                Io::Again => Read::Again,
                Io::Error | Io::Closed => Read::Failed,
                Io::Done(n) => {
                    attempt.mark_received(n);
                    Read::Parsed(parse_response(attempt.response()))
                }
            }
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
    // limit_conn may be keyed by the auth server's headers
    sess.with_state(|auth: &mut AuthState| {
        if let Some(attempt) = &auth.attempt {
            crate::limit::conn::keep_auth_keys(sess, attempt.response());
        }
    });
    finish(sess);
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
