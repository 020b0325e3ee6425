//! What a server's configuration and the connection say about a command,
//! shared by every protocol's session.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTls {
    Off,
    On,
    Only,
}

/// `C` is the protocol's prebuilt capability replies.
pub struct Config<'a, C> {
    /// `*_auth` bits (see [`crate::auth_bits`]).
    pub auth_methods: usize,
    pub capabilities: &'a C,
    pub starttls: StartTls,
    /// The connection is already TLS (`listen ... ssl`, or after STARTTLS).
    pub tls: bool,
    /// The APOP/CRAM-MD5 salt of this session, CRLF-terminated.
    pub salt: Option<&'a [u8]>,
}

impl<C> Config<'_, C> {
    /// `starttls only` and not yet TLS: no login of any kind.
    pub fn login_needs_tls(&self) -> bool {
        !self.tls && self.starttls == StartTls::Only
    }

    pub fn enabled(&self, bit: usize) -> bool {
        self.auth_methods & bit != 0
    }

    /// The SASL mechanisms offered beyond PLAIN and LOGIN (always on):
    /// CRAM-MD5 needs a salt as well as the setting.
    pub fn offered(&self) -> crate::sasl::Offered {
        crate::sasl::Offered {
            cram_md5: self.enabled(crate::auth_bits::CRAM_MD5) && self.salt.is_some(),
            external: self.enabled(crate::auth_bits::EXTERNAL),
            xoauth2: self.enabled(crate::auth_bits::XOAUTH2),
            oauthbearer: self.enabled(crate::auth_bits::OAUTHBEARER),
        }
    }
}
