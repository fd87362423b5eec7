//! The cluster certificate authority itself: making a new one, and loading
//! an existing `cluster.crt`/`cluster.key` to sign with.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use uuid::Uuid;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

use super::key_file::parse_private_key_pem;
use super::params::{base_params, generate_key};
use super::{CA_CERTIFICATE_FILE, CA_KEY_FILE, CaError};

/// A new self-signed CA, PEM-encoded.
pub struct NewAuthority {
    pub certificate_pem: String,
    pub key_pem: String,
}

/// Creates the CA of a new cluster, with a fresh random cluster uuid:
/// subject `CN=<cluster_name>, OU=<cluster uuid>`, basicConstraints
/// `CA:TRUE, pathlen:0` and keyUsage `keyCertSign, cRLSign` (both critical),
/// and a subjectKeyIdentifier.
pub fn create(cluster_name: &str) -> Result<NewAuthority, CaError> {
    let key = generate_key("cluster CA key")?;
    let mut params = base_params(cluster_name, Uuid::new_v4())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let certificate = params
        .self_signed(&key)
        .map_err(|source| CaError::Generate { what: "cluster CA certificate", source })?;
    Ok(NewAuthority { certificate_pem: certificate.pem(), key_pem: key.serialize_pem() })
}

/// A loaded cluster CA, ready to sign certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cluster_id: Uuid,
    /// DER of the CA's subject, which must be the issuer of what it signs.
    subject: Vec<u8>,
    certificate_path: PathBuf,
}

impl Authority {
    /// Loads `cluster.crt` and `cluster.key` from `directory`, checking that
    /// the certificate is a CA, that its subject OU is the cluster uuid and
    /// that the key is the certificate's.
    pub fn load(directory: &Path) -> Result<Self, CaError> {
        let certificate_path = directory.join(CA_CERTIFICATE_FILE);
        let key_path = directory.join(CA_KEY_FILE);
        let certificate_pem = read_ca_file(directory, CA_CERTIFICATE_FILE)?;
        let key_pem = read_ca_file(directory, CA_KEY_FILE)?;

        let der = first_certificate(&certificate_path, &certificate_pem)?;
        let invalid = |source: Box<dyn std::error::Error + Send + Sync>| {
            CaError::InvalidCertificate { path: certificate_path.clone(), source }
        };
        let (_, certificate) =
            x509_parser::parse_x509_certificate(&der).map_err(|error| invalid(error.into()))?;
        if !is_ca(&certificate) {
            return Err(CaError::NotCa { path: certificate_path });
        }
        let cluster_id = cluster_id(&certificate_path, &certificate)?;

        let key_text = String::from_utf8_lossy(&key_pem);
        let key = parse_private_key_pem(&key_text)
            .map_err(|source| CaError::InvalidKey { path: key_path.clone(), source })?;
        if certificate.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::KeyMismatch { key: key_path, certificate: certificate_path });
        }

        let subject = certificate.subject().as_raw().to_vec();
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(der.as_slice()), key).map_err(
            |source| CaError::UnsupportedCaSubject {
                path: certificate_path.clone(),
                source: Some(source),
            },
        )?;
        log::debug!("loaded CA {} of cluster {cluster_id}", certificate_path.display());
        Ok(Authority { issuer, cluster_id, subject, certificate_path })
    }

    /// The cluster uuid, read from the CA's subject OU.
    pub fn cluster_id(&self) -> Uuid {
        self.cluster_id
    }

    /// Signs a certificate for `key` with `params`, returning its PEM.
    /// Checks that its issuer is byte for byte the CA's subject, as
    /// certificate verification requires.
    pub fn sign(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
        what: &'static str,
    ) -> Result<String, CaError> {
        let certificate = params
            .signed_by(key, &self.issuer)
            .map_err(|source| CaError::Generate { what, source })?;
        let issuer_matches = x509_parser::parse_x509_certificate(certificate.der())
            .is_ok_and(|(_, signed)| signed.issuer().as_raw() == self.subject.as_slice());
        if !issuer_matches {
            return Err(CaError::UnsupportedCaSubject {
                path: self.certificate_path.clone(),
                source: None,
            });
        }
        Ok(certificate.pem())
    }
}

/// Reads `directory/file`, saying how to make it if it is missing.
fn read_ca_file(directory: &Path, file: &'static str) -> Result<Vec<u8>, CaError> {
    let path = directory.join(file);
    std::fs::read(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            CaError::MissingCaFile { file, directory: directory.to_path_buf() }
        } else {
            CaError::Read { path, source }
        }
    })
}

/// The DER of the first `CERTIFICATE` block of a PEM file.
fn first_certificate(path: &Path, pem: &[u8]) -> Result<Vec<u8>, CaError> {
    let invalid = |source: Box<dyn std::error::Error + Send + Sync>| CaError::InvalidCertificate {
        path: path.to_path_buf(),
        source,
    };
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|error| invalid(error.into()))?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err(invalid("no CERTIFICATE block found".into()))
}

/// Whether the certificate may sign others: basicConstraints CA:TRUE and,
/// if it has a keyUsage, keyCertSign in it.
fn is_ca(certificate: &X509Certificate<'_>) -> bool {
    let ca =
        matches!(certificate.basic_constraints(), Ok(Some(constraints)) if constraints.value.ca);
    let may_sign = match certificate.key_usage() {
        Ok(Some(usage)) => usage.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && may_sign
}

/// The cluster uuid, which Flocker keeps in the CA subject's OU.
fn cluster_id(path: &Path, certificate: &X509Certificate<'_>) -> Result<Uuid, CaError> {
    let ou = certificate
        .subject()
        .iter_organizational_unit()
        .next()
        .ok_or_else(|| CaError::MissingClusterId { path: path.to_path_buf() })?;
    let ou = ou.as_str().map_err(|error| CaError::InvalidCertificate {
        path: path.to_path_buf(),
        source: error.into(),
    })?;
    Uuid::parse_str(ou).map_err(|source| CaError::InvalidClusterId {
        path: path.to_path_buf(),
        ou: ou.to_owned(),
        source,
    })
}
