//! The service's TLS: it presents `control-service.crt`, requires a client certificate chained
//! to `cluster.crt`, and accepts only those whose subject CN starts with the port's prefix
//! (`user-` for the REST API, `node-` for the agent API). Every check happens in the handshake,
//! so a request without a valid certificate never reaches a handler.
//!
//! Flocker's `flocker-ca` never set a certificate's version, so a Flocker 1.x cluster's
//! certificates are X.509 v1 that carry v3 extensions all the same, which WebPKI (rustls's
//! verifier) will not parse. They are taken anyway where that is safe:
//! - `cluster.crt`: a trust anchor is only a subject and a public key, read here;
//! - `control-service.crt`: rustls sends it without parsing it once its key is checked here;
//! - client certificates, only with `--tls-library openssl`: the system's OpenSSL verifies a v1
//!   one's chain, as Flocker's own services did, and ring its handshake signature against its
//!   public key. v3 ones always go through WebPKI; by default v1 ones are refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flocker_api::certificates::{self, CertificateError};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    DigitallySignedStruct, DistinguishedName, InconsistentKeys, RootCertStore, ServerConfig,
    SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use crate::throttle::Throttled;
use crate::untrusted::Untrusted;

mod version_1;

use version_1::{
    OpenSslChains, Tls, is_version_1, verify_signature_with_key, version_1_trust_anchor,
};

/// The prefix REST clients' CNs must have.
pub const USER_PREFIX: &str = "user-";
/// The prefix agents' CNs must have.
pub const NODE_PREFIX: &str = "node-";

/// What a client may offer in ALPN. A client offering neither (`h2` alone, say) is refused
/// with TLS's `no_application_protocol` alert rather than answered in a protocol it did not
/// ask for; one offering no ALPN at all is served HTTP/1.1, as by Flocker.
const ALPN: [&[u8]; 2] = [b"http/1.1", b"http/1.0"];

/// `--tls-library`: how client certificates are verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsLibrary {
    /// WebPKI (rustls): X.509 v3 client certificates only.
    #[default]
    Rustls,
    /// The system's OpenSSL for X.509 v1 client certificates (those of Flocker 1.x's
    /// `flocker-ca`), WebPKI for v3 ones.
    Openssl,
}

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
    #[error("OpenSSL cannot use {} as the cluster's trust anchor", path.display())]
    OpenSslRoot {
        path: PathBuf,
        #[source]
        source: openssl::error::ErrorStack,
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
    library: TlsLibrary,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = certificates::load_certificates(&files.cluster)?;
    let anchors = trust_anchors(&files.cluster, &roots)?;
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(anchors), provider.clone())
        .build()
        .map_err(TlsSetupError::Verifier)?;
    let version_1 = match library {
        TlsLibrary::Rustls => None,
        TlsLibrary::Openssl => Some(OpenSslChains::new(&files.cluster, &roots)?),
    };
    let verifier = Arc::new(ClusterClients {
        webpki,
        version_1,
        algorithms: provider.signature_verification_algorithms,
        prefix: client_prefix,
        refused: Throttled::new(log::Level::Warn),
        wrong_port: Throttled::new(log::Level::Info),
    });
    let identity = service_identity(files, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsSetupError::BadIdentity { path: files.certificate.clone(), source })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
    config.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// `cluster.crt`'s certificates as trust anchors. WebPKI reads v3 ones (and v1 ones without
/// extensions) itself; a v1 certificate with extensions, as `flocker-ca` made them, it calls
/// `BadEncoding`, so that is read here.
fn trust_anchors(
    path: &Path,
    roots: &[CertificateDer<'static>],
) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        if let Err(source) = store.add(root.clone()) {
            let anchor = version_1_trust_anchor(root)
                .ok_or_else(|| TlsSetupError::BadRoot { path: path.to_owned(), source })?;
            store.roots.push(anchor);
        }
    }
    Ok(store)
}

/// `control-service.crt` and its key, which may be X.509 v1: rustls's own check that they
/// match (`with_single_cert`) parses the certificate with WebPKI, so the check is made here.
fn service_identity(
    files: &ServiceCertificates,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let path = &files.certificate;
    let chain = certificates::load_certificates(path)?;
    let key = provider
        .key_provider
        .load_private_key(certificates::load_private_key(&files.key)?)
        .map_err(|source| TlsSetupError::BadIdentity { path: path.clone(), source })?;
    let (_, certificate) = X509Certificate::from_der(&chain[0])
        .map_err(|e| CertificateError::Malformed { path: path.clone(), reason: e.to_string() })?;
    if key.public_key().is_some_and(|spki| spki.as_ref() != certificate.public_key().raw) {
        let source = InconsistentKeys::KeyMismatch.into();
        return Err(TlsSetupError::BadIdentity { path: path.clone(), source });
    }
    if certificate.version() == X509Version::V1 {
        log::warn!(
            "{} is an X.509 v1 certificate (Flocker's flocker-ca made it): Flocker's own \
             clients accept it, but ours (flockerctl, the isolator) only with OpenSSL \
             (--tls-library openssl, tls_library=openssl) and flocker-dataset-agent not at all; \
             `flockerctl ca create-control-certificate` makes a v3 one",
            path.display()
        );
    }
    warn_unless_named_control_service(path, &chain[0]);
    Ok(CertifiedKey::new(chain, key))
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

/// The cluster's clients on one port: a chain to `cluster.crt` (WebPKI, or OpenSSL for v1
/// certificates when allowed), then the CN prefix.
#[derive(Debug)]
struct ClusterClients {
    webpki: Arc<dyn ClientCertVerifier>,
    /// With `--tls-library openssl`.
    version_1: Option<OpenSslChains>,
    /// The handshake signatures accepted, as in `webpki`.
    algorithms: WebPkiSupportedAlgorithms,
    prefix: &'static str,
    /// Refused v1 certificates, which anyone can make.
    refused: Throttled,
    /// Certificates of the cluster presented on the other port.
    wrong_port: Throttled,
}

impl ClusterClients {
    /// Whether `certificate` is one whose chain OpenSSL verified, so whose handshake signature
    /// is checked here rather than by WebPKI (which would not parse it).
    fn verified_by_openssl(&self, certificate: &CertificateDer<'_>) -> bool {
        self.version_1.is_some() && is_version_1(certificate)
    }
}

impl ClusterClients {
    /// A handshake signature: against the key of a certificate OpenSSL verified, else by WebPKI.
    fn verify_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
        tls: Tls,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.verified_by_openssl(certificate) {
            let (scheme, bytes) = (signature.scheme, signature.signature());
            return verify_signature_with_key(
                message,
                certificate,
                scheme,
                bytes,
                &self.algorithms,
                tls,
            );
        }
        match tls {
            Tls::V12 => self.webpki.verify_tls12_signature(message, certificate, signature),
            Tls::V13 => self.webpki.verify_tls13_signature(message, certificate, signature),
        }
    }
}

impl ClientCertVerifier for ClusterClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let common_name = certificates::common_name(end_entity);
        let shown = Untrusted(common_name.as_deref().unwrap_or_default());
        if !is_version_1(end_entity) {
            self.webpki.verify_client_cert(end_entity, intermediates, now)?;
        } else if let Some(openssl) = &self.version_1 {
            openssl.verify(end_entity, intermediates, now).map_err(|refused| {
                self.refused.log(|| {
                    format!(
                        "refused the X.509 v1 client certificate with CN {shown}: {}",
                        refused.reason
                    )
                });
                refused.error
            })?;
        } else {
            self.refused.log(|| {
                format!(
                    "refused the X.509 v1 client certificate with CN {shown}: Flocker's \
                     flocker-ca made such certificates; start flocker-control with \
                     --tls-library openssl to accept them"
                )
            });
            let error = Arc::new(webpki::Error::UnsupportedCertVersion);
            return Err(rustls::CertificateError::Other(rustls::OtherError(error)).into());
        }
        let common_name = common_name
            .as_deref()
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if common_name.starts_with(self.prefix) {
            Ok(ClientCertVerified::assertion())
        } else {
            self.wrong_port.log(|| {
                format!(
                    "refused a client certificate with CN {shown}: this port accepts only {}* \
                     certificates",
                    self.prefix
                )
            });
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
        self.verify_signature(message, certificate, signature, Tls::V12)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, certificate, signature, Tls::V13)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
