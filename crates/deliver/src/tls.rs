//! TLS for outbound connections. Opportunistic: encrypt when the server
//! offers STARTTLS, without verifying its certificate (RFC 7435: better than
//! plaintext; downstream relays commonly use self-signed certificates).
//! Signatures are still checked, so the handshake itself is sound. Verified:
//! for smart hosts configured with `verify`, the chain must lead to a trusted
//! root and name the host; the roots are the system bundle unless given.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use vocabulary::Reply;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

pub fn opportunistic_connector() -> TlsConnector {
    let provider: CryptoProvider = rustls::crypto::ring::default_provider();
    let algorithms = provider.signature_verification_algorithms;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(algorithms)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Where common systems keep their CA bundle (Debian/Ubuntu, Fedora/RHEL,
/// Alpine/BSD, openSUSE).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The opportunistic connector, and a verifying one built on first use so a
/// machine without a CA bundle only fails the destinations that need it.
pub struct Connectors {
    pub any: TlsConnector,
    roots: Option<RootCertStore>,
    verified: OnceLock<Result<TlsConnector, String>>,
}

impl Connectors {
    pub fn new(any: TlsConnector, roots: Option<RootCertStore>) -> Self {
        Connectors { any, roots, verified: OnceLock::new() }
    }

    /// The connector for `verify`; the error is the reply for the attempt.
    pub fn get(&self, verify: bool) -> Result<&TlsConnector, Reply> {
        if !verify {
            return Ok(&self.any);
        }
        self.verified
            .get_or_init(|| {
                let roots = match &self.roots {
                    Some(r) => r.clone(),
                    None => system_roots()?,
                };
                verified_connector(roots)
            })
            .as_ref()
            .map_err(|e| Reply::new(451, "4.7.5", format!("cannot verify certificates: {e}")))
    }
}

fn system_roots() -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for path in SYSTEM_BUNDLES {
        let Ok(certs) = rustls::pki_types::CertificateDer::pem_file_iter(path) else { continue };
        roots.add_parsable_certificates(certs.filter_map(Result::ok));
        if !roots.is_empty() {
            return Ok(roots);
        }
    }
    Err("no CA bundle found in the usual places".into())
}

fn verified_connector(roots: RootCertStore) -> Result<TlsConnector, String> {
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
