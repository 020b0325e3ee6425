//! freenginx 1.29's mail limits, sans-IO: what `limit_conn_zone` keys a
//! zone by and how a key is read, the refusal each protocol gets, and
//! `limit_rate`'s leaky bucket. The shell keeps the counters in nginx's
//! shared memory and the bucket in the session.

use crate::auth_http::response::{header_line, status_line_end};

/// What a `limit_conn_zone` counts by. Mail has no variables: freenginx
/// accepts these names only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// `$remote_user`: the login, as the auth server left it (`Auth-User`).
    RemoteUser,
    /// `$remote_addr`: the client's address as text (after realip).
    RemoteAddr,
    /// `$auth_http_<name>`: the auth server's response header whose name,
    /// lowercased with `-` as `_`, is `name`; several are joined by ", ".
    AuthHttp(Vec<u8>),
}

impl Key {
    /// The key of `limit_conn_zone <key> zone=...`; `None` for anything else
    /// (`invalid parameter`).
    pub fn parse(text: &[u8]) -> Option<Key> {
        match text {
            b"$remote_user" => Some(Key::RemoteUser),
            b"$remote_addr" => Some(Key::RemoteAddr),
            _ => text
                .strip_prefix(b"$auth_http_")
                .map(|name| Key::AuthHttp(name.to_vec())),
        }
    }
}

/// Longer keys are not counted (logged at `error`): a node stores the
/// length in one byte.
pub const MAX_KEY_LEN: usize = 255;

/// The tree order of a key: its hash first, then its bytes. Any function
/// that every process computes alike will do: equal hashes are told apart
/// by the bytes, so the tree stays balanced whatever the keys (FNV-1a).
pub fn hash(key: &[u8]) -> u32 {
    key.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The value of the auth server's header(s) named by `$auth_http_<name>`
/// in a whole `response` (as `parse_response` accepted it): empty when
/// there is none, values of several joined by ", ".
pub fn auth_http_value(response: &[u8], name: &[u8]) -> Vec<u8> {
    let mut value = Vec::new();
    let mut found = false;
    let Ok(Some(mut pos)) = status_line_end(response) else {
        return value;
    };
    while let Some(rest) = response.get(pos..) {
        let Ok(Some((Some(header), used))) = header_line(rest) else {
            break;
        };
        pos = pos.saturating_add(used);
        let same = header.name.len() == name.len()
            && header.name.iter().zip(name).all(|(&h, &n)| {
                let h = if h == b'-' {
                    b'_'
                } else {
                    h.to_ascii_lowercase()
                };
                h == n
            });
        if same {
            if found {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(header.value);
            found = true;
        }
    }
    value
}

/// The POP3 refusal (RFC 2449 / RFC 3206 extended response code).
pub const POP3_REFUSAL: &[u8] = b"-ERR [SYS/TEMP] Too many connections\r\n";
/// The IMAP refusal, after the command's tag (RFC 5530 response code).
pub const IMAP_REFUSAL: &[u8] = b"NO [UNAVAILABLE] Too many connections\r\n";
/// The SMTP refusal.
pub const SMTP_REFUSAL: &[u8] = b"454 4.7.0 Too many connections\r\n";

/// `limit_rate` and `limit_rate_after`: bytes per second, and the burst
/// the bucket lets through on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub rate: u64,
    pub after: u64,
}

/// What may go to the client now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    /// Up to this many bytes (at least one).
    Bytes(usize),
    /// Nothing: wait this many milliseconds.
    Wait(u64),
}

/// freenginx 1.29's leaky bucket (`ngx_mail_proxy_handler`): what was sent
/// drains at `rate` bytes a second; a send may fill it up to `rate +
/// after`; past half a second's worth over `after`, the sender waits for
/// it to drain. So a fresh (or long idle) session gets `rate + after`
/// bytes at once, then `rate` a second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// When it was last filled, in nginx's milliseconds.
    last: u64,
    /// Bytes in it then.
    excess: u64,
}

impl Bucket {
    /// The bytes in the bucket at `now`.
    fn level(&self, now: u64, rate: Rate) -> u64 {
        let ms = now.saturating_sub(self.last);
        let drained = u128::from(rate.rate).saturating_mul(u128::from(ms)) / 1000;
        let drained = u64::try_from(drained).unwrap_or(u64::MAX);
        self.excess.saturating_sub(drained)
    }

    /// How much of `size` may be sent at `now`.
    pub fn allow(&self, now: u64, size: usize, rate: Rate) -> Allow {
        if rate.rate == 0 {
            return Allow::Bytes(size);
        }
        let excess = self.level(now, rate);
        let room = rate.rate.saturating_add(rate.after).saturating_sub(excess);
        if room == 0 {
            return Allow::Wait(wait(excess, rate).saturating_add(1));
        }
        Allow::Bytes(size.min(usize::try_from(room).unwrap_or(usize::MAX)))
    }

    /// `n` bytes went out at `now`; `Some(ms)` when the next send must wait.
    pub fn sent(&mut self, now: u64, n: usize, rate: Rate) -> Option<u64> {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.excess = self.level(now, rate).saturating_add(n);
        self.last = now;
        let ms = wait(self.excess, rate);
        (ms > 0).then_some(ms)
    }
}

/// How long `excess` bytes take to drain to `after` and half a second's
/// worth.
fn wait(excess: u64, rate: Rate) -> u64 {
    let over = excess
        .saturating_sub(rate.after)
        .saturating_sub(rate.rate / 2);
    // no rate, no wait
    let ms = u128::from(over)
        .saturating_mul(1000)
        .checked_div(u128::from(rate.rate))
        .unwrap_or(0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(Key::parse(b"$remote_user"), Some(Key::RemoteUser));
        assert_eq!(Key::parse(b"$remote_addr"), Some(Key::RemoteAddr));
        assert_eq!(
            Key::parse(b"$auth_http_limit_key"),
            Some(Key::AuthHttp(b"limit_key".to_vec()))
        );
        assert_eq!(Key::parse(b"$auth_http_"), Some(Key::AuthHttp(Vec::new())));
        assert_eq!(Key::parse(b"$binary_remote_addr"), None);
        assert_eq!(Key::parse(b"$remote_user2"), None);
        assert_eq!(Key::parse(b"remote_user"), None);
    }

    #[test]
    fn hash_is_fixed() {
        // the same in every process and every build: workers share the tree
        assert_eq!(hash(b""), 0x811c_9dc5);
        assert_eq!(hash(b"a"), 0xe40c_292c);
        assert_ne!(hash(b"127.0.0.1"), hash(b"127.0.0.2"));
    }

    #[test]
    fn auth_http_values() {
        let resp = b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nX-Limit-Key: one\r\n\
            Auth-Server: 127.0.0.1\r\nx-limit-key:  two \r\nX-Limit-Keys: no\r\n\r\nbody: x\r\n";
        assert_eq!(auth_http_value(resp, b"x_limit_key"), b"one, two");
        assert_eq!(auth_http_value(resp, b"auth_server"), b"127.0.0.1");
        assert_eq!(auth_http_value(resp, b"body"), b"");
        assert_eq!(auth_http_value(resp, b"x-limit-key"), b"");
        assert_eq!(auth_http_value(resp, b"X_Limit_Key"), b"");
        assert_eq!(auth_http_value(b"Auth-Status: OK\nA: b\n\n", b"a"), b"b");
        assert_eq!(auth_http_value(b"A:\r\n\r\n", b"a"), b"");
    }

    const R: Rate = Rate {
        rate: 50_000,
        after: 0,
    };

    #[test]
    fn a_fresh_bucket_lets_a_second_through() {
        let b = Bucket::default();
        assert_eq!(b.allow(1_000_000, 1 << 20, R), Allow::Bytes(50_000));
        assert_eq!(b.allow(1_000_000, 100, R), Allow::Bytes(100));
    }

    #[test]
    fn then_the_rate() {
        let mut b = Bucket::default();
        let mut now = 1_000_000;
        let mut total = 0u64;
        let mut last_byte = 0;
        // 200 KB at 50 KB/s: 50 KB at once, then 25 KB every half second
        while total < 200_000 {
            match b.allow(now, 200_000 - total as usize, R) {
                Allow::Bytes(n) => {
                    total += n as u64;
                    last_byte = now;
                    if let Some(ms) = b.sent(now, n, R) {
                        now += ms;
                    }
                }
                Allow::Wait(ms) => now += ms,
            }
        }
        assert_eq!(last_byte - 1_000_000, 3_000);
    }

    #[test]
    fn after_is_a_burst() {
        let r = Rate {
            rate: 50_000,
            after: 150_000,
        };
        let mut b = Bucket::default();
        assert_eq!(b.allow(5_000, 1 << 20, r), Allow::Bytes(200_000));
        assert_eq!(b.sent(5_000, 200_000, r), Some(500));
        assert_eq!(b.allow(5_000, 10, r), Allow::Wait(501));
        // idle time drains it again
        assert_eq!(b.allow(9_000, 1 << 20, r), Allow::Bytes(200_000));
    }

    #[test]
    fn small_sends_do_not_wait() {
        let mut b = Bucket::default();
        assert_eq!(b.sent(10, 20_000, R), None);
        assert_eq!(b.allow(10, 100_000, R), Allow::Bytes(30_000));
        assert_eq!(b.sent(10, 5_000, R), None);
        assert_eq!(b.sent(10, 1_000, R), Some(20));
    }

    #[test]
    fn no_overflow() {
        let r = Rate {
            rate: u64::MAX,
            after: u64::MAX,
        };
        let mut b = Bucket::default();
        assert!(matches!(b.allow(u64::MAX, usize::MAX, r), Allow::Bytes(_)));
        let _ = b.sent(u64::MAX, usize::MAX, r);
        let _ = b.allow(0, 1, r);
        let zero = Rate { rate: 0, after: 0 };
        assert_eq!(b.sent(0, 1, zero), None);
        assert_eq!(b.allow(0, 7, zero), Allow::Bytes(7));
    }
}
