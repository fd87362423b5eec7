//! A surviving Flocker 1.x cluster's certificates are X.509 v1, which rustls refuses; the
//! `tls_library = openssl` parameter makes the isolator's client use the system's OpenSSL,
//! which takes them, RSA keys in PKCS#1 form included.

use std::time::Duration;

use flocker_api::client::TlsLibrary;
use flocker_api::{Client, ClientConfig};
use flocker_testkit::FlockerOneControlService;
use flocker_testkit::openssl::{FlockerOneCertificates, flocker_1_certificates, x509_version};

fn client(
    tls: TlsLibrary,
    directory: &std::path::Path,
) -> (Result<Client, flocker_api::ClientError>, FlockerOneControlService) {
    let certificates = flocker_1_certificates(directory);
    assert_eq!(x509_version(&certificates.cluster), 1);
    assert_eq!(x509_version(&certificates.user.0), 1);
    let service = FlockerOneControlService::start(&certificates);
    (client_of(&service, &certificates, tls), service)
}

/// A client of `service` as the user of `certificates`.
fn client_of(
    service: &FlockerOneControlService,
    certificates: &FlockerOneCertificates,
    tls: TlsLibrary,
) -> Result<Client, flocker_api::ClientError> {
    Client::new(&ClientConfig {
        host: service.address.ip().to_string(),
        port: service.address.port(),
        cluster_certificate: certificates.cluster.clone(),
        certificate: certificates.user.0.clone(),
        key: certificates.user.1.clone(),
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        tls,
    })
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

/// Against a Flocker 1.x service, which ignores the query of our lookups and answers the full
/// lists, the isolator finds the same as through our lookups: the client filters again.
#[test]
fn against_flocker_1_the_lookups_filter_the_full_lists_it_answers() {
    use flocker_api::{DatasetId, NodeUuid};
    use flocker_isolator_core::control::ControlService;
    use flocker_isolator_core::request::FlockerId;
    use serde_json::json;

    let directory = tempfile::tempdir().unwrap();
    let certificates = flocker_1_certificates(directory.path());
    let (here, elsewhere) = (NodeUuid::random(), NodeUuid::random());
    let [wanted, deleted, decoy] = [(); 3].map(|()| DatasetId::random());
    let dataset = |id: DatasetId, key: &str, name: &str, deleted: bool| json!({"dataset_id": id, "primary": here, "metadata": {key: name}, "deleted": deleted});
    let answers = json!({
        "/v1/configuration/datasets": [
            dataset(decoy, "name", "orders-db-2", false),
            dataset(deleted, "name", "orders-db", true),
            dataset(wanted, "FLOCKER_ID", "orders-db", false),
        ],
        "/v1/state/datasets": [
            {"dataset_id": decoy, "primary": elsewhere, "path": "/flocker/decoy"},
            {"dataset_id": wanted, "primary": here, "path": "/flocker/wanted"},
        ],
        "/v1/configuration/leases": [
            {"dataset_id": decoy, "node_uuid": elsewhere, "expires": null},
        ],
    });
    let service = FlockerOneControlService::serving(&certificates, &answers);
    let parameters = json!({
        "ipaddress": service.address.ip().to_string(), "port": service.address.port().to_string(),
        "tls_library": "openssl", "cluster_certificate": certificates.cluster,
        "client_certificate": certificates.user.0, "client_key": certificates.user.1,
        "node_uuid": here.to_string(), "state_dir": directory.path().join("state"),
    });
    let parameters =
        flocker_isolator_core::params::Parameters::parse(&parameters.to_string()).unwrap();
    let control = ControlService::new(&parameters).unwrap();
    let id = FlockerId::new("orders-db").unwrap();
    let found = control.find(&id).unwrap().expect("the live dataset named orders-db");
    assert_eq!(found.dataset_id, wanted);
    assert_eq!(control.find(&FlockerId::new("nobody").unwrap()).unwrap(), None);

    let client = client_of(&service, &certificates, TlsLibrary::OpenSsl).unwrap();
    let (named, tag) = client.datasets_named("orders-db").unwrap();
    let named: Vec<DatasetId> = named.iter().map(|d| d.dataset_id).collect();
    assert_eq!((named, tag.0.as_str()), (vec![deleted, wanted], "flocker-1-tag"));
    let states = client.dataset_states_of(&wanted).unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].path.as_deref(), Some("/flocker/wanted"));
    assert_eq!(client.lease_of(&wanted).unwrap(), None);
    assert_eq!(client.lease_of(&decoy).unwrap().map(|l| l.node_uuid), Some(elsewhere));
}
