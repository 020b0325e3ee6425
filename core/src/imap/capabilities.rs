//! The CAPABILITY reply lines, built per server at configuration time as
//! `ngx_mail_imap_merge_srv_conf` builds them.

use crate::auth_bits;

/// NUL-terminated because nginx string tables are.
pub const DEFAULT_CAPABILITIES: [&core::ffi::CStr; 3] = [c"IMAP4", c"IMAP4rev1", c"UIDPLUS"];

const AUTH_NAMES: [(usize, &str); 6] = [
    (auth_bits::PLAIN, "AUTH=PLAIN"),
    (auth_bits::LOGIN, "AUTH=LOGIN"),
    (auth_bits::CRAM_MD5, "AUTH=CRAM-MD5"),
    (auth_bits::EXTERNAL, "AUTH=EXTERNAL"),
    (auth_bits::XOAUTH2, "AUTH=XOAUTH2"),
    (auth_bits::OAUTHBEARER, "AUTH=OAUTHBEARER"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `* CAPABILITY ... AUTH=...`, on TLS or with STARTTLS off.
    pub plain: Vec<u8>,
    /// With `starttls on`: STARTTLS added.
    pub starttls: Vec<u8>,
    /// With `starttls only`: no AUTH=, and STARTTLS LOGINDISABLED.
    pub starttls_only: Vec<u8>,
    /// The untagged answer to ID (`imap_id`), `* ID NIL` by default.
    pub id: Vec<u8>,
}

impl Capabilities {
    pub fn build(capabilities: &[&[u8]], auth_methods: usize) -> Capabilities {
        let mut base = b"* CAPABILITY".to_vec();
        for cap in capabilities {
            base.push(b' ');
            base.extend_from_slice(cap);
        }
        let mut plain = base.clone();
        for (bit, name) in AUTH_NAMES {
            if auth_methods & bit != 0 {
                plain.push(b' ');
                plain.extend_from_slice(name.as_bytes());
            }
        }
        let mut starttls = plain.clone();
        starttls.extend_from_slice(b" STARTTLS\r\n");
        plain.extend_from_slice(b"\r\n");
        let mut starttls_only = base;
        starttls_only.extend_from_slice(b" STARTTLS LOGINDISABLED\r\n");
        Capabilities {
            plain,
            starttls,
            starttls_only,
            id: super::id::id_reply(&[]),
        }
    }

    /// With the `imap_id` name/value pairs as ID's answer.
    pub fn with_id(mut self, pairs: &[&[u8]]) -> Capabilities {
        self.id = super::id::id_reply(pairs);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let caps: Vec<&[u8]> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_bytes()).collect();
        let c = Capabilities::build(&caps, auth_bits::PLAIN);
        assert_eq!(
            c.plain,
            b"* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN\r\n"
        );
        assert_eq!(
            c.starttls,
            b"* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN STARTTLS\r\n"
        );
        assert_eq!(
            c.starttls_only,
            b"* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS STARTTLS LOGINDISABLED\r\n"
        );
    }

    #[test]
    fn all_methods() {
        let all = auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::CRAM_MD5 | auth_bits::EXTERNAL;
        let c = Capabilities::build(&[b"IMAP4rev1"], all);
        assert_eq!(
            c.plain,
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5 AUTH=EXTERNAL\r\n"
        );
    }

    #[test]
    fn bearer_mechanisms() {
        let c = Capabilities::build(
            &[b"IMAP4rev1"],
            auth_bits::PLAIN | auth_bits::XOAUTH2 | auth_bits::OAUTHBEARER,
        );
        assert_eq!(
            c.plain,
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER\r\n"
        );
        assert_eq!(
            c.starttls_only,
            b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
        );
    }
}
