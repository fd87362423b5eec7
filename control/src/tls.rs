//! The service's TLS: it presents `control-service.crt`, requires a client certificate chained
//! to `cluster.crt`, and accepts only those whose subject CN starts with the port's prefix
//! (`user-` for the REST API, `node-` for the agent API). Every check happens in the handshake,
//! so a request without a valid certificate never reaches a handler.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flocker_api::certificates::{self, CertificateError};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

/// The prefix REST clients' CNs must have.
pub const USER_PREFIX: &str = "user-";
/// The prefix agents' CNs must have.
pub const NODE_PREFIX: &str = "node-";

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("{} cannot be used as the cluster's trust anchor", path.display())]
    BadRoot {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot set up TLS with {} and its key", path.display())]
    BadIdentity {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot set up client certificate checks")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The files of a control node's `--certificates-directory`.
pub struct ServiceCertificates {
    pub cluster: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl ServiceCertificates {
    pub fn in_directory(directory: &Path) -> Self {
        Self {
            cluster: directory.join("cluster.crt"),
            certificate: directory.join("control-service.crt"),
            key: directory.join("control-service.key"),
        }
    }
}

/// A server configuration for one port.
pub fn server_config(
    files: &ServiceCertificates,
    client_prefix: &'static str,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for root in certificates::load_certificates(&files.cluster)? {
        roots
            .add(root)
            .map_err(|source| TlsSetupError::BadRoot { path: files.cluster.clone(), source })?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(TlsSetupError::Verifier)?;
    let verifier = Arc::new(CommonNamePrefix { inner, prefix: client_prefix });
    let identity = certificates::load_identity(&files.certificate, &files.key)?;
    warn_unless_named_control_service(&files.certificate, &identity.chain[0]);
    let bad_identity =
        |source| TlsSetupError::BadIdentity { path: files.certificate.clone(), source };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(bad_identity)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(bad_identity)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Flocker's clients verify the name `control-service`, whatever address they dial; a
/// certificate without it works only for clients that check the dialled name.
fn warn_unless_named_control_service(path: &Path, certificate: &CertificateDer<'_>) {
    let names = certificates::dns_names(path, certificate).unwrap_or_default();
    if !names.iter().any(|name| name == "control-service") {
        log::warn!(
            "{} does not carry the name DNS:control-service; Flocker clients (and ours) verify \
             that name and will refuse this service",
            path.display()
        );
    }
}

/// WebPKI chain verification, then the CN prefix.
#[derive(Debug)]
struct CommonNamePrefix {
    inner: Arc<dyn ClientCertVerifier>,
    prefix: &'static str,
}

impl ClientCertVerifier for CommonNamePrefix {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let common_name = certificates::common_name(end_entity)
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if common_name.starts_with(self.prefix) {
            Ok(ClientCertVerified::assertion())
        } else {
            log::info!(
                "refused a client certificate with CN '{common_name}': this port accepts only \
                 {}* certificates",
                self.prefix
            );
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
