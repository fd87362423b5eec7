//! Tests of `flockerctl ca`, run as the real binary, with certificates
//! checked by x509-parser and by OpenSSL (`/usr/bin/openssl`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flocker_cli::ca;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

const FLOCKERCTL: &str = env!("CARGO_BIN_EXE_flockerctl");
const OPENSSL: &str = "/usr/bin/openssl";

// ---------------------------------------------------------------- helpers

/// Runs `flockerctl` with `args` in `directory`.
fn flockerctl(directory: &Path, args: &[&str]) -> Output {
    Command::new(FLOCKERCTL)
        .args(args)
        .current_dir(directory)
        .env_remove("RUST_LOG")
        .output()
        .expect("cannot run flockerctl")
}

/// Runs `flockerctl` and requires success; returns its stdout.
fn succeed(directory: &Path, args: &[&str]) -> String {
    let output = flockerctl(directory, args);
    assert!(
        output.status.success(),
        "flockerctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `flockerctl`, requires exit code 1 and one line on stderr, which
/// it returns.
fn fail(directory: &Path, args: &[&str]) -> String {
    let output = flockerctl(directory, args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "flockerctl {args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    stderr
}

fn openssl(args: &[&str]) -> Output {
    Command::new(OPENSSL).args(args).output().expect("cannot run /usr/bin/openssl")
}

fn openssl_text(certificate: &Path) -> String {
    let output = openssl(&["x509", "-noout", "-text", "-in", path_str(certificate)]);
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// `openssl verify -CAfile ca -purpose purpose leaf` must succeed.
fn assert_openssl_verifies(ca: &Path, leaf: &Path, purpose: &str) {
    let output = openssl(&["verify", "-CAfile", path_str(ca), "-purpose", purpose, path_str(leaf)]);
    assert!(
        output.status.success(),
        "openssl verify failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn file_names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The DER of the certificate in a PEM file.
fn der(path: &Path) -> Vec<u8> {
    let pem = fs::read(path).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    assert_eq!(block.label, "CERTIFICATE");
    block.contents
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, certificate) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    certificate
}

fn common_name(certificate: &X509Certificate<'_>) -> String {
    let mut names = certificate.subject().iter_common_name();
    let name = names.next().unwrap().as_str().unwrap().to_owned();
    assert!(names.next().is_none());
    name
}

fn organizational_unit(certificate: &X509Certificate<'_>) -> String {
    let mut units = certificate.subject().iter_organizational_unit();
    let unit = units.next().unwrap().as_str().unwrap().to_owned();
    assert!(units.next().is_none());
    unit
}

/// The subject alternative names, as "DNS:x" and "IP:x".
fn alternative_names(certificate: &X509Certificate<'_>) -> Vec<String> {
    let Some(names) = certificate.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(bytes) => {
                let address: std::net::IpAddr = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).unwrap().into(),
                    16 => <[u8; 16]>::try_from(*bytes).unwrap().into(),
                    _ => panic!("bad IP address length"),
                };
                format!("IP:{address}")
            }
            other => panic!("unexpected alternative name {other:?}"),
        })
        .collect()
}

/// (serverAuth, clientAuth) of the extended key usage, which must be there.
fn key_purposes(certificate: &X509Certificate<'_>) -> (bool, bool) {
    let usage = certificate.extended_key_usage().unwrap().unwrap().value;
    assert!(usage.other.is_empty() && !usage.any);
    (usage.server_auth, usage.client_auth)
}

fn subject_key_identifier(certificate: &X509Certificate<'_>) -> Vec<u8> {
    certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .expect("no subjectKeyIdentifier")
}

fn authority_key_identifier(certificate: &X509Certificate<'_>) -> Vec<u8> {
    certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
        .expect("no authorityKeyIdentifier")
}

/// Makes a CA in a new directory and returns it.
fn new_ca() -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    succeed(directory.path(), &["ca", "initialize", "test-cluster"]);
    directory
}

/// Checks what every leaf shares with the CA in `ca_directory`: v3, issuer
/// equal to the CA subject, OU equal to the CA's, authority key identifier,
/// not a CA, a 128-bit serial, validity, modes, and OpenSSL verification.
fn check_leaf(ca_directory: &Path, written: &ca::Written, purpose: &str) {
    let ca_der = der(&ca_directory.join("cluster.crt"));
    let ca_certificate = parse(&ca_der);
    let leaf_der = der(&written.certificate);
    let leaf = parse(&leaf_der);

    assert!(openssl_text(&written.certificate).contains("Version: 3 (0x2)"));
    assert_eq!(leaf.issuer().as_raw(), ca_certificate.subject().as_raw());
    assert_eq!(organizational_unit(&leaf), organizational_unit(&ca_certificate));
    assert_eq!(authority_key_identifier(&leaf), subject_key_identifier(&ca_certificate));
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);

    let serial = leaf.raw_serial();
    let serial = if serial[0] == 0 { &serial[1..] } else { serial };
    assert_eq!(serial.len(), 16, "serial is not 128 bits");

    let now = OffsetDateTime::now_utc();
    let not_before = leaf.validity().not_before.to_datetime();
    let not_after = leaf.validity().not_after.to_datetime();
    assert!((not_before - (now - Duration::hours(1))).abs() < Duration::minutes(5));
    assert!((not_after - (now + Duration::days(7300))).abs() < Duration::minutes(5));

    assert_eq!(mode(&written.key), 0o600);
    assert_eq!(mode(&written.certificate), 0o644);
    let key = fs::read_to_string(&written.key).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));

    assert_openssl_verifies(&ca_directory.join("cluster.crt"), &written.certificate, purpose);
}

fn written(directory: &Path, stem: &str) -> ca::Written {
    ca::Written {
        certificate: directory.join(format!("{stem}.crt")),
        key: directory.join(format!("{stem}.key")),
    }
}

// ---------------------------------------------------------------- initialize

#[test]
fn initialize_writes_a_v3_ca_certificate_and_a_secret_key() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();

    let stdout = succeed(dir, &["ca", "initialize", "my cluster", "-o", path_str(dir)]);

    assert!(stdout.contains("cluster.crt") && stdout.contains("cluster.key"));
    assert_eq!(file_names(dir), ["cluster.crt", "cluster.key"]);
    let crt = dir.join("cluster.crt");
    assert_eq!(mode(&dir.join("cluster.key")), 0o600);
    assert_eq!(mode(&crt), 0o644);

    let text = openssl_text(&crt);
    assert!(text.contains("Version: 3 (0x2)"), "{text}");
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");

    let ca_der = der(&crt);
    let certificate = parse(&ca_der);
    assert_eq!(common_name(&certificate), "my cluster");
    let cluster_id = Uuid::parse_str(&organizational_unit(&certificate)).unwrap();
    assert_eq!(cluster_id.get_version_num(), 4);
    let subject = certificate.subject().to_string();
    assert_eq!(subject, format!("CN=my cluster, OU={cluster_id}"));
    assert_eq!(certificate.issuer().as_raw(), certificate.subject().as_raw());

    let constraints = certificate.basic_constraints().unwrap().unwrap();
    assert!(constraints.critical);
    assert!(constraints.value.ca);
    assert_eq!(constraints.value.path_len_constraint, Some(0));
    let usage = certificate.key_usage().unwrap().unwrap();
    assert!(usage.critical);
    assert!(usage.value.key_cert_sign() && usage.value.crl_sign());
    assert!(!usage.value.digital_signature());

    // Self-signed: OpenSSL accepts it as its own trust anchor.
    assert_openssl_verifies(&crt, &crt, "any");
}

#[test]
fn each_initialize_makes_a_new_cluster_uuid() {
    let first = new_ca();
    let second = new_ca();
    let first_der = der(&first.path().join("cluster.crt"));
    let second_der = der(&second.path().join("cluster.crt"));
    assert_ne!(organizational_unit(&parse(&first_der)), organizational_unit(&parse(&second_der)));
}

#[test]
fn initialize_refuses_to_overwrite_and_leaves_the_files_alone() {
    let ca = new_ca();
    let dir = ca.path();
    let crt_before = fs::read(dir.join("cluster.crt")).unwrap();
    let key_before = fs::read(dir.join("cluster.key")).unwrap();

    let stderr = fail(dir, &["ca", "initialize", "other"]);

    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert!(stderr.contains("cluster.crt"), "{stderr}");
    assert_eq!(fs::read(dir.join("cluster.crt")).unwrap(), crt_before);
    assert_eq!(fs::read(dir.join("cluster.key")).unwrap(), key_before);
    assert_eq!(file_names(dir), ["cluster.crt", "cluster.key"]);
}

#[test]
fn initialize_refuses_when_only_the_key_exists() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    fs::write(dir.join("cluster.key"), b"precious").unwrap();

    let stderr = fail(dir, &["ca", "initialize", "x"]);

    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert!(stderr.contains("cluster.key"), "{stderr}");
    assert_eq!(fs::read(dir.join("cluster.key")).unwrap(), b"precious");
    assert_eq!(file_names(dir), ["cluster.key"]);
}

#[test]
fn initialize_refuses_an_empty_cluster_name() {
    let directory = tempfile::tempdir().unwrap();
    let stderr = fail(directory.path(), &["ca", "initialize", ""]);
    assert!(stderr.contains("invalid cluster name"), "{stderr}");
    assert!(file_names(directory.path()).is_empty());
}

// ---------------------------------------------------------------- leaves

#[test]
fn control_certificate_for_a_dns_name() {
    let ca = new_ca();
    let output = tempfile::tempdir().unwrap();

    let stdout = succeed(
        output.path(),
        &[
            "ca",
            "create-control-certificate",
            "control.example.com",
            "-i",
            path_str(ca.path()),
            "-o",
            path_str(output.path()),
        ],
    );

    assert_eq!(
        file_names(output.path()),
        ["control-control.example.com.crt", "control-control.example.com.key"]
    );
    assert!(stdout.contains("control-control.example.com.crt"), "{stdout}");
    assert!(stdout.contains("control-service.crt"), "{stdout}");
    let written = written(output.path(), "control-control.example.com");
    check_leaf(ca.path(), &written, "sslserver");

    let leaf_der = der(&written.certificate);
    let leaf = parse(&leaf_der);
    assert_eq!(common_name(&leaf), "control-service");
    assert_eq!(alternative_names(&leaf), ["DNS:control-service", "DNS:control.example.com"]);
    assert_eq!(key_purposes(&leaf), (true, false));
}

#[test]
fn control_certificate_for_ip_addresses() {
    let ca = new_ca();
    for (address, expected) in [("192.0.2.7", "IP:192.0.2.7"), ("2001:db8::1", "IP:2001:db8::1")] {
        succeed(ca.path(), &["ca", "create-control-certificate", address]);
        let written = written(ca.path(), &format!("control-{address}"));
        check_leaf(ca.path(), &written, "sslserver");

        let leaf_der = der(&written.certificate);
        let leaf = parse(&leaf_der);
        assert_eq!(common_name(&leaf), "control-service");
        assert_eq!(alternative_names(&leaf), ["DNS:control-service", expected]);
        assert_eq!(key_purposes(&leaf), (true, false));
    }
}

#[test]
fn control_certificate_refuses_a_bad_hostname() {
    let ca = new_ca();
    for bad in ["../escape", "a b", "under_score.example"] {
        let stderr = fail(ca.path(), &["ca", "create-control-certificate", bad]);
        assert!(stderr.contains("invalid hostname"), "{stderr}");
    }
    assert_eq!(file_names(ca.path()), ["cluster.crt", "cluster.key"]);
}

#[test]
fn node_certificate_is_named_after_a_new_node_uuid() {
    let ca = new_ca();

    let stdout = succeed(ca.path(), &["ca", "create-node-certificate"]);

    let names: Vec<String> =
        file_names(ca.path()).into_iter().filter(|name| !name.starts_with("cluster.")).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let stem = names[0].strip_suffix(".crt").unwrap();
    let node_id = Uuid::parse_str(stem).unwrap();
    assert_eq!(node_id.get_version_num(), 4);
    assert_eq!(names[1], format!("{node_id}.key"));
    assert!(stdout.contains(&node_id.to_string()), "{stdout}");
    assert!(stdout.contains("node.crt") && stdout.contains("node.key"), "{stdout}");

    let written = written(ca.path(), stem);
    check_leaf(ca.path(), &written, "sslclient");
    // Also a TLS server of its name, for the pushes of volumes other nodes make to it.
    check_leaf(ca.path(), &written, "sslserver");
    let leaf_der = der(&written.certificate);
    let leaf = parse(&leaf_der);
    assert_eq!(common_name(&leaf), format!("node-{node_id}"));
    assert_eq!(key_purposes(&leaf), (true, true));
    assert_eq!(alternative_names(&leaf), [format!("DNS:node-{node_id}")]);
}

#[test]
fn api_certificate_is_named_after_the_user() {
    let ca = new_ca();
    let output = tempfile::tempdir().unwrap();

    let stdout = succeed(
        ca.path(),
        &["ca", "create-api-certificate", "alice.smith_2", "--outputpath", path_str(output.path())],
    );

    assert_eq!(file_names(output.path()), ["alice.smith_2.crt", "alice.smith_2.key"]);
    assert!(stdout.contains("alice.smith_2.crt"), "{stdout}");
    let written = written(output.path(), "alice.smith_2");
    check_leaf(ca.path(), &written, "sslclient");
    let leaf_der = der(&written.certificate);
    let leaf = parse(&leaf_der);
    assert_eq!(common_name(&leaf), "user-alice.smith_2");
    assert_eq!(key_purposes(&leaf), (false, true));
    // The client certificate is no server certificate.
    let output = openssl(&[
        "verify",
        "-CAfile",
        path_str(&ca.path().join("cluster.crt")),
        "-purpose",
        "sslserver",
        path_str(&written.certificate),
    ]);
    assert!(!output.status.success());
}

#[test]
fn bad_usernames_are_refused_and_nothing_is_written() {
    let ca = new_ca();
    let too_long = "u".repeat(65);
    for bad in ["", "a/b", "../../etc/passwd", "bob smith", "zoë", too_long.as_str()] {
        let stderr = fail(ca.path(), &["ca", "create-api-certificate", bad]);
        assert!(stderr.contains("invalid username"), "{bad:?}: {stderr}");
    }
    assert_eq!(file_names(ca.path()), ["cluster.crt", "cluster.key"]);
}

#[test]
fn leaf_refuses_to_overwrite_and_generates_nothing() {
    let ca = new_ca();
    let dir = ca.path();
    fs::write(dir.join("bob.crt"), b"existing certificate").unwrap();

    let stderr = fail(dir, &["ca", "create-api-certificate", "bob"]);

    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert!(stderr.contains("bob.crt"), "{stderr}");
    assert_eq!(fs::read(dir.join("bob.crt")).unwrap(), b"existing certificate");
    assert_eq!(file_names(dir), ["bob.crt", "cluster.crt", "cluster.key"]);

    // Same when only the key is in the way.
    fs::remove_file(dir.join("bob.crt")).unwrap();
    fs::write(dir.join("bob.key"), b"existing key").unwrap();
    let stderr = fail(dir, &["ca", "create-api-certificate", "bob"]);
    assert!(stderr.contains("bob.key"), "{stderr}");
    assert_eq!(fs::read(dir.join("bob.key")).unwrap(), b"existing key");
    assert_eq!(file_names(dir), ["bob.key", "cluster.crt", "cluster.key"]);
}

#[test]
fn same_leaf_twice_is_refused() {
    let ca = new_ca();
    succeed(ca.path(), &["ca", "create-control-certificate", "host"]);
    let before = fs::read(ca.path().join("control-host.crt")).unwrap();
    let stderr = fail(ca.path(), &["ca", "create-control-certificate", "host"]);
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(fs::read(ca.path().join("control-host.crt")).unwrap(), before);
}

// ---------------------------------------------------------------- paths

#[test]
fn default_paths_are_the_current_directory() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();

    succeed(dir, &["ca", "initialize", "here"]);
    succeed(dir, &["ca", "create-api-certificate", "bob"]);
    succeed(dir, &["ca", "create-control-certificate", "localhost"]);

    assert_eq!(
        file_names(dir),
        [
            "bob.crt",
            "bob.key",
            "cluster.crt",
            "cluster.key",
            "control-localhost.crt",
            "control-localhost.key"
        ]
    );
    check_leaf(dir, &written(dir, "bob"), "sslclient");
    check_leaf(dir, &written(dir, "control-localhost"), "sslserver");
}

#[test]
fn missing_ca_files_are_named() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();

    let stderr = fail(dir, &["ca", "create-node-certificate", "-i", path_str(dir)]);
    assert!(stderr.contains(&format!("cluster.crt not found in {}", dir.display())), "{stderr}");
    assert!(stderr.contains("flockerctl ca initialize"), "{stderr}");

    let ca = new_ca();
    fs::copy(ca.path().join("cluster.crt"), dir.join("cluster.crt")).unwrap();
    let stderr = fail(dir, &["ca", "create-api-certificate", "bob"]);
    assert!(stderr.contains("cluster.key not found in ."), "{stderr}");
    assert_eq!(file_names(dir), ["cluster.crt"]);
}

#[test]
fn a_missing_output_directory_is_an_error() {
    let ca = new_ca();
    let missing = ca.path().join("missing");
    let stderr =
        fail(ca.path(), &["ca", "create-api-certificate", "bob", "-o", path_str(&missing)]);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

// ---------------------------------------------------------------- bad CAs

#[test]
fn a_leaf_is_not_accepted_as_the_ca() {
    let ca = new_ca();
    succeed(ca.path(), &["ca", "create-api-certificate", "bob"]);
    let fake = tempfile::tempdir().unwrap();
    fs::copy(ca.path().join("bob.crt"), fake.path().join("cluster.crt")).unwrap();
    fs::copy(ca.path().join("bob.key"), fake.path().join("cluster.key")).unwrap();

    let stderr = fail(fake.path(), &["ca", "create-api-certificate", "eve"]);

    assert!(stderr.contains("cluster.crt is not a CA certificate"), "{stderr}");
    assert_eq!(file_names(fake.path()), ["cluster.crt", "cluster.key"]);
}

#[test]
fn a_key_of_another_ca_is_refused() {
    let first = new_ca();
    let second = new_ca();
    fs::remove_file(first.path().join("cluster.key")).unwrap();
    fs::copy(second.path().join("cluster.key"), first.path().join("cluster.key")).unwrap();

    let stderr = fail(first.path(), &["ca", "create-node-certificate"]);

    assert!(stderr.contains("cluster.key is not the private key of"), "{stderr}");
}

#[test]
fn garbage_ca_files_are_refused() {
    let ca = new_ca();
    fs::write(ca.path().join("cluster.key"), b"not a key").unwrap();
    let stderr = fail(ca.path(), &["ca", "create-node-certificate"]);
    assert!(stderr.contains("cluster.key is not a usable private key"), "{stderr}");

    fs::write(ca.path().join("cluster.crt"), b"not a certificate").unwrap();
    let stderr = fail(ca.path(), &["ca", "create-node-certificate"]);
    assert!(stderr.contains("cluster.crt is not a PEM X.509 certificate"), "{stderr}");
}

/// Makes a CA with OpenSSL from a key made by `make_key` (arguments to
/// openssl, with the key's path appended) and the subject `subject`.
fn openssl_ca(key_args: &[&str], key_header: &str, subject: &str) -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let key: PathBuf = directory.path().join("cluster.key");
    let mut args = key_args.to_vec();
    args.extend(["-out", path_str(&key)]);
    assert!(openssl(&args).status.success());
    assert!(
        fs::read_to_string(&key).unwrap().starts_with(key_header),
        "the test needs a key in {key_header} format"
    );
    let output = openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&key),
        "-subj",
        subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-days",
        "30",
        "-out",
        path_str(&directory.path().join("cluster.crt")),
    ]);
    assert!(output.status.success(), "{output:?}");
    directory
}

#[test]
fn signs_with_an_openssl_rsa_ca_in_pkcs1_format() {
    let cluster_id = Uuid::new_v4();
    let ca = openssl_ca(
        &["genrsa", "-traditional"],
        "-----BEGIN RSA PRIVATE KEY-----",
        &format!("/CN=old flocker cluster/OU={cluster_id}"),
    );
    succeed(ca.path(), &["ca", "create-api-certificate", "bob"]);
    let written = written(ca.path(), "bob");
    check_leaf(ca.path(), &written, "sslclient");
    let leaf_der = der(&written.certificate);
    assert_eq!(organizational_unit(&parse(&leaf_der)), cluster_id.to_string());
}

#[test]
fn signs_with_an_openssl_p384_ca_in_sec1_format() {
    let ca = openssl_ca(
        &["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
        "-----BEGIN EC PRIVATE KEY-----",
        &format!("/CN=ec cluster/OU={}", Uuid::new_v4()),
    );
    succeed(ca.path(), &["ca", "create-control-certificate", "10.0.0.1"]);
    check_leaf(ca.path(), &written(ca.path(), "control-10.0.0.1"), "sslserver");
}

#[test]
fn a_ca_without_a_cluster_uuid_is_refused() {
    let ca = openssl_ca(
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        "-----BEGIN EC PRIVATE KEY-----",
        "/CN=no uuid",
    );
    let stderr = fail(ca.path(), &["ca", "create-node-certificate"]);
    assert!(stderr.contains("has no cluster uuid"), "{stderr}");

    let ca = openssl_ca(
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        "-----BEGIN EC PRIVATE KEY-----",
        "/CN=bad uuid/OU=engineering",
    );
    let stderr = fail(ca.path(), &["ca", "create-node-certificate"]);
    assert!(stderr.contains("\"engineering\", which is not a cluster uuid"), "{stderr}");
}

// ---------------------------------------------------------------- library

#[test]
fn library_api_writes_what_it_returns() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();

    let authority = ca::initialize(dir, "library").unwrap();
    assert_eq!(authority, written(dir, "cluster"));

    let control = ca::create_control_certificate(dir, dir, "127.0.0.1").unwrap();
    assert_eq!(control, written(dir, "control-127.0.0.1"));
    check_leaf(dir, &control, "sslserver");

    let (node_id, node) = ca::create_node_certificate(dir, dir).unwrap();
    assert_eq!(node, written(dir, &node_id.to_string()));
    check_leaf(dir, &node, "sslclient");

    let user = ca::create_api_certificate(dir, dir, "carol").unwrap();
    assert_eq!(user, written(dir, "carol"));
    check_leaf(dir, &user, "sslclient");

    let error = ca::initialize(dir, "again").unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("refusing to overwrite {}", dir.join("cluster.crt").display())
    );
    let error = ca::create_api_certificate(dir, dir, "bad/name").unwrap_err();
    assert!(matches!(error, ca::CaError::InvalidArgument { .. }));
}
