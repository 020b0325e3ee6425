//! The PROXY protocol v2 header towards a backend, laid out as nginx 1.31.4
//! writes it (`proxy_protocol v2`): the addresses of the client connection,
//! the TLS facts of a TLS client as TLVs, and a CRC32c TLV over the whole.
//! nginx 1.28 has no v2 writer, so the module builds the header here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

const CMD_LOCAL: u8 = 0;
const CMD_PROXY: u8 = 1;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 1;
const AF_INET6: u8 = 2;
const TYPE_STREAM: u8 = 1;

const TLV_ALPN: u8 = 0x01;
const TLV_AUTHORITY: u8 = 0x02;
const TLV_CRC32C: u8 = 0x03;
const TLV_SSL: u8 = 0x20;
const TLV_SSL_VERSION: u8 = 0x21;
const TLV_SSL_CN: u8 = 0x22;
const TLV_SSL_CIPHER: u8 = 0x23;
const TLV_SSL_SIG_ALG: u8 = 0x24;
const TLV_SSL_KEY_ALG: u8 = 0x25;

/// `PP2_CLIENT_SSL`: the client connected over TLS.
pub const CLIENT_SSL: u8 = 0x01;
/// `PP2_CLIENT_CERT_CONN`: it sent a certificate on this connection.
pub const CLIENT_CERT_CONN: u8 = 0x02;
/// `PP2_CLIENT_CERT_SESS`: it sent one in this TLS session.
pub const CLIENT_CERT_SESS: u8 = 0x04;

/// What the `PP2_TYPE_SSL` TLV and its neighbours say of a TLS client.
#[derive(Debug, Default)]
pub struct TlsFacts<'a> {
    /// The SNI name the client asked for (`PP2_TYPE_AUTHORITY`).
    pub authority: &'a [u8],
    /// The protocol ALPN chose (`PP2_TYPE_ALPN`).
    pub alpn: &'a [u8],
    /// `PP2_CLIENT_*` bits.
    pub client: u8,
    /// The certificate verification result: 0 when verified; 1
    /// (`X509_V_ERR_UNSPECIFIED`) without a certificate.
    pub verify: u32,
    pub version: &'a [u8],
    /// The common name of the client certificate's subject.
    pub cn: &'a [u8],
    pub cipher: &'a [u8],
    /// The signature algorithm of the proxy's own certificate.
    pub sig_alg: &'a [u8],
    /// The key algorithm and size of the proxy's own certificate (`RSA2048`).
    pub key_alg: &'a [u8],
}

/// The client's address and the address it connected to, when both are IP
/// addresses (anything else is sent as a `LOCAL` header).
pub type Addresses = Option<(SocketAddr, SocketAddr)>;

/// The header for a client connection: `addrs` (source, destination) and,
/// for a TLS client, its facts.
pub fn v2_header(addrs: Addresses, tls: Option<&TlsFacts<'_>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(SIGNATURE);
    match addrs {
        None => {
            out.push(0x20 | CMD_LOCAL);
            out.push(AF_UNSPEC << 4);
            out.extend_from_slice(&[0, 0]);
        }
        Some((src, dst)) => {
            out.push(0x20 | CMD_PROXY);
            match (v4(src), v4(dst)) {
                // both IPv4 (or both IPv4-mapped): the short form
                (Some(s), Some(d)) => {
                    out.push(AF_INET << 4 | TYPE_STREAM);
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                _ => {
                    out.push(AF_INET6 << 4 | TYPE_STREAM);
                    out.extend_from_slice(&[0, 0]);
                    out.extend_from_slice(&v6(src.ip()).octets());
                    out.extend_from_slice(&v6(dst.ip()).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
    if let Some(tls) = tls {
        if !tls.authority.is_empty() {
            tlv(&mut out, TLV_AUTHORITY, tls.authority);
        }
        if !tls.alpn.is_empty() {
            tlv(&mut out, TLV_ALPN, tls.alpn);
        }
        let mut ssl = vec![tls.client];
        ssl.extend_from_slice(&tls.verify.to_be_bytes());
        for (kind, value, always) in [
            (TLV_SSL_VERSION, tls.version, true),
            (TLV_SSL_CN, tls.cn, false),
            (TLV_SSL_CIPHER, tls.cipher, true),
            (TLV_SSL_SIG_ALG, tls.sig_alg, true),
            (TLV_SSL_KEY_ALG, tls.key_alg, false),
        ] {
            if always || !value.is_empty() {
                tlv(&mut ssl, kind, value);
            }
        }
        tlv(&mut out, TLV_SSL, &ssl);
    }
    // the checksum covers the whole header with its own value zeroed
    tlv(&mut out, TLV_CRC32C, &[0; 4]);
    let len = u16::try_from(out.len().saturating_sub(16)).unwrap_or(u16::MAX);
    if let Some(field) = out.get_mut(14..16) {
        field.copy_from_slice(&len.to_be_bytes());
    }
    let crc = crc32c(&out);
    let end = out.len();
    if let Some(value) = out.get_mut(end.saturating_sub(4)..) {
        value.copy_from_slice(&crc.to_be_bytes());
    }
    out
}

fn v4(addr: SocketAddr) -> Option<Ipv4Addr> {
    match addr.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// A TLV; a value over 64 KiB is cut (none of ours comes near).
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let value = value.get(..usize::from(u16::MAX)).unwrap_or(value);
    out.push(kind);
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(value);
}

/// CRC-32C (Castagnoli), as the PROXY protocol's `PP2_TYPE_CRC32C` wants.
pub fn crc32c(data: &[u8]) -> u32 {
    const POLY: u32 = 0x82f6_3b78;
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn ipv4_without_tls() {
        let h = v2_header(Some((addr("192.0.2.1:1234"), addr("192.0.2.2:110"))), None);
        assert_eq!(&h[..12], SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]) as usize, h.len() - 16);
        assert_eq!(
            &h[16..28],
            &[192, 0, 2, 1, 192, 0, 2, 2, 0x04, 0xd2, 0, 110]
        );
        assert_eq!(&h[28..31], &[TLV_CRC32C, 0, 4]);
        assert_eq!(h.len(), 35);
        let mut zeroed = h.clone();
        zeroed[31..].fill(0);
        assert_eq!(&h[31..], &crc32c(&zeroed).to_be_bytes());
    }

    #[test]
    fn mapped_and_mixed_families() {
        let h = v2_header(
            Some((addr("[::ffff:192.0.2.1]:1"), addr("[::ffff:192.0.2.2]:2"))),
            None,
        );
        assert_eq!(h[13], 0x11, "both mapped: IPv4");
        let h = v2_header(Some((addr("192.0.2.1:1"), addr("[2001:db8::1]:2"))), None);
        assert_eq!(h[13], 0x21);
        assert_eq!(
            &h[16..32],
            &Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets()
        );
        assert_eq!(h.len(), 16 + 36 + 7);
        let h = v2_header(None, None);
        assert_eq!((h[12], h[13], h.len()), (0x20, 0x00, 23));
    }

    #[test]
    fn tls_facts_as_tlvs() {
        let tls = TlsFacts {
            authority: b"mail.example",
            client: CLIENT_SSL,
            verify: 1,
            version: b"TLSv1.3",
            cipher: b"TLS_AES_256_GCM_SHA384",
            sig_alg: b"RSA-SHA256",
            key_alg: b"RSA2048",
            ..Default::default()
        };
        let h = v2_header(Some((addr("192.0.2.1:1"), addr("192.0.2.2:2"))), Some(&tls));
        let tlvs = &h[28..];
        assert_eq!(&tlvs[..3], &[TLV_AUTHORITY, 0, 12]);
        assert_eq!(&tlvs[3..15], b"mail.example");
        let ssl = &tlvs[15..];
        assert_eq!(ssl[0], TLV_SSL);
        let len = u16::from_be_bytes([ssl[1], ssl[2]]) as usize;
        let body = &ssl[3..3 + len];
        assert_eq!(&body[..5], &[CLIENT_SSL, 0, 0, 0, 1]);
        assert_eq!(&body[5..8], &[TLV_SSL_VERSION, 0, 7]);
        assert_eq!(&body[8..15], b"TLSv1.3");
        assert_eq!(body[15], TLV_SSL_CIPHER, "no CN without a certificate");
        assert_eq!(&ssl[3 + len..3 + len + 3], &[TLV_CRC32C, 0, 4]);
    }
}
