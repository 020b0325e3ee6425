//! `limit_rate` / `limit_rate_after` in the relay: what goes from the
//! backend to the client passes freenginx's leaky bucket
//! (`mail_core::limit::Bucket`). When it is full the client's write event
//! is `delayed` with a timer, as nginx delays a rate-limited write, and
//! the relay sends again when that fires. A rate-limited direction stays
//! on its buffer (the relay does not splice it): what a send may take is
//! decided before each send, which a pipe filled ahead would not allow.
//! Only the relay's bytes count: the replies nginx writes itself before
//! login (a few lines) are not paced.

use mail_core::limit::{Allow, Bucket, Rate};

use super::conf::conf;
use super::Limits;
use crate::nginx::Event;
use crate::session::Session;

fn rate(sess: Session) -> Option<Rate> {
    let lccf = conf(sess);
    (lccf.rate != 0).then_some(Rate {
        rate: lccf.rate as u64,
        after: lccf.rate_after as u64,
    })
}

fn now() -> u64 {
    // SAFETY: nginx's cached time, written by this process's event loop
    // between handlers.
    u64::try_from(unsafe { nginx_sys::ngx_current_msec }).unwrap_or(u64::MAX)
}

/// Whether what the relay sends the client is paced.
pub fn limited(sess: Session) -> bool {
    conf(sess).rate != 0
}

/// The relay starts: a paced session gets its bucket (empty: the first
/// `limit_rate + limit_rate_after` bytes go at once).
pub fn start(sess: Session) {
    if !limited(sess) {
        return;
    }
    let fresh = Some(Bucket::default());
    if sess
        .with_state(|limits: &mut Limits| limits.bucket = fresh)
        .is_none()
    {
        sess.keep_state(Limits {
            leases: Vec::new(),
            bucket: fresh,
        });
    }
}

/// How much of `size` bytes may be sent to the client now. 0: none, and
/// `wev` (the client's write event) is delayed until the bucket drains.
pub fn allow(sess: Session, wev: Event, size: usize) -> usize {
    let Some(rate) = rate(sess) else {
        return size;
    };
    let allow = sess
        .with_state(|limits: &mut Limits| {
            limits
                .bucket
                .map_or(Allow::Bytes(size), |b| b.allow(now(), size, rate))
        })
        .unwrap_or(Allow::Bytes(size));
    match allow {
        Allow::Bytes(n) => n,
        Allow::Wait(ms) => {
            delay(wev, ms);
            0
        }
    }
}

/// `n` bytes went to the client: into the bucket, and `wev` delayed if the
/// next send must wait.
pub fn sent(sess: Session, wev: Event, n: usize) {
    let Some(rate) = rate(sess) else {
        return;
    };
    let wait = sess
        .with_state(|limits: &mut Limits| {
            limits.bucket.as_mut().and_then(|b| b.sent(now(), n, rate))
        })
        .flatten();
    if let Some(ms) = wait {
        delay(wev, ms);
    }
}

fn delay(wev: Event, ms: u64) {
    wev.set_delayed(true);
    wev.del_timer();
    wev.add_timer(ms.try_into().unwrap_or(nginx_sys::ngx_msec_t::MAX / 2));
}
