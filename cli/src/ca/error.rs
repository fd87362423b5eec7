//! Everything that can go wrong while creating or using the cluster CA.

use std::io;
use std::path::PathBuf;

use crate::files::WriteError;

/// Why a certificate authority operation failed. Each message names the file
/// or argument concerned; the underlying cause, if any, is the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// `cluster.crt` or `cluster.key` is not in the input directory.
    #[error(
        "{file} not found in {}: run \"flockerctl ca initialize <name>\" first, or pass -i",
        directory.display()
    )]
    MissingCaFile { file: &'static str, directory: PathBuf },

    /// A CA file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `cluster.crt` holds no parsable PEM X.509 certificate.
    #[error("{} is not a PEM X.509 certificate", path.display())]
    InvalidCertificate {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// `cluster.crt` is a certificate, but not one allowed to sign others.
    #[error("{} is not a CA certificate", path.display())]
    NotCa { path: PathBuf },

    /// The CA subject has no OU, where Flocker keeps the cluster uuid.
    #[error("{} has no cluster uuid: its subject has no OU", path.display())]
    MissingClusterId { path: PathBuf },

    /// The CA subject OU is not a uuid.
    #[error("{} has subject OU {ou:?}, which is not a cluster uuid", path.display())]
    InvalidClusterId {
        path: PathBuf,
        ou: String,
        #[source]
        source: uuid::Error,
    },

    /// `cluster.key` is not a private key this tool can sign with.
    #[error(
        "{} is not a usable private key (expected PEM PKCS#8, PKCS#1 RSA or SEC1 EC)",
        path.display()
    )]
    InvalidKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },

    /// `cluster.key` is a key, but not the one `cluster.crt` was made for.
    #[error("{} is not the private key of {}", key.display(), certificate.display())]
    KeyMismatch { key: PathBuf, certificate: PathBuf },

    /// The CA subject cannot be reproduced exactly as the issuer of new
    /// certificates (for example it has several values in one RDN).
    #[error("cannot use the subject of {} as the issuer of new certificates", path.display())]
    UnsupportedCaSubject {
        path: PathBuf,
        #[source]
        source: Option<rcgen::Error>,
    },

    /// A cluster name, hostname or username argument was refused.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument { what: &'static str, value: String, reason: &'static str },

    /// The operating system random number generator failed.
    #[error("cannot get random bytes from the operating system")]
    Random {
        #[source]
        source: ring::error::Unspecified,
    },

    /// Key generation, signing or encoding failed.
    #[error("cannot generate the {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    /// An output file already exists or could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}
