//! Observability: the per-session record, written by `access_log` and
//! counted by `metrics_zone`. The other stages call the hooks below, one
//! line each; all that they do is here.

mod access_log;
#[cfg(ngx_http)]
pub mod http;
/// Without http in nginx: the module entry only, which nginx never uses.
#[cfg(not(ngx_http))]
#[path = "http_absent.rs"]
pub mod http;
mod metrics;
pub mod module;
mod record;
mod tls;

pub use record::{auth_started, backend_connected, backend_connecting, ended, logged_in, start};

use mail_core::auth_http::Decision;
use mail_core::session_log::AuthResult;

use crate::session::Session;

/// The auth server's answer, judged (`Wait` is not an answer yet).
pub fn auth_decided(sess: Session, decision: &Decision) {
    match decision {
        Decision::Wait { .. } => {}
        Decision::Proxy { .. } => record::auth_done(sess, AuthResult::Ok, None),
        Decision::Refused { text, sleep, .. } => {
            record::with(sess, |r| r.refused_close = *sleep == 0);
            record::auth_done(sess, AuthResult::Refused, Some(text))
        }
        _ => record::auth_done(sess, AuthResult::Error, None),
    }
}

/// The auth server failed or timed out.
pub fn auth_failed(sess: Session, timeout: bool) {
    let result = if timeout {
        AuthResult::Timeout
    } else {
        AuthResult::Error
    };
    record::auth_done(sess, result, None);
}

/// A worker exits.
pub fn exit_process() {
    record::free_retired();
}
