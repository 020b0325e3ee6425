//! `auth_http_cache` (ours): which answers may be kept and for how long,
//! and what their key is made of. The shell keeps them in shared memory
//! under a keyed hash (HMAC-SHA-256 with a secret of the zone) of
//! `KeyParts::message`, so no password or token is ever stored.

use super::Response;
use crate::AuthMethod;

/// What decides an answer: the same parts give the same answer.
pub struct KeyParts<'a> {
    pub protocol: &'a [u8],
    pub method: AuthMethod,
    pub login: &'a [u8],
    /// The password or bearer token.
    pub secret: &'a [u8],
    /// `Client-IP` as sent.
    pub client_ip: &'a [u8],
    /// The mail server the client connected to (its address and port).
    pub server: &'a [u8],
}

impl KeyParts<'_> {
    /// The parts, each preceded by its length, so that no two different
    /// sets of parts give the same bytes.
    pub fn message(&self) -> Vec<u8> {
        let method = self.method.http_name().as_bytes();
        let parts = [
            self.protocol,
            method,
            self.login,
            self.secret,
            self.client_ip,
            self.server,
        ];
        let len = parts.iter().map(|p| p.len().saturating_add(8)).sum();
        let mut out = Vec::with_capacity(len);
        for part in parts {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}

/// Whether answers to logins with `method` may be kept at all: APOP and
/// CRAM-MD5 prove the password against a salt of the session, EXTERNAL
/// rests on a certificate and `smtp_auth none` on an envelope that the key
/// does not cover.
pub fn cacheable_method(method: AuthMethod) -> bool {
    matches!(
        method,
        AuthMethod::Plain | AuthMethod::XOauth2 | AuthMethod::OauthBearer
    )
}

/// How long (ms) `resp` may be kept; `None`: not at all. An answer that
/// lets the login through is kept for `valid`, a refusal for `invalid`,
/// or either for the server's `Auth-Cache-TTL`. Never kept: `WAIT`, a
/// refusal with `Auth-Wait` or `Auth-Error-SASL` (they pace or talk to
/// this client), an answer with `Auth-Pass` (a password, which the zone
/// never holds), and one without a backend (an error, not an answer).
pub fn ttl(resp: &Response, valid: u64, invalid: u64) -> Option<u64> {
    if resp.wait || resp.pass.is_some() {
        return None;
    }
    let default = if resp.error.is_some() {
        if resp.sleep > 0 || resp.error_sasl.is_some() {
            return None;
        }
        invalid
    } else {
        if resp.server.is_empty() || resp.port.is_empty() {
            return None;
        }
        valid
    };
    let ms = match resp.cache_ttl {
        Some(secs) => secs.saturating_mul(1000),
        None => default,
    };
    (ms > 0).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_http::parse_response;

    fn parse(text: &str) -> Response {
        parse_response(text.as_bytes()).unwrap().unwrap()
    }

    const OK: &str = "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 110\r\n";

    #[test]
    fn what_is_kept_and_for_how_long() {
        let ok = |extra: &str| parse(&format!("{OK}{extra}\r\n"));
        assert_eq!(ttl(&ok(""), 60_000, 5_000), Some(60_000));
        assert_eq!(
            ttl(&ok("Auth-Cache-TTL: 7\r\n"), 60_000, 5_000),
            Some(7_000)
        );
        assert_eq!(ttl(&ok("Auth-Cache-TTL: 0\r\n"), 60_000, 5_000), None);
        // not a number: no override
        assert_eq!(
            ttl(&ok("Auth-Cache-TTL: soon\r\n"), 60_000, 0),
            Some(60_000)
        );
        assert_eq!(ttl(&ok(""), 0, 5_000), None, "valid=0");
        assert_eq!(
            ttl(&ok("Auth-Pass: x\r\n"), 60_000, 5_000),
            None,
            "a password"
        );
        let refused = |extra: &str| parse(&format!("Auth-Status: go away\r\n{extra}\r\n"));
        assert_eq!(ttl(&refused(""), 60_000, 5_000), Some(5_000));
        assert_eq!(ttl(&refused(""), 60_000, 0), None, "invalid=0");
        assert_eq!(
            ttl(&refused("Auth-Cache-TTL: 2\r\n"), 60_000, 0),
            Some(2_000)
        );
        assert_eq!(ttl(&refused("Auth-Wait: 3\r\n"), 60_000, 5_000), None);
        assert_eq!(
            ttl(&refused("Auth-Error-SASL: e30=\r\n"), 60_000, 5_000),
            None
        );
        let wait = parse("Auth-Status: WAIT\r\nAuth-Wait: 1\r\n\r\n");
        assert_eq!(ttl(&wait, 60_000, 5_000), None);
        let no_backend = parse("Auth-Status: OK\r\n\r\n");
        assert_eq!(ttl(&no_backend, 60_000, 5_000), None);
    }

    #[test]
    fn salted_and_unkeyed_methods_are_never_kept() {
        use AuthMethod::*;
        for m in [Apop, CramMd5, External, None] {
            assert!(!cacheable_method(m), "{m:?}");
        }
        for m in [Plain, XOauth2, OauthBearer] {
            assert!(cacheable_method(m), "{m:?}");
        }
    }

    #[test]
    fn every_part_counts_and_parts_do_not_run_together() {
        let base = KeyParts {
            protocol: b"pop3",
            method: AuthMethod::Plain,
            login: b"user",
            secret: b"pass",
            client_ip: b"192.0.2.1",
            server: b"127.0.0.1:110",
        };
        let m = base.message();
        let variants = [
            KeyParts {
                protocol: b"imap",
                ..base
            },
            KeyParts {
                method: AuthMethod::XOauth2,
                ..base
            },
            KeyParts {
                login: b"userp",
                secret: b"ass",
                ..base
            },
            KeyParts {
                secret: b"pass2",
                ..base
            },
            KeyParts {
                client_ip: b"192.0.2.2",
                ..base
            },
            KeyParts {
                server: b"127.0.0.1:995",
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.message(), m);
        }
    }
}
