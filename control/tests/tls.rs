//! Mutual TLS on both ports: who is served, who is refused, and what happens to the X.509 v1
//! certificates that Flocker's own `flocker-ca` made.

use std::fs;

use flocker_api::agent_protocol::HELLO_PATH;
use flocker_api::{ClientConfig, ClientError};
use flocker_testkit::openssl::{certificate, version_1_certificate, x509_version};
use flocker_testkit::{
    ClusterCertificates, ControlProcess, RunningControl, openssl_client_request, tls_handshake,
};
use serde_json::json;

fn binary() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_flocker-control").as_ref()
}

#[test]
fn the_rest_port_refuses_no_certificate_a_node_certificate_and_another_clusters_user() {
    let control = RunningControl::start(binary());
    let cluster = control.certificates.cluster_certificate();
    let rest = control.process.rest;
    assert!(tls_handshake(rest, &cluster, None, "/v1/version").is_err());
    let node = control.certificates.node();
    assert!(
        tls_handshake(rest, &cluster, Some((&node.certificate, &node.key)), "/v1/version").is_err()
    );
    let stranger = ClusterCertificates::new();
    let (certificate, key) = stranger.user("alice");
    let refused = tls_handshake(rest, &cluster, Some((&certificate, &key)), "/v1/version");
    assert!(refused.is_err(), "another cluster's user was served: {refused:?}");
    let (certificate, key) = control.certificates.user("alice");
    let served = tls_handshake(rest, &cluster, Some((&certificate, &key)), "/v1/version");
    assert_eq!(served.as_deref(), Ok("HTTP/1.1 200 OK"));
    let (logged, log) = control.process.wait_for_log("refused a client certificate with CN 'node-");
    assert!(logged, "{log}");
}

#[test]
fn the_agent_port_serves_node_certificates_only() {
    let control = RunningControl::start(binary());
    let cluster = control.certificates.cluster_certificate();
    let agent = control.process.agent;
    let (certificate, key) = control.certificates.user("alice");
    assert!(tls_handshake(agent, &cluster, Some((&certificate, &key)), "/v1/version").is_err());
    assert!(tls_handshake(agent, &cluster, None, "/v1/version").is_err());
    let node = control.certificates.node();
    let client = control.certificates.client_with(agent, &node.certificate, &node.key);
    let hello = json!({"era": flocker_api::Era::random()}).to_string();
    let answer = client.send("POST", HELLO_PATH, &[], Some(hello.as_bytes())).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json().unwrap()["node_uuid"], json!(node.uuid.to_string()));
}

#[test]
fn a_client_refuses_a_service_whose_certificate_another_cluster_signed() {
    let control = RunningControl::start(binary());
    let stranger = ClusterCertificates::new();
    let (certificate, key) = stranger.user("alice");
    let mut config = ClientConfig::from_directory(
        &stranger.authority(),
        "alice",
        "127.0.0.1",
        control.process.rest.port(),
    );
    config.certificate = certificate;
    config.key = key;
    let client = flocker_api::Client::new(&config).unwrap();
    let error = client.version().unwrap_err();
    assert!(matches!(error, ClientError::Transport { .. }), "{error}");
}

#[test]
fn the_server_is_verified_as_control_service_whatever_address_was_dialled() {
    // The control certificate names 127.0.0.1; dialling "localhost" works all the same.
    let control = RunningControl::start(binary());
    let (certificate, key) = control.certificates.user("alice");
    let mut config = ClientConfig::from_directory(
        &control.certificates.authority(),
        "alice",
        "localhost",
        control.process.rest.port(),
    );
    config.certificate = certificate;
    config.key = key;
    assert!(flocker_api::Client::new(&config).unwrap().version().is_ok());
}

// Flocker's flocker-ca never set the certificate version, so its certificates are X.509 v1.
// openssl makes v1 certificates when given no extensions.

#[test]
fn a_version_1_user_certificate_is_refused_by_our_client_with_a_message_that_says_what_to_do() {
    let certificates = ClusterCertificates::new();
    let authority = certificates.authority();
    let (certificate, key) = version_1_certificate(
        certificates.root(),
        "legacy",
        "user-legacy",
        Some((&authority.join("cluster.crt"), &authority.join("cluster.key"))),
    );
    assert_eq!(x509_version(&certificate), 1);
    let mut config = ClientConfig::from_directory(&authority, "alice", "127.0.0.1", 4523);
    config.certificate = certificate.clone();
    config.key = key;
    let message = flocker_api::Client::new(&config).unwrap_err().to_string();
    assert!(message.contains(&certificate.display().to_string()), "{message}");
    assert!(message.contains("X.509 v1") && message.contains("flockerctl ca"), "{message}");
}

#[test]
fn an_openssl_client_presenting_a_version_1_user_certificate_fails_the_handshake() {
    // rustls will not even present a v1 certificate, so this is how a surviving Flocker client
    // (Python and OpenSSL) would meet the service.
    let control = RunningControl::start(binary());
    let authority = control.certificates.authority();
    let (certificate, key) = version_1_certificate(
        control.certificates.root(),
        "legacy",
        "user-legacy",
        Some((&authority.join("cluster.crt"), &authority.join("cluster.key"))),
    );
    let cluster = control.certificates.cluster_certificate();
    let refused =
        openssl_client_request(control.process.rest, &cluster, &certificate, &key, "/v1/version");
    assert!(refused.is_err(), "a v1 certificate was served: {refused:?}");
    let (v3_certificate, v3_key) = control.certificates.user("alice");
    let served = openssl_client_request(
        control.process.rest,
        &cluster,
        &v3_certificate,
        &v3_key,
        "/v1/version",
    );
    assert_eq!(served.as_deref(), Ok("HTTP/1.1 200 OK"), "the same client with a v3 certificate");
    let (logged, log) = control.process.wait_for_log("UnsupportedCertVersion");
    assert!(logged, "{log}");
}

#[test]
fn the_service_will_not_start_with_a_version_1_control_certificate() {
    let certificates = ClusterCertificates::new();
    let authority = certificates.authority();
    let (certificate, key) = version_1_certificate(
        certificates.root(),
        "legacy-control",
        "control-service",
        Some((&authority.join("cluster.crt"), &authority.join("cluster.key"))),
    );
    let installed = certificates.control_directory().join("control-service.crt");
    fs::copy(&certificate, &installed).unwrap();
    fs::copy(&key, certificates.control_directory().join("control-service.key")).unwrap();
    let (status, log) =
        ControlProcess::run_to_exit(binary(), &certificates, &certificates.root().join("data"));
    assert!(!status.success());
    assert!(log.contains(&installed.display().to_string()) && log.contains("X.509 v1"), "{log}");
}

#[test]
fn a_version_1_cluster_certificate_is_still_a_trust_anchor() {
    // webpki accepts a v1 self-signed certificate as a root (only leaves must be v3), so a
    // cluster whose CA is v1 needs new leaves, not a new CA, as long as the leaves are v3.
    let certificates = ClusterCertificates::new();
    let legacy = certificates.root().join("legacy");
    fs::create_dir(&legacy).unwrap();
    let (ca_certificate, ca_key) =
        version_1_certificate(&legacy, "cluster", "legacy-cluster", None);
    assert_eq!(x509_version(&ca_certificate), 1);
    let rest = tls_handshake_with_v1_root(&certificates, &ca_certificate, &ca_key);
    assert_eq!(rest.as_deref(), Ok("HTTP/1.1 200 OK"));
}

/// Starts a service whose cluster.crt is `ca_certificate`, with v3 leaves signed by its key
/// (made with openssl, since `flockerctl ca` wants a CA with basicConstraints), and asks it for
/// its version.
fn tls_handshake_with_v1_root(
    certificates: &ClusterCertificates,
    ca_certificate: &std::path::Path,
    ca_key: &std::path::Path,
) -> Result<String, String> {
    let directory = ca_certificate.parent().unwrap();
    let authority = Some((ca_certificate, ca_key));
    let (control_certificate, control_key) = certificate(
        directory,
        "control",
        "control-service",
        authority,
        Some("subjectAltName=DNS:control-service"),
    );
    let (user_certificate, user_key) = certificate(
        directory,
        "user",
        "user-legacy",
        authority,
        Some("extendedKeyUsage=clientAuth"),
    );
    assert_eq!((x509_version(&control_certificate), x509_version(&user_certificate)), (3, 3));
    let installed = certificates.control_directory();
    fs::copy(ca_certificate, installed.join("cluster.crt")).unwrap();
    fs::copy(&control_certificate, installed.join("control-service.crt")).unwrap();
    fs::copy(&control_key, installed.join("control-service.key")).unwrap();
    let process =
        ControlProcess::start(binary(), certificates, &certificates.root().join("data"), &[])?;
    tls_handshake(process.rest, ca_certificate, Some((&user_certificate, &user_key)), "/v1/version")
}
