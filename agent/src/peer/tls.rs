//! TLS between agents, with the node's own certificate (`node.crt`, `node.key`) on both sides
//! and `cluster.crt` as the only trust anchor.

use std::path::Path;
use std::sync::Arc;

use flocker_api::certificates::{self, CertificateError};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// The files in the directory holding `agent.yml`.
pub struct NodeFiles<'a> {
    pub directory: &'a Path,
}

impl NodeFiles<'_> {
    fn cluster(&self) -> std::path::PathBuf {
        self.directory.join("cluster.crt")
    }
    fn certificate(&self) -> std::path::PathBuf {
        self.directory.join("node.crt")
    }
    fn key(&self) -> std::path::PathBuf {
        self.directory.join("node.key")
    }
}

/// The receiver's side: presents the node's certificate, and requires one chained to
/// `cluster.crt` from every caller, in the handshake (its CN says which node calls).
pub fn server_config(files: &NodeFiles<'_>) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for root in certificates::load_certificates(&files.cluster())? {
        roots.add(root)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let identity = certificates::load_identity(&files.certificate(), &files.key())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The sender's side: trusts only `cluster.crt` and presents the node's certificate.
pub fn client_config(files: &NodeFiles<'_>) -> Result<TlsConfig, CertificateError> {
    let der = |c: &rustls::pki_types::CertificateDer<'_>| Certificate::from_der(c).to_owned();
    let roots: Vec<Certificate<'static>> =
        certificates::load_certificates(&files.cluster())?.iter().map(der).collect();
    let identity = certificates::load_identity(&files.certificate(), &files.key())?;
    let chain: Vec<Certificate<'static>> = identity.chain.iter().map(der).collect();
    let key_path = files.key();
    let malformed = |reason: String| CertificateError::Malformed { path: key_path.clone(), reason };
    let pkcs8 = certificates::pkcs8(&identity.key)
        .ok_or_else(|| malformed("an unsupported key type".into()))?;
    let pem = certificates::pem("PRIVATE KEY", &pkcs8);
    let key = PrivateKey::from_pem(pem.as_bytes()).map_err(|e| malformed(e.to_string()))?;
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(Some(ClientCert::new_with_certs(&chain, key)))
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
}
