//! A test cluster's certificates, laid out as Flocker lays out `/etc/flocker`.

use std::fs;
use std::path::{Path, PathBuf};

use flocker_api::{Client, ClientConfig, NodeUuid};
use flocker_cli::ca;
use tempfile::TempDir;

/// A cluster CA, a control-service certificate and its directory, in a temporary directory.
pub struct ClusterCertificates {
    root: TempDir,
}

/// A node's certificate and key (`node-<uuid>`).
#[derive(Debug, Clone)]
pub struct NodeCertificate {
    pub uuid: NodeUuid,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl ClusterCertificates {
    /// A new CA, and a control certificate for 127.0.0.1 installed as a control node's
    /// `--certificates-directory` would hold it.
    pub fn new() -> Self {
        let root = tempfile::Builder::new().prefix("flocker-test-").tempdir().expect("temp dir");
        let this = Self { root };
        fs::create_dir(this.authority()).expect("mkdir");
        fs::create_dir(this.control_directory()).expect("mkdir");
        ca::initialize(&this.authority(), "test-cluster").expect("initialize the CA");
        let control =
            ca::create_control_certificate(&this.authority(), &this.authority(), "127.0.0.1")
                .expect("control certificate");
        fs::copy(control.certificate, this.control_directory().join("control-service.crt"))
            .expect("copy");
        fs::copy(control.key, this.control_directory().join("control-service.key")).expect("copy");
        fs::copy(this.cluster_certificate(), this.control_directory().join("cluster.crt"))
            .expect("copy");
        this
    }

    /// Where everything lives.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `cluster.crt` and `cluster.key`, and every certificate made so far.
    pub fn authority(&self) -> PathBuf {
        self.root.path().join("authority")
    }

    /// The control node's `--certificates-directory`.
    pub fn control_directory(&self) -> PathBuf {
        self.root.path().join("control")
    }

    pub fn cluster_certificate(&self) -> PathBuf {
        self.authority().join("cluster.crt")
    }

    /// `<name>.crt`/`<name>.key` for an API user `user-<name>`, made once.
    pub fn user(&self, name: &str) -> (PathBuf, PathBuf) {
        let certificate = self.authority().join(format!("{name}.crt"));
        if !certificate.exists() {
            ca::create_api_certificate(&self.authority(), &self.authority(), name)
                .expect("api cert");
        }
        (certificate, self.authority().join(format!("{name}.key")))
    }

    /// A new node certificate.
    pub fn node(&self) -> NodeCertificate {
        let (uuid, written) = ca::create_node_certificate(&self.authority(), &self.authority())
            .expect("node certificate");
        NodeCertificate {
            uuid: NodeUuid::new(uuid),
            certificate: written.certificate,
            key: written.key,
        }
    }

    /// A client of `address` presenting `user-<name>`.
    pub fn client(&self, address: std::net::SocketAddr, name: &str) -> Client {
        let (certificate, key) = self.user(name);
        self.client_with(address, &certificate, &key)
    }

    /// A client of `address` presenting any certificate (a node's on the agent port, say).
    pub fn client_with(
        &self,
        address: std::net::SocketAddr,
        certificate: &Path,
        key: &Path,
    ) -> Client {
        self.client_of_hosts(&address.ip().to_string(), address.port(), certificate, key)
    }

    /// A client of the instances of one control service at `hosts` (comma-separated, as
    /// [`ClientConfig::host`] takes them) on `port`, presenting `user-<name>`: it fails over
    /// from one to the next.
    pub fn client_of_instances(&self, hosts: &str, port: u16, name: &str) -> Client {
        let (certificate, key) = self.user(name);
        self.client_of_hosts(hosts, port, &certificate, &key)
    }

    fn client_of_hosts(&self, hosts: &str, port: u16, certificate: &Path, key: &Path) -> Client {
        let config = ClientConfig {
            host: hosts.to_owned(),
            port,
            cluster_certificate: self.cluster_certificate(),
            certificate: certificate.to_owned(),
            key: key.to_owned(),
            timeout: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(5),
            tls: flocker_api::client::TlsLibrary::Rustls,
        };
        Client::new(&config).expect("client")
    }
}

impl Default for ClusterCertificates {
    fn default() -> Self {
        Self::new()
    }
}
