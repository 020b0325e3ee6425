//! The CAPA and bare AUTH replies, built once per server at configuration
//! time exactly as `ngx_mail_pop3_merge_srv_conf` builds them.

use crate::auth_bits;

/// Names in the SASL line, in nginx's order; APOP is not a SASL mechanism.
const SASL_NAMES: [(usize, &str); 6] = [
    (auth_bits::PLAIN, "PLAIN"),
    (auth_bits::LOGIN, "LOGIN"),
    (auth_bits::CRAM_MD5, "CRAM-MD5"),
    (auth_bits::EXTERNAL, "EXTERNAL"),
    (auth_bits::XOAUTH2, "XOAUTH2"),
    (auth_bits::OAUTHBEARER, "OAUTHBEARER"),
];

/// NUL-terminated because nginx string tables are.
pub const DEFAULT_CAPABILITIES: [&core::ffi::CStr; 3] = [c"TOP", c"USER", c"UIDL"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// CAPA on a TLS connection, or when STLS is off.
    pub plain: Vec<u8>,
    /// CAPA with `starttls on`: STLS added.
    pub starttls: Vec<u8>,
    /// CAPA with `starttls only`: no USER, no SASL, STLS added.
    pub starttls_only: Vec<u8>,
    /// The reply to a bare AUTH.
    pub auth: Vec<u8>,
}

impl Capabilities {
    /// `auth_methods` must already have LOGIN added where PLAIN is on.
    pub fn build(capabilities: &[&[u8]], auth_methods: usize) -> Capabilities {
        let mechanisms: Vec<&str> = SASL_NAMES
            .iter()
            .filter(|(bit, _)| auth_methods & bit != 0)
            .map(|(_, n)| *n)
            .collect();

        let mut plain = b"+OK Capability list follows\r\n".to_vec();
        for cap in capabilities {
            plain.extend_from_slice(cap);
            plain.extend_from_slice(b"\r\n");
        }
        plain.extend_from_slice(b"SASL");
        for m in &mechanisms {
            plain.push(b' ');
            plain.extend_from_slice(m.as_bytes());
        }
        plain.extend_from_slice(b"\r\n");

        let mut starttls = plain.clone();
        starttls.extend_from_slice(b"STLS\r\n.\r\n");
        plain.extend_from_slice(b".\r\n");

        let mut starttls_only = b"+OK Capability list follows\r\n".to_vec();
        for cap in capabilities
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case(b"USER"))
        {
            starttls_only.extend_from_slice(cap);
            starttls_only.extend_from_slice(b"\r\n");
        }
        starttls_only.extend_from_slice(b"STLS\r\n.\r\n");

        let mut auth = b"+OK methods supported:\r\n".to_vec();
        for m in &mechanisms {
            auth.extend_from_slice(m.as_bytes());
            auth.extend_from_slice(b"\r\n");
        }
        auth.extend_from_slice(b".\r\n");

        Capabilities {
            plain,
            starttls,
            starttls_only,
            auth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let caps: Vec<&[u8]> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_bytes()).collect();
        let c = Capabilities::build(&caps, auth_bits::PLAIN | auth_bits::LOGIN);
        assert_eq!(
            c.plain,
            b"+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN\r\n.\r\n"
        );
        assert_eq!(c.starttls, b"+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN\r\nSTLS\r\n.\r\n");
        assert_eq!(
            c.starttls_only,
            b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n"
        );
        assert_eq!(c.auth, b"+OK methods supported:\r\nPLAIN\r\nLOGIN\r\n.\r\n");
    }

    #[test]
    fn apop_is_not_sasl() {
        let c = Capabilities::build(
            &[b"TOP"],
            auth_bits::APOP | auth_bits::CRAM_MD5 | auth_bits::EXTERNAL,
        );
        assert_eq!(
            c.plain,
            b"+OK Capability list follows\r\nTOP\r\nSASL CRAM-MD5 EXTERNAL\r\n.\r\n"
        );
        assert_eq!(
            c.auth,
            b"+OK methods supported:\r\nCRAM-MD5\r\nEXTERNAL\r\n.\r\n"
        );
    }

    #[test]
    fn bearer_mechanisms_last() {
        let c = Capabilities::build(
            &[b"TOP"],
            auth_bits::PLAIN
                | auth_bits::LOGIN
                | auth_bits::OAUTHBEARER
                | auth_bits::XOAUTH2
                | auth_bits::EXTERNAL,
        );
        assert_eq!(
            c.plain,
            b"+OK Capability list follows\r\nTOP\r\nSASL PLAIN LOGIN EXTERNAL XOAUTH2 OAUTHBEARER\r\n.\r\n"
        );
        assert_eq!(
            c.auth,
            b"+OK methods supported:\r\nPLAIN\r\nLOGIN\r\nEXTERNAL\r\nXOAUTH2\r\nOAUTHBEARER\r\n.\r\n"
        );
        assert_eq!(
            c.starttls_only,
            b"+OK Capability list follows\r\nTOP\r\nSTLS\r\n.\r\n"
        );
    }
}
