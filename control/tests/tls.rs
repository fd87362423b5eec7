//! Mutual TLS on both ports: who is served, who is refused, and what happens to the X.509 v1
//! certificates that Flocker's own `flocker-ca` made.

use std::fs;

use flocker_api::agent_protocol::HELLO_PATH;
use flocker_api::{ClientConfig, ClientError};
use flocker_testkit::openssl::{
    PythonClient, certificate, python_request, version_1_certificate, x509_version,
};
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
    let (logged, log) =
        control.process.wait_for_log("refused a client certificate with CN \"node-");
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
    assert!(log.contains("start flocker-control with --tls-library openssl"), "{log}");
}

#[test]
fn the_service_will_not_start_with_a_key_that_is_not_its_certificates() {
    // rustls's own check parses the certificate, which a v1 one fails; ours does not.
    let certificates = ClusterCertificates::new();
    let authority = certificates.authority();
    let signer = Some((authority.join("cluster.crt"), authority.join("cluster.key")));
    let signer = signer.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let (certificate, _) =
        version_1_certificate(certificates.root(), "legacy-control", "control-service", signer);
    let (_, other_key) =
        version_1_certificate(certificates.root(), "other", "control-service", signer);
    let installed = certificates.control_directory().join("control-service.crt");
    fs::copy(&certificate, &installed).unwrap();
    fs::copy(&other_key, certificates.control_directory().join("control-service.key")).unwrap();
    let (status, log) =
        ControlProcess::run_to_exit(binary(), &certificates, &certificates.root().join("data"));
    assert!(!status.success());
    assert!(log.contains(&installed.display().to_string()) && log.contains("KeyMismatch"), "{log}");
}

#[test]
fn a_common_name_with_a_newline_does_not_forge_a_log_line() {
    const FORGED: &str = "[2026-01-01T00:00:00Z INFO  flocker_control] all is well";
    let control = RunningControl::start(binary());
    let (certificate, key) =
        signed_by_the_cluster(&control.certificates, &format!("node-x\n{FORGED}"));
    let cluster = control.certificates.cluster_certificate();
    let refused =
        tls_handshake(control.process.rest, &cluster, Some((&certificate, &key)), "/v1/version");
    assert!(refused.is_err(), "{refused:?}");
    let (logged, log) = control.process.wait_for_log(&format!("CN \"node-x\\n{FORGED}\""));
    assert!(logged, "{log}");
    assert!(!log.lines().any(|line| line.starts_with(FORGED)), "{log}");
}

/// A v3 client certificate `CN=<common_name>` with a P-256 key, signed by the cluster's CA:
/// made with the `openssl` crate, which takes any text as a CN.
fn signed_by_the_cluster(
    certificates: &ClusterCertificates,
    common_name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
    let authority = certificates.authority();
    let ca = x509::X509::from_pem(&fs::read(authority.join("cluster.crt")).unwrap()).unwrap();
    let ca_key =
        PKey::private_key_from_pem(&fs::read(authority.join("cluster.key")).unwrap()).unwrap();
    let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, common_name).unwrap();
    let mut builder = x509::X509Builder::new().unwrap();
    builder.set_version(2).unwrap();
    builder.set_subject_name(&name.build()).unwrap();
    builder.set_issuer_name(ca.subject_name()).unwrap();
    builder.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    builder.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let (certificate, key_file) = (authority.join("forger.crt"), authority.join("forger.key"));
    fs::write(&certificate, builder.build().to_pem().unwrap()).unwrap();
    fs::write(&key_file, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (certificate, key_file)
}

#[test]
fn a_client_offering_only_http_1_0_in_alpn_is_served() {
    // Flocker's Twisted server ignored ALPN; rustls answers an offer it shares nothing with
    // with an alert, so HTTP/1.0 is among ours.
    let control = RunningControl::start(binary());
    let (certificate, key) = control.certificates.user("alice");
    let identity = Some((certificate.as_path(), key.as_path()));
    let cluster = control.certificates.cluster_certificate();
    let rest = control.process.rest;
    for http_version in ["HTTP/1.0", "HTTP/1.1"] {
        let client = PythonClient { alpn: &["http/1.0"], tls_1_2: false, http_version };
        let answer = python_request(rest, &cluster, identity, client, "/v1/version").unwrap();
        assert_eq!(answer.status_line, format!("{http_version} 200 OK"));
        assert_eq!(answer.alpn.as_deref(), Some("http/1.0"));
    }
    for (alpn, chosen) in [(&[][..], None), (&["h2", "http/1.1"][..], Some("http/1.1"))] {
        let client = PythonClient { alpn, ..PythonClient::default() };
        let answer = python_request(rest, &cluster, identity, client, "/v1/version").unwrap();
        assert_eq!(
            (answer.status_line.as_str(), answer.alpn.as_deref()),
            ("HTTP/1.1 200 OK", chosen)
        );
    }
}

#[test]
fn a_client_offering_only_h2_in_alpn_is_told_so_in_the_handshake() {
    // Not served HTTP/1.1 it did not ask for: the alert says no protocol is shared.
    let control = RunningControl::start(binary());
    let (certificate, key) = control.certificates.user("alice");
    let client = PythonClient { alpn: &["h2"], ..PythonClient::default() };
    let refused = python_request(
        control.process.rest,
        &control.certificates.cluster_certificate(),
        Some((&certificate, &key)),
        client,
        "/v1/version",
    );
    let error = refused.unwrap_err();
    assert!(error.to_lowercase().contains("no application protocol"), "{error}");
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
