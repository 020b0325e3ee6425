//! `limit_conn`: applied where freenginx applies it, once the auth server
//! answered OK and its backend address and port were found valid, before
//! the backend is connected to. So the user name the auth server returned
//! (`Auth-User`) and its other response headers can be the key, and what
//! is limited is logged-in sessions. A session over a zone's number gets
//! its protocol's refusal and is closed; its counts go when it ends,
//! however it ends (`Session::ended`, and the pool's cleanup).

use mail_core::limit::{auth_http_value, Key, IMAP_REFUSAL, MAX_KEY_LEN};
use mail_core::limit::{POP3_REFUSAL, SMTP_REFUSAL};

use super::conf::conf;
use super::zone::Acquire;
use super::Limits;
use crate::ffi::{shown, LOG_ERR};
use crate::session::Session;
use crate::state::{ClientDialogue, Handover};

/// The auth server's header values a server's `$auth_http_*` keys name,
/// one per `limit_conn` (empty for other keys), kept from its response
/// (which goes with the request) until `admit`.
pub struct AuthKeys(Vec<Vec<u8>>);

/// The auth server's whole `response`, just parsed: keeps what this
/// server's limits are keyed by, if any are keyed by its headers.
pub fn keep_auth_keys(sess: Session, response: &[u8]) {
    let lccf = conf(sess);
    if !lccf.auth_http_keys {
        return;
    }
    let values = lccf
        .limits()
        .map(|(zone, _)| match &zone.key {
            Key::AuthHttp(name) => auth_http_value(response, name),
            _ => Vec::new(),
        })
        .collect();
    sess.set_state(AuthKeys(values));
}

/// Counts the session in each of its server's `limit_conn` zones. False
/// when it must not go on: it was refused (its reply is on its way and
/// the session closes after it) or failed (internal error sent).
#[must_use = "false: the session was refused and is closing"]
pub fn admit(sess: Session, handover: &Handover) -> bool {
    let lccf = conf(sess);
    let keys = sess.take_state::<AuthKeys>();
    if lccf.limits().next().is_none() {
        return true;
    }
    // as freenginx: the lines below say no "while ..."
    sess.clear_action();
    let dry_run = lccf.dry_run != 0;
    let mut leases = Vec::new();
    for (i, (zone, limit)) in lccf.limits().enumerate() {
        let key: &[u8] = match &zone.key {
            Key::RemoteUser => sess.login(),
            Key::RemoteAddr => sess.client_addr(),
            Key::AuthHttp(_) => keys
                .as_ref()
                .and_then(|k| k.0.get(i))
                .map_or(&[][..], Vec::as_slice),
        };
        crate::mail_debug!(sess.log(), "limit conn key: \"{}\"", shown(key));
        if key.is_empty() {
            continue;
        }
        if key.len() > MAX_KEY_LEN {
            crate::mail_log!(
                LOG_ERR,
                sess.log(),
                "the value of the \"{}\" key is more than 255 bytes: \"{}\"",
                shown(&zone.key_text),
                shown(key)
            );
            continue;
        }
        match zone.acquire(key, limit.conn) {
            Acquire::Counted { lease, conn } => {
                crate::mail_debug!(sess.log(), "limit conn: {:08X} {}", lease.hash(), conn);
                leases.push(lease);
            }
            Acquire::Full => {
                crate::mail_log!(
                    lccf.log_level,
                    sess.log(),
                    "limiting connections{} by zone \"{}\"",
                    if dry_run { ", dry run," } else { "" },
                    shown(limit.zone_name())
                );
                // the counts taken so far go back
                drop(leases);
                if dry_run {
                    return true;
                }
                refuse(sess, handover);
                return false;
            }
            Acquire::NoMemory => {
                drop(leases);
                if dry_run {
                    return true;
                }
                sess.internal_server_error();
                return false;
            }
        }
    }
    if !leases.is_empty() {
        sess.keep_state(Limits {
            leases,
            bucket: None,
        });
    }
    true
}

/// Tells the client and closes: `NO [UNAVAILABLE]` (RFC 5530) after the
/// IMAP tag, `-ERR [SYS/TEMP]` (RFC 3206), `454 4.7.0`.
fn refuse(sess: Session, handover: &Handover) {
    let set = match &handover.client {
        ClientDialogue::Pop3 => {
            sess.set_out_static(POP3_REFUSAL);
            true
        }
        ClientDialogue::Imap { tag } => {
            let tag: &[u8] = if tag.is_empty() { b"* " } else { tag };
            sess.set_out(&[tag, IMAP_REFUSAL].concat())
        }
        ClientDialogue::Smtp { .. } => {
            sess.set_out_static(SMTP_REFUSAL);
            true
        }
        ClientDialogue::Sieve => {
            sess.set_out_static(mail_core::sieve::LIMIT_REFUSAL);
            true
        }
    };
    if !set {
        return sess.internal_server_error();
    }
    sess.set_quit();
    sess.send();
}
