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

/// A private key as PKCS#8 DER, whatever form it was read in: OpenSSL-based TLS stacks take only
/// that one, while Flocker's and `openssl`'s keys may be PKCS#1 (`BEGIN RSA PRIVATE KEY`) or
/// SEC1 (`BEGIN EC PRIVATE KEY`). Wrapping needs no parsing of the key itself.
pub fn pkcs8(key: &PrivateKeyDer<'_>) -> Option<Vec<u8>> {
    /// AlgorithmIdentifier { rsaEncryption, NULL }
    const RSA: &[u8] =
        &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    /// id-ecPublicKey
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// The named curves an EC key may say it is on: P-256, P-384, P-521.
    const CURVES: [&[u8]; 3] = [
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
    ];
    let (algorithm, inner) = match key {
        PrivateKeyDer::Pkcs8(key) => return Some(key.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(key) => (RSA.to_vec(), key.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(key) => {
            let der = key.secret_sec1_der();
            let curve =
                CURVES.iter().find(|curve| der.windows(curve.len()).any(|w| w == **curve))?;
            (der_element(0x30, &[EC, curve].concat()), der)
        }
        _ => return None,
    };
    let version = [0x02, 0x01, 0x00];
    Some(der_element(0x30, &[&version[..], &algorithm, &der_element(0x04, inner)].concat()))
}

/// DER as PEM text with the given label.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        encoded.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// One DER element: tag, definite length, contents.
pub fn der_element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = contents.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let significant = &bytes[bytes.iter().take_while(|&&b| b == 0).count()..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(contents);
    out
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
    fn der_lengths_use_short_and_long_forms() {
        assert_eq!(der_element(0x04, &[1, 2]), [0x04, 0x02, 1, 2]);
        let long = der_element(0x04, &[0; 0x80]);
        assert_eq!(&long[..3], [0x04, 0x81, 0x80]);
        assert_eq!(long.len(), 3 + 0x80);
        let longer = der_element(0x04, &[0; 0x1234]);
        assert_eq!(&longer[..4], [0x04, 0x82, 0x12, 0x34]);
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
