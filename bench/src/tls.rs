//! The client side of the idle TLS figures: a throwaway self-signed
//! certificate made with the openssl command at start, and a rustls client
//! that trusts exactly that certificate (pinned by its bytes) and nothing
//! else, so the handshake is a real one with a real signature check.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub connector: TlsConnector,
}

/// An ECDSA P-256 key: the cheapest handshake for nginx, so that opening
/// thousands of sessions stays quick; the memory held per idle session does
/// not depend on the key type once the handshake is over.
pub fn setup(dir: &Path) -> Result<Tls, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cert = dir.join("bench.crt");
    let key = dir.join("bench.key");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=mailbench.invalid", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let pinned = CertificateDer::from_pem_file(&cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .into_owned();
    let provider = Arc::new(ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { pinned, provider }))
        .with_no_client_auth();
    Ok(Tls {
        cert,
        key,
        connector: TlsConnector::from(Arc::new(config)),
    })
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("mailbench.invalid").expect("a valid DNS name")
}

/// Trusts the one certificate the bench made; checks handshake signatures
/// against it as any client would.
#[derive(Debug)]
struct Pinned {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server side for the TLS backends, with the same certificate: nginx
/// does not verify it (`proxy_ssl_verify off`, the default). rustls keeps a
/// session cache by default, so `proxy_ssl_session_reuse on` resumes.
pub fn acceptor(t: &Tls) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::PrivateKeyDer;
    let chain = vec![CertificateDer::from_pem_file(&t.cert)
        .map_err(|e| format!("{}: {e}", t.cert.display()))?
        .into_owned()];
    let key = PrivateKeyDer::from_pem_file(&t.key)
        .map_err(|e| format!("{}: {e}", t.key.display()))?
        .clone_key();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("rustls: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
