//! The greeting and HELO/EHLO replies, built per server at configuration
//! time as `ngx_mail_smtp_merge_srv_conf` builds them.

use crate::auth_bits;

const AUTH_NAMES: [(usize, &str); 6] = [
    (auth_bits::PLAIN, "PLAIN"),
    (auth_bits::LOGIN, "LOGIN"),
    (auth_bits::CRAM_MD5, "CRAM-MD5"),
    (auth_bits::EXTERNAL, "EXTERNAL"),
    (auth_bits::XOAUTH2, "XOAUTH2"),
    (auth_bits::OAUTHBEARER, "OAUTHBEARER"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replies {
    /// `220 <server_name> ESMTP ready`
    pub greeting: Vec<u8>,
    /// The reply to HELO: `250 <server_name>`
    pub helo: Vec<u8>,
    /// The reply to EHLO on TLS or with STARTTLS off.
    pub ehlo: Vec<u8>,
    /// With `starttls on`: STARTTLS added.
    pub ehlo_starttls: Vec<u8>,
    /// With `starttls only`: no AUTH, STARTTLS added.
    pub ehlo_starttls_only: Vec<u8>,
}

/// `250-a`, `250-b`, ..., `250 last`
fn multiline(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let Some((last, rest)) = lines.split_last() else {
        return out;
    };
    for (prefix, line) in rest.iter().map(|l| (b"250-", l)).chain([(b"250 ", last)]) {
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Replies {
    pub fn build(server_name: &[u8], capabilities: &[&[u8]], auth_methods: usize) -> Replies {
        let mut lines: Vec<Vec<u8>> = vec![server_name.to_vec()];
        lines.extend(capabilities.iter().map(|c| c.to_vec()));
        let base = lines.clone();
        let mechanisms: Vec<&str> = AUTH_NAMES
            .iter()
            .filter(|(bit, _)| auth_methods & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if !mechanisms.is_empty() {
            lines.push(format!("AUTH {}", mechanisms.join(" ")).into_bytes());
        }
        let with = |mut l: Vec<Vec<u8>>| {
            l.push(b"STARTTLS".to_vec());
            multiline(&l)
        };
        Replies {
            greeting: [b"220 ", server_name, b" ESMTP ready\r\n"].concat(),
            helo: [b"250 ", server_name, b"\r\n"].concat(),
            ehlo: multiline(&lines),
            ehlo_starttls: with(lines.clone()),
            ehlo_starttls_only: with(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_as_stock() {
        let r = Replies::build(
            b"mx.example",
            &[b"PIPELINING", b"SIZE 10240000"],
            auth_bits::PLAIN | auth_bits::LOGIN,
        );
        assert_eq!(r.greeting, b"220 mx.example ESMTP ready\r\n");
        assert_eq!(r.helo, b"250 mx.example\r\n");
        assert_eq!(
            r.ehlo,
            b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 AUTH PLAIN LOGIN\r\n"
        );
        assert_eq!(
            r.ehlo_starttls,
            b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"
        );
        assert_eq!(
            r.ehlo_starttls_only,
            b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n"
        );
    }

    #[test]
    fn no_auth_line_with_none_only() {
        let r = Replies::build(b"mx", &[], auth_bits::NONE);
        assert_eq!(r.ehlo, b"250 mx\r\n");
        assert_eq!(r.ehlo_starttls, b"250-mx\r\n250 STARTTLS\r\n");
    }

    #[test]
    fn bearer_mechanisms() {
        let r = Replies::build(
            b"mx",
            &[],
            auth_bits::LOGIN | auth_bits::OAUTHBEARER | auth_bits::XOAUTH2 | auth_bits::NONE,
        );
        assert_eq!(r.ehlo, b"250-mx\r\n250 AUTH LOGIN XOAUTH2 OAUTHBEARER\r\n");
    }
}
