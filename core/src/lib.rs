//! The protocol core of ngx-mail-rs.
//!
//! Everything a client, an auth server or an upstream sends is parsed here,
//! with no nginx symbols and no `unsafe`: bytes in, typed events and bytes
//! out. The nginx module (the FFI shell) owns sockets, timers and pools and
//! calls into this crate; `cargo test` covers it with no nginx running.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
// Arithmetic that could overflow is checked; the few offsets computed inside
// a slice say why they cannot overflow where they are allowed.
#![deny(clippy::arithmetic_side_effects)]
// Tests may index and unwrap: a panic there is a failed test, not a dead worker.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod action;
pub mod auth_http;
pub mod base64;
mod command;
mod config;
pub mod imap;
pub mod limit;
pub mod line;
pub mod metrics;
pub mod pop3;
pub mod proxy_protocol;
pub mod sasl;
pub mod session_log;
pub mod sieve;
pub mod smtp;
pub mod starttls;
pub mod upstream;

pub use action::{Action, Reply, Step};
pub use config::{Config, StartTls};

/// An authentication method, numbered as nginx numbers `s->auth_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Plain,
    Apop,
    CramMd5,
    External,
    /// Google's pre-RFC bearer token mechanism (freenginx 1.27.1).
    XOauth2,
    /// RFC 7628 (freenginx 1.27.1).
    OauthBearer,
    None,
}

impl AuthMethod {
    /// The value of the `Auth-Method` header sent to the auth server.
    pub fn http_name(self) -> &'static str {
        match self {
            AuthMethod::Plain => "plain",
            AuthMethod::Apop => "apop",
            AuthMethod::CramMd5 => "cram-md5",
            AuthMethod::External => "external",
            AuthMethod::XOauth2 => "xoauth2",
            AuthMethod::OauthBearer => "oauthbearer",
            AuthMethod::None => "none",
        }
    }

    /// Whether an `Auth-Error-SASL` answer is relayed to the client as a
    /// SASL error challenge (freenginx: the bearer token mechanisms only).
    pub fn takes_sasl_error(self) -> bool {
        matches!(self, AuthMethod::XOauth2 | AuthMethod::OauthBearer)
    }
}

/// Bits of the `*_auth` directives, as nginx's `NGX_MAIL_AUTH_*_ENABLED`
/// (XOAUTH2 and OAUTHBEARER, which stock 1.28 lacks, after NONE: the
/// values are ours, never handed to a stock module).
pub mod auth_bits {
    pub const PLAIN: usize = 0x0002;
    pub const LOGIN: usize = 0x0004;
    pub const APOP: usize = 0x0008;
    pub const CRAM_MD5: usize = 0x0010;
    pub const EXTERNAL: usize = 0x0020;
    pub const NONE: usize = 0x0040;
    pub const XOAUTH2: usize = 0x0080;
    pub const OAUTHBEARER: usize = 0x0100;
}

/// What the client proved: the login and secret to put in the auth request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub method: AuthMethod,
    pub login: Vec<u8>,
    /// The password, the APOP/CRAM-MD5 digest, or the bearer token.
    pub passwd: Vec<u8>,
}

/// A command the client got wrong, with the reason nginx logs at `info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid(pub Option<&'static str>);
