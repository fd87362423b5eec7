//! A Flocker 1.x cluster's own certificates, as `flocker-ca` made them: X.509 v1 carrying v3
//! extensions, RSA, SHA-256. The control service starts on its `cluster.crt` and
//! `control-service.crt` unchanged; with `--tls-library openssl` it serves the v1 client
//! certificates of Flocker's clients (the Docker plugin's `plugin.crt`, Kubernetes'
//! `apiuser.crt`), and refuses what Flocker refused. The clients here are Python's `ssl`, the
//! TLS stack (OpenSSL) of Flocker's own clients: rustls will not even present a v1 certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flocker_testkit::openssl::{PythonAnswer, PythonClient, python_request, x509_version};
use flocker_testkit::{ClusterCertificates, ControlProcess, tls_handshake};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Extension, X509NameBuilder};

fn binary() -> &'static Path {
    env!("CARGO_BIN_EXE_flocker-control").as_ref()
}

const OPENSSL: &[&str] = &["--tls-library", "openssl"];
const TLS_1_2: PythonClient<'static> =
    PythonClient { alpn: &[], tls_1_2: true, http_version: "HTTP/1.1" };

#[test]
fn a_flocker_ca_cluster_and_control_certificate_serve_v3_clients_by_default() {
    let control = FlockerOneControl::start(&[]);
    assert_eq!(x509_version(&control.ca.directory.join("cluster.crt")), 1);
    assert_eq!(x509_version(&control.ca.directory.join("control-service.crt")), 1);
    let user = control.ca.issue("alice", "user-alice", Kind::User, How::VERSION_3);
    assert_eq!(x509_version(&user.0), 3);
    for client in [PythonClient::default(), TLS_1_2] {
        let served = control.request(control.process.rest, &user, client);
        assert_eq!(status(&served), Ok("HTTP/1.1 200 OK"), "{client:?}\n{}", control.log());
    }
    let (logged, log) = control.process.wait_for_log("control-service.crt is an X.509 v1");
    assert!(logged && log.contains("--tls-library openssl"), "{log}");
}

#[test]
fn by_default_a_v1_client_certificate_is_refused_and_the_log_says_how_to_accept_it() {
    let control = FlockerOneControl::start(&[]);
    let plugin = control.ca.plugin();
    assert_eq!(x509_version(&plugin.0), 1);
    let refused = control.request(control.process.rest, &plugin, PythonClient::default());
    assert!(refused.is_err(), "{refused:?}");
    let (logged, log) = control.process.wait_for_log(
        "refused the X.509 v1 client certificate with CN \"user-plugin\": Flocker's flocker-ca \
         made such certificates; start flocker-control with --tls-library openssl",
    );
    assert!(logged, "{log}");
}

#[test]
fn with_openssl_the_v1_certificates_of_flockers_clients_are_served_on_both_ports() {
    let control = FlockerOneControl::start(OPENSSL);
    let plugin = control.ca.plugin();
    let kubernetes = control.ca.issue("apiuser", "user-apiuser", Kind::User, How::default());
    for (identity, client) in [
        (&plugin, PythonClient::default()),
        (&plugin, TLS_1_2),
        (&kubernetes, PythonClient::default()),
    ] {
        let served = control.request(control.process.rest, identity, client);
        assert_eq!(status(&served), Ok("HTTP/1.1 200 OK"), "{client:?}\n{}", control.log());
    }
    let tls_versions: Vec<_> = [PythonClient::default(), TLS_1_2]
        .map(|client| control.request(control.process.rest, &plugin, client).unwrap().tls_version)
        .to_vec();
    assert_eq!(tls_versions, ["TLSv1.3", "TLSv1.2"]);
    // v3 certificates are served as before.
    let user = control.ca.issue("alice", "user-alice", Kind::User, How::VERSION_3);
    let served = control.request(control.process.rest, &user, PythonClient::default());
    assert_eq!(status(&served), Ok("HTTP/1.1 200 OK"));
    // An agent's node certificate on the agent port: any HTTP answer means it was let in.
    let node = control.ca.node();
    for client in [PythonClient::default(), TLS_1_2] {
        let answered = control.request(control.process.agent, &node, client);
        assert!(status(&answered).is_ok_and(|s| s.starts_with("HTTP/1.1 ")), "{answered:?}");
    }
}

#[test]
fn a_v1_certificate_of_another_flocker_cluster_is_refused_in_both_modes() {
    for mode in [&[][..], OPENSSL] {
        let control = FlockerOneControl::start(mode);
        // Another cluster's CA, even one with the very same subject: only its key differs.
        let stranger = FlockerCa::impostor(&control.ca.directory.join("stranger"), &control.ca);
        let plugin = stranger.plugin();
        let refused = control.request(control.process.rest, &plugin, PythonClient::default());
        assert!(refused.is_err(), "{mode:?}: {refused:?}");
        let user = stranger.issue("alice", "user-alice", Kind::User, How::VERSION_3);
        let refused = control.request(control.process.rest, &user, PythonClient::default());
        assert!(refused.is_err(), "{mode:?}: {refused:?}");
        if mode == OPENSSL {
            let (logged, log) = control.process.wait_for_log(
                "refused the X.509 v1 client certificate with CN \"user-plugin\": certificate \
                 signature failure",
            );
            assert!(logged, "{log}");
        }
    }
}

#[test]
fn a_v1_certificate_for_the_other_port_is_refused_in_both_modes() {
    for mode in [&[][..], OPENSSL] {
        let control = FlockerOneControl::start(mode);
        let node = control.ca.node();
        let refused = control.request(control.process.rest, &node, PythonClient::default());
        assert!(refused.is_err(), "{mode:?}: {refused:?}");
        let plugin = control.ca.plugin();
        let refused = control.request(control.process.agent, &plugin, PythonClient::default());
        assert!(refused.is_err(), "{mode:?}: {refused:?}");
        if mode == OPENSSL {
            let (logged, log) =
                control.process.wait_for_log("refused a client certificate with CN \"node-");
            assert!(logged && log.contains("this port accepts only user-*"), "{log}");
            let (logged, log) = control.process.wait_for_log(
                "refused a client certificate with CN \"user-plugin\": this port accepts only node-*",
            );
            assert!(logged, "{log}");
        }
    }
}

#[test]
fn with_openssl_an_expired_v1_certificate_is_refused() {
    let control = FlockerOneControl::start(OPENSSL);
    let expired = control.ca.issue("expired", "user-expired", Kind::User, How::EXPIRED);
    let refused = control.request(control.process.rest, &expired, PythonClient::default());
    assert!(refused.is_err(), "{refused:?}");
    let (logged, log) = control.process.wait_for_log(
        "refused the X.509 v1 client certificate with CN \"user-expired\": certificate has expired",
    );
    assert!(logged, "{log}");
}

#[test]
fn with_openssl_a_v1_server_certificate_is_not_a_client_certificate() {
    // extendedKeyUsage serverAuth: OpenSSL's purpose sslclient refuses it.
    let control = FlockerOneControl::start(OPENSSL);
    let server = control.ca.issue("server", "user-server", Kind::Server, How::default());
    let refused = control.request(control.process.rest, &server, PythonClient::default());
    assert!(refused.is_err(), "{refused:?}");
    // OpenSSL's words vary with its version: "unsupported" or "unsuitable certificate purpose".
    let (logged, log) = control
        .process
        .wait_for_log("refused the X.509 v1 client certificate with CN \"user-server\": ");
    assert!(logged && log.contains("certificate purpose"), "{log}");
}

#[test]
fn a_v1_certificates_common_name_with_a_newline_does_not_forge_a_log_line_either() {
    // The v1 refusal by default, the CN prefix's with OpenSSL (tests/tls.rs has a v3 one's).
    const FORGED: &str = "[2026-01-01T00:00:00Z INFO  flocker_control] all is well";
    for mode in [&[][..], OPENSSL] {
        let control = FlockerOneControl::start(mode);
        let common_name = format!("node-x\n{FORGED}");
        let identity = control.ca.issue("forger", &common_name, Kind::Node, How::default());
        let refused = control.request(control.process.rest, &identity, PythonClient::default());
        assert!(refused.is_err(), "{refused:?}");
        let (logged, log) = control.process.wait_for_log(&format!("CN \"node-x\\n{FORGED}\""));
        assert!(logged, "{mode:?}: {log}");
        assert!(!log.lines().any(|line| line.starts_with(FORGED)), "{log}");
    }
}

#[test]
fn our_rustls_clients_trust_a_v3_copy_of_a_flocker_ca_cluster_certificate() {
    // The README's migration: rustls clients (ours) take neither a v1 anchor with extensions
    // nor a v1 server certificate, so they get cluster.crt re-signed as v3 by cluster.key (the
    // same subject and key, hence the same anchor), and the service a v3 control certificate
    // from the same CA, which Flocker's clients accept too.
    let control = FlockerOneControl::start_with(OPENSSL, How::VERSION_3);
    let copy = control.ca.version_3_copy();
    assert_eq!(x509_version(&copy), 3);
    let (certificate, key) = control.ca.issue("alice", "user-alice", Kind::User, How::VERSION_3);
    let rest = control.process.rest;
    let served = tls_handshake(rest, &copy, Some((&certificate, &key)), "/v1/version");
    assert_eq!(served.as_deref(), Ok("HTTP/1.1 200 OK"));
    let plugin = control.ca.plugin();
    let served = control.request(rest, &plugin, PythonClient::default());
    assert_eq!(status(&served), Ok("HTTP/1.1 200 OK"));
}

/// A control service started on a `flocker-ca` cluster's files, as copied from a Flocker
/// control node: its `cluster.crt`, and its v1 `control-service.crt` and key.
struct FlockerOneControl {
    process: ControlProcess,
    ca: FlockerCa,
    /// Dropped last: the service's files live in it.
    certificates: ClusterCertificates,
}

impl FlockerOneControl {
    fn start(options: &[&str]) -> Self {
        Self::start_with(options, How::default())
    }

    /// With a control certificate made as `control` says.
    fn start_with(options: &[&str], control: How) -> Self {
        let certificates = ClusterCertificates::new();
        let ca = FlockerCa::new(&certificates.root().join("flocker-ca"), "flocker-1-cluster");
        let (certificate, key) = ca.issue(
            "control-service",
            "control-service",
            Kind::Control("control.example.com"),
            control,
        );
        let installed = certificates.control_directory();
        std::fs::copy(ca.directory.join("cluster.crt"), installed.join("cluster.crt")).unwrap();
        std::fs::copy(certificate, installed.join("control-service.crt")).unwrap();
        std::fs::copy(key, installed.join("control-service.key")).unwrap();
        let data = certificates.root().join("data");
        let process = ControlProcess::start(binary(), &certificates, &data, options)
            .unwrap_or_else(|error| panic!("{error}"));
        Self { process, ca, certificates }
    }

    fn request(
        &self,
        port: SocketAddr,
        (certificate, key): &(PathBuf, PathBuf),
        client: PythonClient<'_>,
    ) -> Result<PythonAnswer, String> {
        let cluster = self.certificates.control_directory().join("cluster.crt");
        python_request(port, &cluster, Some((certificate, key)), client, "/v1/version")
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

fn status(answer: &Result<PythonAnswer, String>) -> Result<&str, &str> {
    answer.as_ref().map(|a| a.status_line.as_str()).map_err(String::as_str)
}

/// A certificate authority that works as Flocker 1.x's `flocker-ca` did
/// (`flocker/ca/_ca.py`, pyOpenSSL on the same OpenSSL calls): `X509()` with no version set,
/// hence X.509 v1, with v3 extensions added all the same; RSA keys (4096 bits there, 2048 here
/// to keep the tests quick) written in the traditional PEM form; SHA-256; random 128-bit
/// serials; subjects `CN=<name>, OU=<cluster uuid>`, issued by the CA's subject.
struct FlockerCa {
    directory: PathBuf,
    certificate: X509,
    key: PKey<Private>,
    name: String,
    organizational_unit: String,
}

/// What a certificate is for, hence its extensions.
#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    /// `create-control-certificate <hostname>`: subjectAltName DNS:control-service,DNS:<hostname>.
    Control(&'a str),
    /// `create-node-certificate`: no extensions.
    Node,
    /// `create-api-certificate`: extendedKeyUsage clientAuth.
    User,
    /// Not something flocker-ca made: extendedKeyUsage serverAuth.
    Server,
}

/// How a certificate departs from flocker-ca's.
#[derive(Debug, Clone, Copy, Default)]
struct How {
    /// X.509 v3, as `flockerctl ca` or `openssl` would make it.
    version_3: bool,
    /// Valid from two days ago until yesterday.
    expired: bool,
}

impl How {
    const VERSION_3: Self = Self { version_3: true, expired: false };
    const EXPIRED: Self = Self { version_3: false, expired: true };
}

impl FlockerCa {
    /// `flocker-ca initialize <name>`: cluster.crt and cluster.key in `directory`.
    fn new(directory: &Path, name: &str) -> Self {
        let organizational_unit = uuid::Uuid::new_v4().to_string();
        Self::with_subject(directory, name, &organizational_unit)
    }

    /// Another CA with the subject of `like` (so the same issuer name), but its own key.
    fn impostor(directory: &Path, like: &FlockerCa) -> Self {
        Self::with_subject(directory, &like.name, &like.organizational_unit)
    }

    fn with_subject(directory: &Path, name: &str, organizational_unit: &str) -> Self {
        std::fs::create_dir_all(directory).unwrap();
        let key = write_key(&directory.join("cluster.key"));
        let subject = name_of(name, organizational_unit);
        let mut builder = certificate_builder(&key, How::default());
        builder.set_subject_name(&subject).unwrap();
        builder.set_issuer_name(&subject).unwrap();
        let mut extensions = vec![
            BasicConstraints::new().critical().ca().pathlen(0).build().unwrap(),
            KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap(),
        ];
        extensions
            .push(SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None)).unwrap());
        for extension in extensions {
            builder.append_extension(extension).unwrap();
        }
        let authority_key =
            AuthorityKeyIdentifier::new().keyid(true).build(&builder.x509v3_context(None, None));
        builder.append_extension(authority_key.unwrap()).unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        let certificate = builder.build();
        std::fs::write(directory.join("cluster.crt"), certificate.to_pem().unwrap()).unwrap();
        Self {
            directory: directory.to_owned(),
            certificate,
            key,
            name: name.to_owned(),
            organizational_unit: organizational_unit.to_owned(),
        }
    }

    /// `cluster-v3.crt`: cluster.crt re-signed by cluster.key as X.509 v3, as
    /// `openssl x509 -in cluster.crt -signkey cluster.key -extfile v3.cnf` makes it.
    fn version_3_copy(&self) -> PathBuf {
        let mut builder = certificate_builder(&self.key, How::VERSION_3);
        builder.set_subject_name(self.certificate.subject_name()).unwrap();
        builder.set_issuer_name(self.certificate.subject_name()).unwrap();
        let basic_constraints = BasicConstraints::new().critical().ca().pathlen(0).build();
        builder.append_extension(basic_constraints.unwrap()).unwrap();
        let key_usage = KeyUsage::new().critical().key_cert_sign().crl_sign().build();
        builder.append_extension(key_usage.unwrap()).unwrap();
        builder.sign(&self.key, MessageDigest::sha256()).unwrap();
        let path = self.directory.join("cluster-v3.crt");
        std::fs::write(&path, builder.build().to_pem().unwrap()).unwrap();
        path
    }

    /// The Docker plugin's `plugin.crt`: `flocker-ca create-api-certificate plugin`.
    fn plugin(&self) -> (PathBuf, PathBuf) {
        self.issue("plugin", "user-plugin", Kind::User, How::default())
    }

    /// An agent's certificate: `flocker-ca create-node-certificate`.
    fn node(&self) -> (PathBuf, PathBuf) {
        let common_name = format!("node-{}", uuid::Uuid::new_v4());
        self.issue(&common_name, &common_name, Kind::Node, How::default())
    }

    /// `<file_stem>.crt` and `<file_stem>.key`, signed by this CA.
    fn issue(
        &self,
        file_stem: &str,
        common_name: &str,
        kind: Kind,
        how: How,
    ) -> (PathBuf, PathBuf) {
        let (certificate, key) = (
            self.directory.join(format!("{file_stem}.crt")),
            self.directory.join(format!("{file_stem}.key")),
        );
        let leaf_key = write_key(&key);
        let mut builder = certificate_builder(&leaf_key, how);
        builder.set_subject_name(&name_of(common_name, &self.organizational_unit)).unwrap();
        builder.set_issuer_name(self.certificate.subject_name()).unwrap();
        let extension: Option<X509Extension> = match kind {
            Kind::Control(hostname) => Some(
                SubjectAlternativeName::new()
                    .dns("control-service")
                    .dns(hostname)
                    .build(&builder.x509v3_context(Some(&self.certificate), None))
                    .unwrap(),
            ),
            Kind::Node => None,
            Kind::User => Some(ExtendedKeyUsage::new().client_auth().build().unwrap()),
            Kind::Server => Some(ExtendedKeyUsage::new().server_auth().build().unwrap()),
        };
        if let Some(extension) = extension {
            builder.append_extension(extension).unwrap();
        }
        builder.sign(&self.key, MessageDigest::sha256()).unwrap();
        std::fs::write(&certificate, builder.build().to_pem().unwrap()).unwrap();
        (certificate, key)
    }
}

/// A new RSA key, written to `path` as flocker-ca wrote keys.
fn write_key(path: &Path) -> PKey<Private> {
    let rsa = Rsa::generate(2048).unwrap();
    std::fs::write(path, rsa.private_key_to_pem().unwrap()).unwrap();
    PKey::from_rsa(rsa).unwrap()
}

fn name_of(common_name: &str, organizational_unit: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, common_name).unwrap();
    name.append_entry_by_nid(Nid::ORGANIZATIONALUNITNAME, organizational_unit).unwrap();
    name.build()
}

/// A certificate for `key` with flocker-ca's serial and validity; v1 unless `how` says v3.
fn certificate_builder(key: &PKey<Private>, how: How) -> X509Builder {
    let mut builder = X509Builder::new().unwrap();
    if how.version_3 {
        builder.set_version(2).unwrap();
    }
    let mut serial = BigNum::new().unwrap();
    serial.rand(128, MsbOption::MAYBE_ZERO, false).unwrap();
    builder.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    const DAY: i64 = 24 * 60 * 60;
    let (not_before, not_after) =
        if how.expired { (now - 2 * DAY, now - DAY) } else { (now, now + 20 * 365 * DAY) };
    builder.set_not_before(&Asn1Time::from_unix(not_before).unwrap()).unwrap();
    builder.set_not_after(&Asn1Time::from_unix(not_after).unwrap()).unwrap();
    builder.set_pubkey(key).unwrap();
    builder
}
