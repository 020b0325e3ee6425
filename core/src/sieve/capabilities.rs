//! The capability block (RFC 5804 1.7), built per server at configuration
//! time: the `sieve_capabilities` lines as configured, then the `SASL` line
//! from `sieve_auth` and `STARTTLS` from `starttls`. The block opens the
//! session, answers CAPABILITY and follows a STARTTLS handshake.

use crate::auth_bits;
use crate::StartTls;

/// NUL-terminated because nginx string tables are. Each is one line of the
/// block as it is sent.
pub const DEFAULT_CAPABILITIES: [&core::ffi::CStr; 3] = [
    c"\"IMPLEMENTATION\" \"nginx\"",
    c"\"SIEVE\" \"fileinto reject envelope\"",
    c"\"VERSION\" \"1.0\"",
];

const SASL_NAMES: [(usize, &str); 4] = [
    (auth_bits::PLAIN, "PLAIN"),
    (auth_bits::LOGIN, "LOGIN"),
    (auth_bits::CRAM_MD5, "CRAM-MD5"),
    (auth_bits::EXTERNAL, "EXTERNAL"),
];

const GREETING_OK: &[u8] = b"OK \"ManageSieve ready\"\r\n";
const COMPLETED: &[u8] = b"OK \"completed\"\r\n";

/// The length of the quoted string `line` starts with, quotes included:
/// at most [`super::MAX_QUOTED`] octets of UTF-8 with no NUL, CR or LF, and
/// only `"` and `\` escaped.
fn quoted_len(line: &[u8]) -> Option<usize> {
    let rest = line.strip_prefix(b"\"")?;
    let mut escaped = false;
    for (i, &b) in rest.iter().enumerate() {
        match b {
            _ if escaped && !matches!(b, b'"' | b'\\') => return None,
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => {
                let body = rest.get(..i)?;
                if body.len() > super::MAX_QUOTED || core::str::from_utf8(body).is_err() {
                    return None;
                }
                return i.checked_add(2);
            }
            0 | b'\r' | b'\n' => return None,
            _ => {}
        }
    }
    None
}

/// Whether a `sieve_capabilities` argument is a line the block can carry:
/// a quoted name, then optionally one space and a quoted value.
pub fn line_ok(line: &[u8]) -> bool {
    let Some(name) = quoted_len(line) else {
        return false;
    };
    match line.get(name..) {
        Some([]) => name > 2,
        Some([b' ', value @ ..]) => name > 2 && quoted_len(value) == Some(value.len()),
        _ => false,
    }
}

/// A server's replies that carry the block, one of each per STARTTLS mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// On TLS, or with `starttls off`: every mechanism, no STARTTLS.
    greeting_plain: Vec<u8>,
    capability_plain: Vec<u8>,
    /// `starttls on` before TLS: STARTTLS added.
    greeting_starttls: Vec<u8>,
    capability_starttls: Vec<u8>,
    /// `starttls only` before TLS: an empty SASL list (which RFC 5804
    /// allows only beside STARTTLS), and STARTTLS.
    greeting_only: Vec<u8>,
    capability_only: Vec<u8>,
}

fn line(out: &mut Vec<u8>, parts: &[&[u8]]) {
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

impl Capabilities {
    pub fn build(lines: &[&[u8]], auth_methods: usize) -> Capabilities {
        let mut base = Vec::new();
        for l in lines {
            line(&mut base, &[l]);
        }
        let names: Vec<&str> = SASL_NAMES
            .iter()
            .filter(|(bit, _)| auth_methods & bit != 0)
            .map(|&(_, name)| name)
            .collect();
        let mut plain = base.clone();
        line(
            &mut plain,
            &[b"\"SASL\" \"", names.join(" ").as_bytes(), b"\""],
        );
        let mut starttls = plain.clone();
        line(&mut starttls, &[b"\"STARTTLS\""]);
        let mut only = base;
        line(&mut only, &[b"\"SASL\" \"\""]);
        line(&mut only, &[b"\"STARTTLS\""]);
        Capabilities {
            greeting_plain: [&plain[..], GREETING_OK].concat(),
            capability_plain: [&plain[..], COMPLETED].concat(),
            greeting_starttls: [&starttls[..], GREETING_OK].concat(),
            capability_starttls: [&starttls[..], COMPLETED].concat(),
            greeting_only: [&only[..], GREETING_OK].concat(),
            capability_only: [&only[..], COMPLETED].concat(),
        }
    }

    /// The block and the greeting's OK.
    pub fn greeting(&self, starttls: StartTls, tls: bool) -> &[u8] {
        match (tls, starttls) {
            (false, StartTls::On) => &self.greeting_starttls,
            (false, StartTls::Only) => &self.greeting_only,
            _ => &self.greeting_plain,
        }
    }

    /// The block and `OK`: the reply to CAPABILITY, and what follows a
    /// STARTTLS handshake unasked (RFC 5804 2.2).
    pub fn capability(&self, starttls: StartTls, tls: bool) -> &[u8] {
        match (tls, starttls) {
            (false, StartTls::On) => &self.capability_starttls,
            (false, StartTls::Only) => &self.capability_only,
            _ => &self.capability_plain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<&'static [u8]> {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_bytes()).collect()
    }

    const BLOCK: &str = "\"IMPLEMENTATION\" \"nginx\"\r\n\
        \"SIEVE\" \"fileinto reject envelope\"\r\n\"VERSION\" \"1.0\"\r\n";

    #[test]
    fn modes() {
        let c = Capabilities::build(&defaults(), auth_bits::PLAIN);
        assert_eq!(
            String::from_utf8_lossy(c.greeting(StartTls::Off, false)),
            format!("{BLOCK}\"SASL\" \"PLAIN\"\r\nOK \"ManageSieve ready\"\r\n")
        );
        assert_eq!(
            String::from_utf8_lossy(c.capability(StartTls::On, false)),
            format!("{BLOCK}\"SASL\" \"PLAIN\"\r\n\"STARTTLS\"\r\nOK \"completed\"\r\n")
        );
        assert_eq!(
            String::from_utf8_lossy(c.greeting(StartTls::Only, false)),
            format!("{BLOCK}\"SASL\" \"\"\r\n\"STARTTLS\"\r\nOK \"ManageSieve ready\"\r\n")
        );
        // on TLS: no STARTTLS, every mechanism
        for mode in [StartTls::Off, StartTls::On, StartTls::Only] {
            assert_eq!(
                String::from_utf8_lossy(c.capability(mode, true)),
                format!("{BLOCK}\"SASL\" \"PLAIN\"\r\nOK \"completed\"\r\n")
            );
        }
    }

    #[test]
    fn all_methods() {
        let all = auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::CRAM_MD5 | auth_bits::EXTERNAL;
        let c = Capabilities::build(&[b"\"SIEVE\" \"fileinto\""], all);
        assert_eq!(
            c.capability(StartTls::Off, false),
            b"\"SIEVE\" \"fileinto\"\r\n\"SASL\" \"PLAIN LOGIN CRAM-MD5 EXTERNAL\"\r\n\
              OK \"completed\"\r\n"
        );
    }

    #[test]
    fn lines() {
        for good in defaults() {
            assert!(line_ok(good), "{good:?}");
        }
        for good in [
            &b"\"STARTTLS-LIKE\""[..],
            b"\"NOTIFY\" \"mailto\"",
            b"\"X\" \"\"",
            b"\"X\" \"a \\\"b\\\" \\\\\"",
            "\"X\" \"caf\u{e9}\"".as_bytes(),
        ] {
            assert!(line_ok(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"SIEVE fileinto",
            b"\"\"",
            b"\"SIEVE\"  \"x\"",
            b"\"SIEVE\" x",
            b"\"SIEVE\" \"x\" \"y\"",
            b"\"SIEVE\" \"x",
            b"\"SIEVE\" \"x\r\ny\"",
            b"\"SIEVE\" \"\\x\"",
            b"\"SIEVE\" \"\xff\"",
            b"\"SIEVE\" \"x\" ",
            b"\"SIEVE\"\"x\"",
        ] {
            assert!(!line_ok(bad), "{bad:?}");
        }
        let long = [&b"\"X\" \""[..], &[b'a'; 1025], b"\""].concat();
        assert!(!line_ok(&long));
        assert!(line_ok(
            &long[..long.len() - 2]
                .iter()
                .chain(b"\"")
                .copied()
                .collect::<Vec<_>>()
        ));
    }
}
