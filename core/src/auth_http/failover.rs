//! Several auth servers (`auth_http_server`, ours): round robin with
//! failover, each server's failures counted per worker the way nginx's
//! round-robin upstream counts them (`max_fails` within `fail_timeout`,
//! then down for `fail_timeout`; one login probes it after that).
//!
//! Times are milliseconds of the caller's clock; nothing here reads one.

use core::borrow::BorrowMut;

/// One auth server's failure accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Failures that make the server down; 0: never down.
    pub max_fails: u32,
    /// How long a down server is left alone, and the window failures are
    /// counted in.
    pub fail_timeout: u64,
    pub fails: u32,
    /// When a failure was last counted (or a probe started).
    pub checked: u64,
}

impl Peer {
    /// nginx's upstream defaults: `max_fails=1 fail_timeout=10s`.
    pub const fn new(max_fails: u32, fail_timeout: u64) -> Peer {
        Peer {
            max_fails,
            fail_timeout,
            fails: 0,
            checked: 0,
        }
    }

    fn down(&self, now: u64) -> bool {
        self.max_fails != 0
            && self.fails >= self.max_fails
            && now.saturating_sub(self.checked) <= self.fail_timeout
    }

    /// A connect error, a timeout or an answer that could not be read.
    /// True when this failure makes the server down.
    pub fn failed(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.checked) > self.fail_timeout {
            // failures older than the window do not add up
            self.fails = 0;
        }
        self.fails = self.fails.saturating_add(1);
        self.checked = now;
        self.max_fails != 0 && self.fails >= self.max_fails
    }

    /// A whole answer: the server is well.
    pub fn succeeded(&mut self) {
        self.fails = 0;
    }
}

/// The servers one login has tried (at most 64 servers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    fn has(self, i: usize) -> bool {
        u32::try_from(i)
            .ok()
            .and_then(|i| 1u64.checked_shl(i))
            .is_some_and(|bit| self.0 & bit != 0)
    }

    fn add(&mut self, i: usize) {
        if let Some(bit) = u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i)) {
            self.0 |= bit;
        }
    }
}

/// The most servers a list may have.
pub const MAX_SERVERS: usize = 64;

/// What `pick` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Ask this server.
    Server(usize),
    /// Every server not tried yet was down: all are marked live again (as
    /// nginx's upstream does for a quick recovery) and this one is asked.
    /// Unlike an http upstream, the login is not failed for it: a refused
    /// login is what a client sees, and a server is down only by count.
    Revived(usize),
    /// Every server was tried.
    Exhausted,
}

/// The next server in round robin order from `*next` that this login has
/// not tried and that is not down; `*next` moves past it, so that logins
/// take turns. A single server is never down (as a single upstream
/// server). `peers` are the caller's servers, each holding its `Peer`.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "indices are taken modulo peers.len(), which is not 0 where they are computed"
)]
pub fn pick<P: BorrowMut<Peer>>(
    peers: &mut [P],
    next: &mut usize,
    tried: &mut Tried,
    now: u64,
) -> Pick {
    let n = peers.len();
    if n == 0 {
        return Pick::Exhausted;
    }
    let mut untried = false;
    for step in 0..n {
        let i = (*next + step) % n;
        if tried.has(i) {
            continue;
        }
        untried = true;
        let Some(peer) = peers.get_mut(i).map(BorrowMut::borrow_mut) else {
            continue;
        };
        if n > 1 && peer.down(now) {
            continue;
        }
        if peer.max_fails != 0 && peer.fails >= peer.max_fails {
            // back from its down period: this login probes it, the others
            // leave it alone until the probe is done or fail_timeout passes
            peer.checked = now;
        }
        tried.add(i);
        *next = (i + 1) % n;
        return Pick::Server(i);
    }
    if !untried {
        return Pick::Exhausted;
    }
    for peer in peers.iter_mut() {
        peer.borrow_mut().fails = 0;
    }
    match pick(peers, next, tried, now) {
        Pick::Server(i) => Pick::Revived(i),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<Peer> {
        vec![Peer::new(1, 10_000); n]
    }

    fn order(peers: &mut [Peer], next: &mut usize, now: u64) -> Vec<Pick> {
        let mut tried = Tried::default();
        (0..=peers.len())
            .map(|_| pick(peers, next, &mut tried, now))
            .collect()
    }

    #[test]
    fn round_robin_across_logins() {
        let mut p = peers(3);
        let mut next = 0;
        let firsts: Vec<_> = (0..6)
            .map(|_| pick(&mut p, &mut next, &mut Tried::default(), 0))
            .collect();
        use Pick::Server as S;
        assert_eq!(firsts, [S(0), S(1), S(2), S(0), S(1), S(2)]);
    }

    #[test]
    fn failover_tries_each_server_once() {
        let mut p = peers(3);
        let mut next = 1;
        use Pick::Server as S;
        assert_eq!(
            order(&mut p, &mut next, 0),
            [S(1), S(2), S(0), Pick::Exhausted]
        );
    }

    #[test]
    fn a_down_server_is_skipped_for_fail_timeout_then_probed() {
        let mut p = peers(3);
        let mut next = 0;
        assert!(p[0].failed(1000), "max_fails=1: down at once");
        use Pick::Server as S;
        // down: skipped while now - checked <= fail_timeout
        let mut tried = Tried::default();
        assert_eq!(pick(&mut p, &mut next, &mut tried, 11_000), S(1));
        assert_eq!(pick(&mut p, &mut next, &mut tried, 11_000), S(2));
        // only the down one is left for this login
        let mut q = p.clone();
        assert_eq!(
            pick(&mut q, &mut next, &mut tried, 11_000),
            Pick::Revived(0)
        );
        next = 0;
        assert_eq!(pick(&mut p, &mut next, &mut Tried::default(), 11_001), S(0));
        // the probe is in flight: other logins leave it alone
        next = 0;
        assert_eq!(pick(&mut p, &mut next, &mut Tried::default(), 11_002), S(1));
        // the probe failed: down again
        assert!(p[0].failed(11_003));
        next = 0;
        assert_eq!(pick(&mut p, &mut next, &mut Tried::default(), 20_000), S(1));
        // or it answered: well again
        p[0].succeeded();
        next = 0;
        assert_eq!(pick(&mut p, &mut next, &mut Tried::default(), 20_000), S(0));
    }

    #[test]
    fn max_fails_within_the_window() {
        let mut p = vec![Peer::new(3, 10_000); 2];
        assert!(!p[0].failed(0));
        assert!(!p[0].failed(5_000));
        // the first two are more than fail_timeout old: the count restarts
        assert!(!p[0].failed(16_000));
        assert!(!p[0].failed(17_000));
        assert!(p[0].failed(18_000));
        let mut next = 0;
        assert_eq!(
            pick(&mut p, &mut next, &mut Tried::default(), 18_001),
            Pick::Server(1)
        );
    }

    #[test]
    fn max_fails_zero_is_never_down() {
        let mut p = vec![Peer::new(0, 10_000); 2];
        for t in 0..5 {
            assert!(!p[0].failed(t));
        }
        let mut next = 0;
        assert_eq!(
            pick(&mut p, &mut next, &mut Tried::default(), 5),
            Pick::Server(0)
        );
    }

    #[test]
    fn all_down_are_revived_and_asked() {
        let mut p = peers(2);
        p[0].failed(0);
        p[1].failed(0);
        let mut next = 0;
        let mut tried = Tried::default();
        assert_eq!(pick(&mut p, &mut next, &mut tried, 1), Pick::Revived(0));
        assert_eq!(p[1].fails, 0, "all marked live");
        assert_eq!(pick(&mut p, &mut next, &mut tried, 1), Pick::Server(1));
        assert_eq!(pick(&mut p, &mut next, &mut tried, 1), Pick::Exhausted);
    }

    #[test]
    fn a_single_server_is_never_down() {
        let mut p = peers(1);
        p[0].failed(0);
        let mut next = 0;
        let mut tried = Tried::default();
        assert_eq!(pick(&mut p, &mut next, &mut tried, 1), Pick::Server(0));
        assert_eq!(pick(&mut p, &mut next, &mut tried, 1), Pick::Exhausted);
    }

    #[test]
    fn sixty_four_servers() {
        let mut p = peers(MAX_SERVERS);
        let mut next = 0;
        let got = order(&mut p, &mut next, 0);
        assert_eq!(got.len(), MAX_SERVERS + 1);
        assert_eq!(got[63], Pick::Server(63));
        assert_eq!(got[64], Pick::Exhausted);
    }
}
