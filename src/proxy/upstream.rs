//! Connecting to the backend the auth server named, and the login dialogue
//! (`ngx_mail_proxy_init` and the per-protocol proxy handlers).

use std::net::SocketAddr;

use mail_core::upstream::UpstreamStep;

use super::conf;
use super::login::LoginState;
use crate::ffi::{shown, ETIMEDOUT, LOG_ERR, LOG_INFO};
use crate::mail_log;
use crate::nginx::{Conn, Event, Io};
use crate::peer::Connect;
use crate::session::Session;
use crate::session_proxy::ProxyHeader;
use crate::state::Handover;

pub fn internal_server_error(sess: Session) {
    sess.close_upstream();
    sess.internal_server_error();
}

/// The backend failed during login: the client gets `s->out` if the
/// backend's own error was kept, else the protocol's internal error.
fn upstream_error(sess: Session) {
    sess.close_upstream();
    if !sess.sending() {
        return sess.internal_server_error();
    }
    sess.set_quit();
    sess.send();
}

/// `ngx_mail_proxy_init`: connect to `addr`, then run the login dialogue.
pub fn connect(sess: Session, addr: SocketAddr, name: &[u8], handover: Handover) {
    sess.set_action(c"connecting to upstream");
    crate::observe::backend_connecting(sess, addr);
    let pcf = conf::conf(sess);
    if !sess.create_proxy(addr, name) {
        return sess.internal_server_error();
    }
    sess.set_state(LoginState::new(sess, &handover));
    #[cfg(ngx_mail_ssl)]
    let _ = super::ssl::choose(sess, addr, name, &handover);
    let (uc, now) = match sess.connect_upstream() {
        Connect::Failed => return internal_server_error(sess),
        Connect::Pending(uc) => (uc, false),
        Connect::Done(uc) => (uc, true),
    };
    uc.read().add_timer(sess.core_conf().timeout);
    uc.set_data(sess.raw().cast());
    uc.set_pool(sess.pool_handle());
    sess.read_event().set_handler(block_read);
    uc.write().set_handler(write_handler);
    if !sess.create_proxy_buffer(pcf.buffer_size) {
        return internal_server_error(sess);
    }
    sess.set_proxy_protocol_pending(pcf.proxy_protocol != 0);
    sess.clear_out();
    uc.read().set_handler(login_handler);
    if now {
        uc.write().call();
    }
}

crate::event_handler!(block_read => client_event);

/// The client talks during the backend login: that waits.
fn client_event(sess: Session, rev: Event) {
    if sess.client().closing() {
        sess.close_upstream();
        let _ = sess.ends_at_shutdown();
        return;
    }
    if !rev.handle_read() {
        sess.close_upstream();
        sess.close();
    }
}

crate::event_handler!(write_handler => connected);

fn connected(sess: Session, wev: Event) {
    let uc = wev.connection();
    crate::mail_debug!(uc.log(), "mail proxy write handler");
    if sess.peer_ends_at_shutdown(uc, Session::close_upstream) {
        return;
    }
    if sess.proxy_protocol_pending() {
        if !send_proxy_protocol(sess, uc) {
            return;
        }
        sess.set_proxy_protocol_pending(false);
    }
    // the handshake comes before anything of the login dialogue
    #[cfg(ngx_mail_ssl)]
    if super::ssl::pending(sess, uc) {
        return super::ssl::start(sess, uc);
    }
    if !wev.handle_write() {
        return internal_server_error(sess);
    }
    crate::observe::backend_connected(sess);
    if uc.read().ready() {
        uc.read().post();
    }
}

/// The backend's handshake is over and verified: its events are ours
/// again, and the login dialogue starts. The read is posted, not waited
/// for: OpenSSL may hold the backend's greeting already.
#[cfg(ngx_mail_ssl)]
pub fn tls_ready(sess: Session, uc: Conn) {
    uc.read().set_handler(login_handler);
    uc.write().set_handler(write_handler);
    if !uc.write().handle_write() {
        return internal_server_error(sess);
    }
    crate::observe::backend_connected(sess);
    // after STARTTLS the login dialogue reads the greeting first again
    // (the backend sends none now), or waits for ManageSieve's capabilities
    if let Some(Some(greeting)) = super::ssl::take_greeting(sess) {
        let Some(b) = sess.proxy_buffer() else {
            return internal_server_error(sess);
        };
        b.reset();
        if !b.fill(&greeting) {
            return internal_server_error(sess);
        }
        return take_step(sess, uc, b);
    }
    uc.read().post();
}

/// Sends the PROXY header (v1, or v2 with `proxy_protocol v2`) in one
/// write; false when the caller must stop.
fn send_proxy_protocol(sess: Session, uc: Conn) -> bool {
    sess.set_action(c"sending PROXY protocol header to upstream");
    let mut v1: ProxyHeader = [0; core::mem::size_of::<ProxyHeader>()];
    let v2;
    let header = if conf::conf(sess).proxy_protocol == conf::PROXY_PROTOCOL_V2 {
        v2 = super::proxy_v2::header(sess.client());
        v2.as_deref()
    } else {
        sess.proxy_protocol_header(&mut v1)
            .and_then(|size| v1.get(..size))
    };
    let Some(header) = header else {
        internal_server_error(sess);
        return false;
    };
    let size = header.len();
    match uc.send(header) {
        Io::Again => {
            if !uc.write().handle_write() {
                internal_server_error(sess);
            }
            false
        }
        Io::Done(n) if n == size => true,
        Io::Error => {
            internal_server_error(sess);
            false
        }
        _ => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "could not send PROXY protocol header at once"
            );
            internal_server_error(sess);
            false
        }
    }
}

crate::event_handler!(
    /// Reads the backend's replies and answers them until logged in.
    login_handler => backend_reply
);

fn backend_reply(sess: Session, rev: Event) {
    let uc = rev.connection();
    crate::mail_debug!(
        uc.log(),
        "mail proxy {} auth handler",
        shown(sess.protocol_name())
    );
    if sess.peer_ends_at_shutdown(uc, Session::close_upstream) {
        return;
    }
    if rev.timedout() {
        mail_log!(LOG_INFO, uc.log(), errno = ETIMEDOUT; "upstream timed out");
        uc.set_timedout();
        return internal_server_error(sess);
    }
    // the header and the handshake come before anything is read: epoll
    // reports a greeting that came with the connect before the write event,
    // and answering it here would send the login in plain text
    #[cfg(ngx_mail_ssl)]
    let handshake_pending = super::ssl::pending(sess, uc);
    #[cfg(not(ngx_mail_ssl))]
    let handshake_pending = false;
    if sess.proxy_protocol_pending() || handshake_pending {
        if !uc.read().handle_read() {
            internal_server_error(sess);
        }
        return;
    }
    sess.set_action(c"reading response from upstream");
    let Some(b) = sess.proxy_buffer() else {
        return internal_server_error(sess);
    };
    match b.read_from(uc) {
        Io::Error | Io::Closed => return upstream_error(sess),
        Io::Again => {
            if !uc.read().handle_read() {
                internal_server_error(sess);
            }
            return;
        }
        Io::Done(_) => {}
    }
    take_step(sess, uc, b)
}

/// Runs the dialogue on what the proxy buffer holds.
fn take_step(sess: Session, uc: Conn, b: crate::nginx::Buf) {
    let (data, full) = (b.pending(), b.is_full());
    // the STARTTLS dialogue comes first, while it runs
    #[cfg(ngx_mail_ssl)]
    let upgrading = super::ssl::upgrade_step(sess, data, full);
    #[cfg(not(ngx_mail_ssl))]
    let upgrading = None;
    // the step is taken with the dialogue borrowed; what may end the
    // session runs after
    let stepped = upgrading.or_else(|| {
        sess.with_state(|dialogue: &mut LoginState| {
            let step = dialogue.on_data(data, full);
            (step, dialogue.action())
        })
    });
    let Some((step, action)) = stepped else {
        return internal_server_error(sess);
    };
    match step {
        UpstreamStep::NeedMore => {
            if !uc.read().handle_read() {
                internal_server_error(sess);
            }
        }
        UpstreamStep::TooLong => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "upstream sent too long response line: \"{}\"",
                shown(data)
            );
            upstream_error(sess);
        }
        UpstreamStep::Refused { line } => {
            if conf::conf(sess).pass_error_message == 0 {
                mail_log!(
                    LOG_ERR,
                    sess.log(),
                    "upstream sent invalid response: \"{}\"",
                    shown(&line)
                );
            } else {
                mail_log!(
                    LOG_INFO,
                    sess.log(),
                    "upstream sent invalid response: \"{}\"",
                    shown(&line)
                );
                if !sess.set_out(data) {
                    return internal_server_error(sess);
                }
            }
            upstream_error(sess);
        }
        UpstreamStep::Send(line) => {
            sess.set_action(action);
            crate::mail_debug!(uc.log(), "mail proxy send: {:?}", action);
            // an incomplete write of one short line is treated as an error,
            // as stock does
            if uc.send(&line) != Io::Done(line.len()) {
                return internal_server_error(sess);
            }
            if !uc.read().handle_read() {
                return internal_server_error(sess);
            }
            b.reset();
        }
        UpstreamStep::LoggedIn => {
            sess.forget_login();
            super::relay::start(sess)
        }
        UpstreamStep::LoggedInReplacing(reply) => {
            // proxy_buffer is at least a page, far more than this one line
            if !b.fill(reply) {
                return internal_server_error(sess);
            }
            sess.forget_login();
            super::relay::start(sess)
        }
        UpstreamStep::Failed(reason) => {
            mail_log!(LOG_ERR, sess.log(), "{}", reason);
            internal_server_error(sess)
        }
        // what the backend sent after its positive reply came in plain
        // text: dropped unread, never taken as protected
        #[cfg(ngx_mail_ssl)]
        UpstreamStep::StartTls => {
            b.reset();
            super::ssl::start(sess, uc)
        }
        #[cfg(not(ngx_mail_ssl))]
        UpstreamStep::StartTls => internal_server_error(sess),
    }
}
