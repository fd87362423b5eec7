//! Reading the PEM files of a Flocker cluster (`cluster.crt`, `<user>.crt/.key`, `node.crt`, …)
//! and the few facts we need from a certificate: its CN, OU and X.509 version.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{AttributeTypeAndValue, FromDer, GeneralName, X509Certificate};

use crate::ids::NodeUuid;

/// A certificate file that could not be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not a valid X.509 certificate: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{} has no subject CN", path.display())]
    NoCommonName { path: PathBuf },
    #[error("the CN of {} is '{cn}', not node-<uuid>", path.display())]
    NotANodeCertificate { path: PathBuf, cn: String },
    #[error(
        "{} is an X.509 v1 certificate, as Flocker's flocker-ca made them; rustls accepts only \
         v3: re-issue the cluster's certificates with `flockerctl ca` (README: \"Migrating a \
         Flocker cluster\")",
        path.display()
    )]
    VersionOne { path: PathBuf },
}

/// A certificate chain and its private key: what a client or server presents.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The facts we use from a certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    /// The cluster UUID, in certificates made by `flocker-ca` or `flockerctl ca`.
    pub organizational_unit: Option<String>,
    /// 1 or 3 (X.509 counts from 1; the DER field from 0).
    pub x509_version: u32,
}

/// Every certificate in a PEM file, in order.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let pem = read(path)?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| malformed(path, e))?;
    if certificates.is_empty() {
        return Err(CertificateError::NoCertificate { path: path.to_owned() });
    }
    Ok(certificates)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            CertificateError::NoKey { path: path.to_owned() }
        }
        other => malformed(path, other),
    })
}

/// A certificate chain and its key, each checked to be X.509 v3.
pub fn load_identity(certificate: &Path, key: &Path) -> Result<Identity, CertificateError> {
    let chain = load_v3_certificates(certificate)?;
    Ok(Identity { chain, key: load_private_key(key)? })
}

/// Like [`load_certificates`], but refuses X.509 v1 certificates with a message that says what
/// to do, instead of the handshake failing later with rustls's `UnsupportedCertVersion`.
pub fn load_v3_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let certificates = load_certificates(path)?;
    for certificate in &certificates {
        if subject(path, certificate)?.x509_version == 1 {
            return Err(CertificateError::VersionOne { path: path.to_owned() });
        }
    }
    Ok(certificates)
}

/// The subject of one DER certificate; `path` only names it in errors.
pub fn subject(path: &Path, der: &CertificateDer<'_>) -> Result<Subject, CertificateError> {
    let (_, certificate) = X509Certificate::from_der(der).map_err(|e| malformed(path, e))?;
    let subject = certificate.subject();
    let common_name = first(subject.iter_common_name())
        .ok_or_else(|| CertificateError::NoCommonName { path: path.to_owned() })?;
    Ok(Subject {
        common_name,
        organizational_unit: first(subject.iter_organizational_unit()),
        x509_version: certificate.version().0 + 1,
    })
}

/// The subject CN of a certificate met in a handshake (already verified, so no file to name).
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    first(certificate.subject().iter_common_name())
}

/// The DNS names among a certificate's subject alternative names.
pub fn dns_names(path: &Path, der: &CertificateDer<'_>) -> Result<Vec<String>, CertificateError> {
    let (_, certificate) = X509Certificate::from_der(der).map_err(|e| malformed(path, e))?;
    let names = certificate.subject_alternative_name().map_err(|e| malformed(path, e))?;
    Ok(names
        .into_iter()
        .flat_map(|extension| extension.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect())
}

/// The first attribute of a kind, as text.
fn first<'a>(mut values: impl Iterator<Item = &'a AttributeTypeAndValue<'a>>) -> Option<String> {
    values.next().and_then(|attribute| attribute.as_str().ok()).map(str::to_owned)
}

/// The subject of the first certificate in a PEM file.
pub fn subject_of_file(path: &Path) -> Result<Subject, CertificateError> {
    let certificates = load_certificates(path)?;
    subject(path, &certificates[0])
}

/// A node's UUID, read from the CN (`node-<uuid>`) of its `node.crt`.
pub fn node_uuid_of_file(path: &Path) -> Result<NodeUuid, CertificateError> {
    let cn = subject_of_file(path)?.common_name;
    node_uuid_of_common_name(&cn)
        .ok_or_else(|| CertificateError::NotANodeCertificate { path: path.to_owned(), cn })
}

/// `node-<uuid>` → the UUID.
pub fn node_uuid_of_common_name(cn: &str) -> Option<NodeUuid> {
    cn.strip_prefix("node-")?.parse().ok()
}

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|source| CertificateError::Read { path: path.to_owned(), source })
}

fn malformed(path: &Path, reason: impl std::fmt::Display) -> CertificateError {
    CertificateError::Malformed { path: path.to_owned(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_uuid_comes_from_a_node_common_name_only() {
        let uuid = "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(node_uuid_of_common_name(&format!("node-{uuid}")).unwrap().to_string(), uuid);
        assert!(node_uuid_of_common_name(&format!("user-{uuid}")).is_none());
        assert!(node_uuid_of_common_name("node-eth0").is_none());
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let error = load_certificates(Path::new("/nonexistent/cluster.crt")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/cluster.crt"), "{error}");
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.crt");
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(load_certificates(&path), Err(CertificateError::NoCertificate { .. })));
        assert!(matches!(load_private_key(&path), Err(CertificateError::NoKey { .. })));
    }
}
