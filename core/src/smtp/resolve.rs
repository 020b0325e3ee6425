//! The client-hostname decisions of nginx's SMTP resolver step: a PTR
//! lookup of the client address, a forward lookup of the name, and the
//! `Client-Host` / XCLIENT `NAME` value that results. The lookups themselves
//! are nginx's (the shell drives `ngx_resolve_*`); only their answers are
//! judged here.

use std::net::IpAddr;

/// The name was not found (NXDOMAIN), or the forward lookup disagrees.
pub const UNAVAILABLE: &[u8] = b"[UNAVAILABLE]";
/// The lookup failed otherwise, or the PTR answer was not a hostname.
pub const TEMPUNAVAIL: &[u8] = b"[TEMPUNAVAIL]";

/// How a lookup failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    NotFound,
    Other,
}

/// Only RFC 1034 section 3.5 characters: letters, digits, `-` and `.`.
/// Anything else in a PTR answer (a CR/LF above all) never reaches the auth
/// server or the backend (CVE-2026-28753).
pub fn valid_hostname(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn failed(e: LookupError) -> &'static [u8] {
    match e {
        LookupError::NotFound => UNAVAILABLE,
        LookupError::Other => TEMPUNAVAIL,
    }
}

/// What follows the PTR lookup.
#[must_use = "a forward lookup to start or the host to use"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterPtr<'a> {
    /// Look this name up to check it points back at the client.
    Forward(&'a [u8]),
    /// Done: the host value, and whether the answer was malformed (logged
    /// as `resolved to invalid host name`).
    Host {
        host: &'static [u8],
        invalid_name: bool,
    },
}

pub fn after_ptr(answer: Result<&[u8], LookupError>) -> AfterPtr<'_> {
    match answer {
        Err(e) => AfterPtr::Host {
            host: failed(e),
            invalid_name: false,
        },
        Ok(name) if !valid_hostname(name) => AfterPtr::Host {
            host: TEMPUNAVAIL,
            invalid_name: true,
        },
        Ok(name) => AfterPtr::Forward(name),
    }
}

/// The host value after the forward lookup of `name`: the name itself when
/// one of its addresses is the client's.
pub fn after_forward<'a>(
    name: &'a [u8],
    answer: Result<&[IpAddr], LookupError>,
    client: IpAddr,
) -> &'a [u8] {
    match answer {
        Err(e) => failed(e),
        Ok(addrs) if addrs.contains(&client) => name,
        Ok(_) => UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(valid_hostname(b"mail-1.example.com"));
        for bad in [
            &b""[..],
            b"a b",
            b"evil\r\nRCPT TO:<x>",
            b"a_b",
            b"a\0b",
            b"\xc3\xa9.example",
        ] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
    }

    #[test]
    fn decisions_as_stock() {
        assert_eq!(
            after_ptr(Ok(b"host.example")),
            AfterPtr::Forward(b"host.example")
        );
        assert_eq!(
            after_ptr(Err(LookupError::NotFound)),
            AfterPtr::Host {
                host: UNAVAILABLE,
                invalid_name: false
            }
        );
        assert_eq!(
            after_ptr(Err(LookupError::Other)),
            AfterPtr::Host {
                host: TEMPUNAVAIL,
                invalid_name: false
            }
        );
        assert_eq!(
            after_ptr(Ok(b"x\r\ny")),
            AfterPtr::Host {
                host: TEMPUNAVAIL,
                invalid_name: true
            }
        );

        let client: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        assert_eq!(after_forward(b"h", Ok(&[other, client]), client), b"h");
        assert_eq!(after_forward(b"h", Ok(&[other]), client), UNAVAILABLE);
        assert_eq!(
            after_forward(b"h", Err(LookupError::NotFound), client),
            UNAVAILABLE
        );
        assert_eq!(
            after_forward(b"h", Err(LookupError::Other), client),
            TEMPUNAVAIL
        );
    }
}
