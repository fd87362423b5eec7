//! A surviving Flocker 1.x cluster's certificates are X.509 v1, which rustls refuses; the
//! `tls_library = openssl` parameter makes the isolator's client use the system's OpenSSL,
//! which takes them, RSA keys in PKCS#1 form included.

use std::time::Duration;

use flocker_api::client::TlsLibrary;
use flocker_api::{Client, ClientConfig};
use flocker_testkit::FlockerOneControlService;
use flocker_testkit::openssl::{flocker_1_certificates, x509_version};

fn client(
    tls: TlsLibrary,
    directory: &std::path::Path,
) -> (Result<Client, flocker_api::ClientError>, FlockerOneControlService) {
    let certificates = flocker_1_certificates(directory);
    assert_eq!(x509_version(&certificates.cluster), 1);
    assert_eq!(x509_version(&certificates.user.0), 1);
    let service = FlockerOneControlService::start(&certificates);
    let config = ClientConfig {
        host: service.address.ip().to_string(),
        port: service.address.port(),
        cluster_certificate: certificates.cluster.clone(),
        certificate: certificates.user.0.clone(),
        key: certificates.user.1.clone(),
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        tls,
    };
    (Client::new(&config), service)
}

#[test]
fn with_openssl_the_client_talks_to_a_cluster_of_version_1_certificates() {
    let directory = tempfile::tempdir().unwrap();
    let (client, _service) = client(TlsLibrary::OpenSsl, directory.path());
    let version = client.unwrap().version().unwrap();
    assert_eq!(version.flocker, "1.15.0");
}

#[test]
fn with_rustls_the_client_refuses_version_1_certificates_and_says_what_to_do() {
    let directory = tempfile::tempdir().unwrap();
    let (client, _service) = client(TlsLibrary::Rustls, directory.path());
    let message = client.unwrap_err().to_string();
    assert!(message.contains("X.509 v1") && message.contains("flockerctl ca"), "{message}");
}

#[test]
fn the_isolator_takes_the_openssl_parameter() {
    let directory = tempfile::tempdir().unwrap();
    let certificates = flocker_1_certificates(directory.path());
    let parameters = serde_json::json!({
        "ipaddress": "127.0.0.1", "port": "4523", "tls_library": "openssl",
        "cluster_certificate": certificates.cluster, "client_certificate": certificates.user.0,
        "client_key": certificates.user.1, "node_uuid": "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
        "state_dir": directory.path().join("state"),
    });
    let parameters =
        flocker_isolator_core::params::Parameters::parse(&parameters.to_string()).unwrap();
    assert!(flocker_isolator_core::Isolator::new(parameters).is_ok());
}
