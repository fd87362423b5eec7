//! The cluster certificate authority, compatible with Flocker's `flocker-ca`
//! but issuing X.509 v3 certificates with ECDSA P-256 keys.
//!
//! [`initialize`] makes `cluster.crt`/`cluster.key`, a self-signed CA whose
//! subject is `CN=<cluster name>, OU=<cluster uuid>`. The other functions
//! load that CA from an input directory and write a new certificate and key
//! to an output directory:
//!
//! | function | files | subject CN | extended key usage |
//! | --- | --- | --- | --- |
//! | [`create_control_certificate`] | `control-<hostname>.crt/.key` | `control-service` | serverAuth |
//! | [`create_node_certificate`] | `<node uuid>.crt/.key` | `node-<node uuid>` (also its DNS name) | clientAuth, serverAuth |
//! | [`create_api_certificate`] | `<username>.crt/.key` | `user-<username>` | clientAuth |
//!
//! Every subject's OU is the cluster uuid. Keys are written with mode 0600
//! and certificates with 0644, in PEM; an existing file is never overwritten
//! (see [`crate::files`]), and arguments are checked before anything is
//! generated.

mod authority;
mod error;
mod key_file;
mod leaf;
mod names;
mod params;

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::files::{self, PUBLIC_MODE, SECRET_MODE};

pub use error::CaError;
pub use leaf::CONTROL_SERVICE_NAME;

/// File name of the cluster CA certificate.
pub const CA_CERTIFICATE_FILE: &str = "cluster.crt";

/// File name of the cluster CA private key.
pub const CA_KEY_FILE: &str = "cluster.key";

/// The two files an operation wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The PEM certificate (mode 0644).
    pub certificate: PathBuf,
    /// The PEM PKCS#8 private key (mode 0600).
    pub key: PathBuf,
}

impl Written {
    fn in_directory(directory: &Path, file_stem: &str) -> Self {
        Written {
            certificate: directory.join(format!("{file_stem}.crt")),
            key: directory.join(format!("{file_stem}.key")),
        }
    }
}

/// Creates a new cluster CA in `output`: `cluster.crt` and `cluster.key`.
pub fn initialize(output: &Path, cluster_name: &str) -> Result<Written, CaError> {
    names::check_cluster_name(cluster_name)?;
    let written =
        Written { certificate: output.join(CA_CERTIFICATE_FILE), key: output.join(CA_KEY_FILE) };
    files::refuse_existing(&[&written.certificate, &written.key])?;
    let new = authority::create(cluster_name)?;
    write_pair(&written, &new.certificate_pem, &new.key_pem)?;
    Ok(written)
}

/// Creates `control-<hostname>.crt/.key` in `output`, signed by the CA in
/// `input`. `hostname` (a DNS name or an IP address) is how nodes and users
/// reach the control service; the certificate is also valid for the name
/// `control-service`.
pub fn create_control_certificate(
    input: &Path,
    output: &Path,
    hostname: &str,
) -> Result<Written, CaError> {
    create_leaf(input, output, &leaf::control_service(hostname)?)
}

/// Creates `<node uuid>.crt/.key` in `output` for a new random node uuid,
/// signed by the CA in `input`. The files are to be installed on the node
/// as `node.crt` and `node.key`.
pub fn create_node_certificate(input: &Path, output: &Path) -> Result<(Uuid, Written), CaError> {
    let node_id = Uuid::new_v4();
    let written = create_leaf(input, output, &leaf::node(node_id)?)?;
    Ok((node_id, written))
}

/// Creates `<username>.crt/.key` in `output`, signed by the CA in `input`,
/// for an API user. `username` is 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn create_api_certificate(
    input: &Path,
    output: &Path,
    username: &str,
) -> Result<Written, CaError> {
    create_leaf(input, output, &leaf::api_user(username)?)
}

fn create_leaf(input: &Path, output: &Path, spec: &leaf::LeafSpec) -> Result<Written, CaError> {
    let authority = authority::Authority::load(input)?;
    let written = Written::in_directory(output, &spec.file_stem);
    files::refuse_existing(&[&written.certificate, &written.key])?;
    let issued = leaf::issue(&authority, spec)?;
    write_pair(&written, &issued.certificate_pem, &issued.key_pem)?;
    Ok(written)
}

/// Writes the key, then the certificate. If the certificate cannot be
/// written, the key just written is removed again, so that a retry is not
/// refused because of it.
fn write_pair(written: &Written, certificate_pem: &str, key_pem: &str) -> Result<(), CaError> {
    files::write_new(&written.key, key_pem.as_bytes(), SECRET_MODE)?;
    if let Err(error) =
        files::write_new(&written.certificate, certificate_pem.as_bytes(), PUBLIC_MODE)
    {
        if let Err(remove_error) = std::fs::remove_file(&written.key) {
            log::warn!(
                "cannot remove {} after failing to write {}: {remove_error}",
                written.key.display(),
                written.certificate.display()
            );
        }
        return Err(error.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_files_are_named_after_the_argument() {
        let directory = Path::new("/out");
        assert_eq!(
            Written::in_directory(directory, "control-example.com"),
            Written {
                certificate: PathBuf::from("/out/control-example.com.crt"),
                key: PathBuf::from("/out/control-example.com.key"),
            }
        );
    }

    #[test]
    fn a_bad_username_is_refused_before_the_ca_is_even_read() {
        let directory = tempfile::tempdir().unwrap();
        let error = create_api_certificate(directory.path(), directory.path(), "a/b").unwrap_err();
        assert!(matches!(error, CaError::InvalidArgument { what: "username", .. }));
    }

    #[test]
    fn cluster_uuid_goes_from_the_ca_to_its_leaves() {
        let directory = tempfile::tempdir().unwrap();
        initialize(directory.path(), "test").unwrap();
        let authority = authority::Authority::load(directory.path()).unwrap();
        let (node_id, written) =
            create_node_certificate(directory.path(), directory.path()).unwrap();
        let pem = std::fs::read(&written.certificate).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let certificate = block.parse_x509().unwrap();
        assert_eq!(
            certificate.subject().to_string(),
            format!("CN=node-{node_id}, OU={}", authority.cluster_id())
        );
    }
}
