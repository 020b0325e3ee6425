//! What a PROXY v2 header says of the client connection, read from nginx
//! and OpenSSL: the two addresses and, for a TLS client, the facts nginx
//! 1.31.4 puts in its TLVs. `mail_core::proxy_protocol` lays them out.

use core::ffi::CStr;

use mail_core::proxy_protocol::{v2_header, Addresses};

use crate::nginx::Conn;

/// The v2 header for the client connection `c`; `None` when nginx cannot
/// tell the local address.
pub fn header(c: Conn) -> Option<Vec<u8>> {
    let local = c.local_addr();
    if local.is_none() && c.peer_addr().is_some() {
        // an IP client whose local address nginx could not tell
        return None;
    }
    let addrs: Addresses = c.peer_addr().zip(local);
    Some(with_tls(c, |tls| v2_header(addrs, tls)))
}

#[cfg(not(ngx_mail_ssl))]
fn with_tls<R>(_c: Conn, f: impl FnOnce(Option<&TlsFacts<'_>>) -> R) -> R {
    f(None)
}

#[cfg(ngx_mail_ssl)]
use mail_core::proxy_protocol::TlsFacts;

/// Runs `f` with the TLS facts of `c`, borrowed from OpenSSL for the call.
#[cfg(ngx_mail_ssl)]
fn with_tls<R>(c: Conn, f: impl FnOnce(Option<&TlsFacts<'_>>) -> R) -> R {
    use mail_core::proxy_protocol::{CLIENT_CERT_CONN, CLIENT_CERT_SESS, CLIENT_SSL};
    use nginx_sys::{
        ngx_ssl_ocsp_get_status, SSL_CIPHER_get_name, SSL_get0_alpn_selected,
        SSL_get1_peer_certificate, SSL_get_certificate, SSL_get_current_cipher, SSL_get_servername,
        SSL_get_verify_result, SSL_get_version, SSL_session_reused, TLSEXT_NAMETYPE_host_name,
        X509_free,
    };

    if !c.is_tls() {
        return f(None);
    }
    // SAFETY: c is a live TLS connection; every string OpenSSL returns
    // lives as long as its SSL object, which outlives this call.
    unsafe {
        let ssl = (*(*c.raw()).ssl).connection;
        let mut facts = TlsFacts {
            client: CLIENT_SSL,
            // X509_V_ERR_UNSPECIFIED: no certificate to verify
            verify: 1,
            version: c_str(SSL_get_version(ssl)),
            cipher: c_str(SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))),
            authority: c_str(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name as i32)),
            ..Default::default()
        };
        let mut alpn = core::ptr::null();
        let mut alpn_len = 0;
        SSL_get0_alpn_selected(ssl, &mut alpn, &mut alpn_len);
        if !alpn.is_null() {
            facts.alpn = core::slice::from_raw_parts(alpn, alpn_len as usize);
        }
        let peer = SSL_get1_peer_certificate(ssl);
        let cn = if peer.is_null() {
            None
        } else {
            facts.client |= CLIENT_CERT_SESS;
            if SSL_session_reused(ssl) == 0 {
                facts.client |= CLIENT_CERT_CONN;
            }
            let mut verify = SSL_get_verify_result(ssl);
            let mut status = core::ptr::null();
            // X509_V_ERR_CERT_REVOKED, as nginx reports a bad OCSP status
            if verify == 0 && ngx_ssl_ocsp_get_status(c.raw(), &mut status) != 0 {
                verify = 23;
            }
            facts.verify = u32::try_from(verify).unwrap_or(1);
            let cn = common_name(peer);
            X509_free(peer);
            cn
        };
        if let Some(cn) = &cn {
            facts.cn = cn;
        }
        let own = SSL_get_certificate(ssl);
        let key_alg;
        if !own.is_null() {
            facts.sig_alg = c_str(nginx_sys::OBJ_nid2sn(nginx_sys::X509_get_signature_nid(
                own,
            )));
            key_alg = key_algorithm(own);
            if let Some(k) = &key_alg {
                facts.key_alg = k;
            }
        }
        f(Some(&facts))
    }
}

/// A NUL-terminated string of OpenSSL's; empty for null.
///
/// # Safety
/// `p` is null or a C string that outlives the returned slice.
#[cfg(ngx_mail_ssl)]
unsafe fn c_str<'a>(p: *const core::ffi::c_char) -> &'a [u8] {
    if p.is_null() {
        return &[];
    }
    // SAFETY: as the caller promises.
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

/// The UTF-8 common name of a certificate's subject.
///
/// # Safety
/// `cert` is a live certificate.
#[cfg(ngx_mail_ssl)]
unsafe fn common_name(cert: *mut nginx_sys::X509) -> Option<Vec<u8>> {
    use nginx_sys::{
        ASN1_STRING_to_UTF8, CRYPTO_free, NID_commonName, X509_NAME_ENTRY_get_data,
        X509_NAME_get_entry, X509_NAME_get_index_by_NID, X509_get_subject_name,
    };
    // SAFETY: cert is live; the UTF-8 copy is OpenSSL's to free, here.
    unsafe {
        let subject = X509_get_subject_name(cert);
        if subject.is_null() {
            return None;
        }
        let i = X509_NAME_get_index_by_NID(subject, NID_commonName as i32, -1);
        if i < 0 {
            return None;
        }
        let mut utf8 = core::ptr::null_mut();
        let len = ASN1_STRING_to_UTF8(
            &mut utf8,
            X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)),
        );
        if len < 0 || utf8.is_null() {
            return None;
        }
        let cn = core::slice::from_raw_parts(utf8, len as usize).to_vec();
        CRYPTO_free(utf8.cast(), c"proxy_v2.rs".as_ptr(), 0);
        Some(cn)
    }
}

/// `RSA2048`, `EC256`, `DSA1024` for the proxy's own certificate key; `None`
/// for other key types, as nginx leaves the TLV out.
///
/// # Safety
/// `cert` is a live certificate.
#[cfg(ngx_mail_ssl)]
unsafe fn key_algorithm(cert: *mut nginx_sys::X509) -> Option<Vec<u8>> {
    use nginx_sys::{
        EVP_PKEY_free, EVP_PKEY_get_base_id, EVP_PKEY_get_bits, X509_get_pubkey, EVP_PKEY_DSA,
        EVP_PKEY_EC, EVP_PKEY_RSA, EVP_PKEY_RSA_PSS,
    };
    // SAFETY: cert is live; the key reference is ours and freed here.
    unsafe {
        let key = X509_get_pubkey(cert);
        if key.is_null() {
            return None;
        }
        let name = match EVP_PKEY_get_base_id(key) as u32 {
            EVP_PKEY_RSA | EVP_PKEY_RSA_PSS => Some("RSA"),
            EVP_PKEY_EC => Some("EC"),
            EVP_PKEY_DSA => Some("DSA"),
            _ => None,
        };
        let bits = EVP_PKEY_get_bits(key);
        EVP_PKEY_free(key);
        name.map(|name| format!("{name}{bits}").into_bytes())
    }
}
