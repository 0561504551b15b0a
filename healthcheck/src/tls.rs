//! TLS for `https` checks (rustls with ring): the name sent in SNI and
//! verified is the check's `host`, else the backend's address; the
//! authorities are the check's `ca_file`, else Mozilla's roots; `insecure`
//! accepts any certificate (the handshake's signatures are still checked).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::checks::CheckSpec;

/// Why TLS did not come up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The checker's side (a `ca_file` that cannot be read): an internal
    /// error, no verdict.
    #[error("{0}")]
    Setup(String),
    /// The backend's side (bad certificate, handshake failure): a failure.
    #[error("{0}")]
    Handshake(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The verifying config with Mozilla's roots, built once.
fn default_config() -> Result<Arc<ClientConfig>, TlsError> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let c = Arc::new(config(roots)?);
    Ok(CONFIG.get_or_init(|| c).clone())
}

/// The config of `spec`: its authorities are read at every probe, so that
/// a renewed `ca_file` is taken without a restart.
fn config_for(spec: &CheckSpec) -> Result<Arc<ClientConfig>, TlsError> {
    if spec.insecure {
        let mut c = config(RootCertStore::empty())?;
        c.dangerous()
            .set_certificate_verifier(Arc::new(AnyCertificate(provider())));
        return Ok(Arc::new(c));
    }
    let Some(path) = &spec.ca_file else {
        return default_config();
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Setup(format!("reading ca_file {}: {e}", path.display())))?;
    for c in certs {
        let c =
            c.map_err(|e| TlsError::Setup(format!("reading ca_file {}: {e}", path.display())))?;
        roots
            .add(c)
            .map_err(|e| TlsError::Setup(format!("ca_file {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Setup(format!(
            "ca_file {} holds no certificate",
            path.display()
        )));
    }
    Ok(Arc::new(config(roots)?))
}

/// TLS over `s` for `spec`.
pub async fn connect(s: TcpStream, spec: &CheckSpec) -> Result<TlsStream<TcpStream>, TlsError> {
    let name = match &spec.host {
        Some(h) => ServerName::try_from(h.clone())
            .map_err(|e| TlsError::Setup(format!("host \"{h}\" as a TLS name: {e}")))?,
        None => ServerName::IpAddress(spec.addr.into()),
    };
    TlsConnector::from(config_for(spec)?)
        .connect(name, s)
        .await
        .map_err(|e| TlsError::Handshake(format!("TLS: {e}")))
}

/// `insecure`: any certificate, any name.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
