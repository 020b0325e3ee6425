//! The auth_http protocol of nginx's mail proxy: the request nginx sends
//! (`ngx_mail_auth_http_create_request`) and the response it accepts
//! (`ngx_mail_auth_http_process_headers`), byte for byte.

use std::net::{IpAddr, SocketAddr};

use crate::AuthMethod;

/// `Proxy-Protocol-*` values, when the client sent a PROXY header.
pub struct ProxyProtocolInfo<'a> {
    pub src_addr: &'a [u8],
    pub src_port: u16,
    pub dst_addr: &'a [u8],
    pub dst_port: u16,
}

/// `Auth-SSL-*` values of a TLS session; empty values are left out.
#[derive(Default)]
pub struct SslInfo<'a> {
    pub protocol: &'a [u8],
    pub cipher: &'a [u8],
    pub verify: &'a [u8],
    pub subject: &'a [u8],
    pub issuer: &'a [u8],
    pub serial: &'a [u8],
    pub fingerprint: &'a [u8],
    /// The SHA-256 digest of the certificate, in lowercase hex, as
    /// freenginx 1.27.4 sends it.
    pub fingerprint_sha256: &'a [u8],
    /// The client certificate in PEM, already url-escaped.
    pub cert: &'a [u8],
}

/// `Auth-SMTP-*` values, for `smtp_auth none`.
pub struct SmtpEnvelope<'a> {
    pub helo: &'a [u8],
    pub from: &'a [u8],
    pub to: &'a [u8],
}

pub struct Request<'a> {
    pub uri: &'a [u8],
    pub host: &'a [u8],
    pub method: AuthMethod,
    pub login: &'a [u8],
    pub passwd: &'a [u8],
    /// The session salt (CRLF-terminated), for APOP and CRAM-MD5.
    pub salt: &'a [u8],
    pub protocol: &'a [u8],
    pub login_attempt: usize,
    pub client_ip: &'a [u8],
    pub client_host: &'a [u8],
    pub proxy_protocol: Option<ProxyProtocolInfo<'a>>,
    pub smtp: Option<SmtpEnvelope<'a>>,
    pub ssl: Option<SslInfo<'a>>,
    /// `auth_http_header` lines, each CRLF-terminated.
    pub extra_headers: &'a [u8],
    /// `auth_http_keepalive` (ours): HTTP/1.1 and `Connection: keep-alive`
    /// so the connection may carry the next login's request; stock's
    /// HTTP/1.0 otherwise.
    pub keepalive: bool,
}

/// Lowercase hex, as nginx's `ngx_hex_dump` writes digests.
pub fn hex_lower(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(2));
    for &b in bytes {
        out.extend(DIGITS.get(usize::from(b >> 4)));
        out.extend(DIGITS.get(usize::from(b & 15)));
    }
    out
}

/// Escapes as `NGX_ESCAPE_MAIL_AUTH`: control characters, space and `%`.
pub fn escape(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        if b <= 0x20 || b == b'%' {
            out.push(b'%');
            out.extend(HEX.get(usize::from(b >> 4)));
            out.extend(HEX.get(usize::from(b & 15)));
        } else {
            out.push(b);
        }
    }
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl Request<'_> {
    /// True when the client's own password is not sent upstream and the auth
    /// server must supply `Auth-Pass`.
    pub fn salted(&self) -> bool {
        matches!(self.method, AuthMethod::Apop | AuthMethod::CramMd5) && !self.salt.is_empty()
    }

    pub fn build(&self) -> Vec<u8> {
        let escaped = self.login.len().saturating_add(self.passwd.len());
        let mut out = Vec::with_capacity(escaped.saturating_mul(3).saturating_add(512));
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.uri);
        if self.keepalive {
            out.extend_from_slice(b" HTTP/1.1\r\n");
            header(&mut out, "Host", self.host);
            header(&mut out, "Connection", b"keep-alive");
        } else {
            out.extend_from_slice(b" HTTP/1.0\r\n");
            header(&mut out, "Host", self.host);
        }
        header(&mut out, "Auth-Method", self.method.http_name().as_bytes());
        out.extend_from_slice(b"Auth-User: ");
        escape(self.login, &mut out);
        out.extend_from_slice(b"\r\nAuth-Pass: ");
        escape(self.passwd, &mut out);
        out.extend_from_slice(b"\r\n");
        if self.salted() {
            out.extend_from_slice(b"Auth-Salt: ");
            out.extend_from_slice(self.salt);
        }
        header(&mut out, "Auth-Protocol", self.protocol);
        header(
            &mut out,
            "Auth-Login-Attempt",
            self.login_attempt.to_string().as_bytes(),
        );
        header(&mut out, "Client-IP", self.client_ip);
        if !self.client_host.is_empty() {
            header(&mut out, "Client-Host", self.client_host);
        }
        if let Some(pp) = &self.proxy_protocol {
            header(&mut out, "Proxy-Protocol-Addr", pp.src_addr);
            header(
                &mut out,
                "Proxy-Protocol-Port",
                pp.src_port.to_string().as_bytes(),
            );
            header(&mut out, "Proxy-Protocol-Server-Addr", pp.dst_addr);
            header(
                &mut out,
                "Proxy-Protocol-Server-Port",
                pp.dst_port.to_string().as_bytes(),
            );
        }
        if let Some(smtp) = &self.smtp {
            header(&mut out, "Auth-SMTP-Helo", smtp.helo);
            header(&mut out, "Auth-SMTP-From", smtp.from);
            header(&mut out, "Auth-SMTP-To", smtp.to);
        }
        if let Some(ssl) = &self.ssl {
            out.extend_from_slice(b"Auth-SSL: on\r\n");
            for (name, value) in [
                ("Auth-SSL-Protocol", ssl.protocol),
                ("Auth-SSL-Cipher", ssl.cipher),
                ("Auth-SSL-Verify", ssl.verify),
                ("Auth-SSL-Subject", ssl.subject),
                ("Auth-SSL-Issuer", ssl.issuer),
                ("Auth-SSL-Serial", ssl.serial),
                ("Auth-SSL-Fingerprint", ssl.fingerprint),
                ("Auth-SSL-Fingerprint-SHA256", ssl.fingerprint_sha256),
                ("Auth-SSL-Cert", ssl.cert),
            ] {
                if !value.is_empty() {
                    header(&mut out, name, value);
                }
            }
        }
        out.extend_from_slice(self.extra_headers);
        out.extend_from_slice(b"\r\n");
        out
    }
}

pub mod cache;
pub mod failover;
mod framing;
pub(crate) mod response;
pub use framing::{frame, Frame, DRAIN_LIMIT};
pub use response::{decide, parse_response, Decision, ParseError, Response, Status};

#[cfg(test)]
mod tests;

/// Parses an `Auth-Server` value the way `ngx_parse_addr` does: an IP literal.
pub fn parse_server(addr: &[u8], port: u16) -> Option<SocketAddr> {
    let text = std::str::from_utf8(addr).ok()?;
    let ip: IpAddr = text.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}
