//! Where the control service is and who we are to it: the old `flockerctl`'s options, also read
//! from `FLOCKER_*` variables, and every failure to talk to it turned into one line that says
//! what to do. The control service may be several instances (one per Mesos master): a call
//! that one of them does not answer goes on to the next (see `flocker_api::client`), and the
//! command then says on stderr which one answered.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use flocker_api::certificates::CertificateError;
use flocker_api::client::{DEFAULT_REST_PORT, HostList, TlsLibrary};
use flocker_api::{Client, ClientConfig, ClientError, TransportProblem};

#[derive(Args, Clone, Debug)]
pub struct ConnectionArgs {
    /// Directory holding cluster.crt and the user's <user>.crt and <user>.key
    #[arg(long, env = "FLOCKER_CERTS_PATH", default_value = "/etc/flocker", global = true)]
    pub certs_path: PathBuf,
    /// The API user whose certificate is presented (flockerctl ca create-api-certificate <user>)
    #[arg(long, env = "FLOCKER_USER", default_value = "user", global = true)]
    pub user: String,
    /// Host name or address of the control service, or of its instances separated by commas
    /// (tried in turn) [default: the control-service hostname in <certs-path>/agent.yml]
    #[arg(long, env = "FLOCKER_CONTROL_SERVICE", global = true)]
    pub control_service: Option<String>,
    /// Port of the control service's REST API
    #[arg(long, env = "FLOCKER_CONTROL_PORT", default_value_t = DEFAULT_REST_PORT, global = true)]
    pub control_port: u16,
    /// The TLS implementation: `openssl` for a Flocker 1.x cluster whose flocker-ca certificates
    /// are X.509 v1, which rustls refuses
    #[arg(long, env = "FLOCKER_TLS_LIBRARY", value_enum, default_value_t = Tls::Rustls, global = true)]
    pub tls_library: Tls,
}

/// `--tls-library`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Rustls,
    Openssl,
}

/// A client and what it took to make it, for the error messages.
pub struct Connection {
    client: Client,
    /// Every host's `host:port`, in the order given.
    addresses: Vec<String>,
    /// The instance last said to have answered (at first, the first one, said by nobody).
    announced: RefCell<String>,
    args: ConnectionArgs,
}

impl ConnectionArgs {
    /// Loads the certificates; connects on the first call.
    pub fn connect(&self) -> anyhow::Result<Connection> {
        let host = self.host()?;
        let mut config =
            ClientConfig::from_directory(&self.certs_path, &self.user, &host, self.control_port);
        config.timeout = Duration::from_secs(15);
        config.connect_timeout = Duration::from_secs(5);
        config.tls = match self.tls_library {
            Tls::Rustls => TlsLibrary::Rustls,
            Tls::Openssl => TlsLibrary::OpenSsl,
        };
        let client = Client::new(&config).map_err(|e| anyhow!(self.certificate_advice(&e)))?;
        let addresses: Vec<String> = config.address().split(',').map(str::to_owned).collect();
        let announced = RefCell::new(client.current_address());
        Ok(Connection { client, addresses, announced, args: self.clone() })
    }

    /// A certificate that cannot be used, and what to do about it.
    fn certificate_advice(&self, error: &ClientError) -> String {
        match error {
            ClientError::Certificate(CertificateError::VersionOne { .. }) => {
                format!("{error}; or keep them and use --tls-library openssl")
            }
            ClientError::Hosts(_) => format!(
                "{error}: give --control-service (or FLOCKER_CONTROL_SERVICE) one host, or several \
                 separated by commas"
            ),
            _ => format!(
                "{error}; make an API user's certificate with `flockerctl ca create-api-certificate {user}` \
                 and put {user}.crt, {user}.key and cluster.crt in {dir}, or point --certs-path and --user at yours",
                user = self.user,
                dir = self.certs_path.display()
            ),
        }
    }

    /// `--control-service`, else the hostname in `agent.yml` beside the certificates (on an
    /// agent node, that is where the control service is).
    fn host(&self) -> anyhow::Result<String> {
        if let Some(host) = &self.control_service {
            return Ok(host.clone());
        }
        let agent_yml = self.certs_path.join("agent.yml");
        control_host_from(&agent_yml).with_context(|| {
            format!(
                "no control service given: use --control-service (or FLOCKER_CONTROL_SERVICE), \
                 or put an agent.yml naming it in {}",
                self.certs_path.display()
            )
        })
    }
}

/// `control-service: {hostname: …}` from an `agent.yml`: one host, or several (a list, or
/// separated by commas), as `--control-service` takes them.
fn control_host_from(path: &Path) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct AgentYml {
        #[serde(rename = "control-service")]
        control_service: ControlService,
    }
    #[derive(serde::Deserialize)]
    struct ControlService {
        hostname: HostList,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed: AgentYml = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} has no control-service hostname", path.display()))?;
    Ok(parsed.control_service.hostname.joined())
}

impl Connection {
    /// Runs one call; a failure becomes one line saying what to do.
    pub fn call<T>(
        &self,
        call: impl FnOnce(&Client) -> Result<T, ClientError>,
    ) -> anyhow::Result<T> {
        let result = call(&self.client);
        self.announce();
        result.map_err(|e| anyhow!(self.explain(&e)))
    }

    /// The client itself, for calls whose errors the caller reads (a 409, say).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The instance that answered last, `host:port`.
    pub fn address(&self) -> String {
        self.client.current_address()
    }

    /// Once the call went to another instance than before, says so on stderr: which one
    /// answered, and which were passed over (every one between them, in the order given).
    fn announce(&self) {
        let answered = self.client.current_address();
        let mut announced = self.announced.borrow_mut();
        if *announced == answered {
            return;
        }
        let position = |address: &str| self.addresses.iter().position(|a| a == address);
        let (Some(from), Some(to)) = (position(&announced), position(&answered)) else { return };
        let count = self.addresses.len();
        let skipped: Vec<&str> = (from..from + (to + count - from) % count)
            .map(|i| &*self.addresses[i % count])
            .collect();
        eprintln!(
            "note: the control service at {answered} answered; {} did not",
            skipped.join(", ")
        );
        *announced = answered;
    }

    /// One line: what failed, and what to do about it.
    pub fn explain(&self, error: &ClientError) -> String {
        if !error.failed_attempts().is_empty() {
            return self.explain_several(error);
        }
        let (address, user) = (&self.address(), &self.args.user);
        let certs = self.args.certs_path.display();
        match error.transport_problem() {
            None => error.to_string(),
            Some(TransportProblem::Refused) => format!(
                "nothing answers at {address}: is flocker-control running there, and are --control-service and --control-port right?"
            ),
            Some(TransportProblem::TimedOut) => format!(
                "no answer from {address} in time: check the address, and that port {} is open to this machine",
                self.args.control_port
            ),
            Some(TransportProblem::UnknownHost) => {
                format!(
                    "cannot resolve the control service's name in {address}: check --control-service"
                )
            }
            Some(TransportProblem::UntrustedServer) => format!(
                "the service at {address} has a certificate not signed by {certs}/cluster.crt: it belongs to another cluster, or cluster.crt is the wrong one"
            ),
            Some(TransportProblem::CertificateRefused) => format!(
                "the control service at {address} refused our certificate {certs}/{user}.crt: use an API user's certificate from this cluster's CA (`flockerctl ca create-api-certificate {user}`)"
            ),
            Some(TransportProblem::Tls | TransportProblem::Other) => {
                format!("{}: {}", error, source_chain(error))
            }
        }
    }

    /// One line for a call that no instance took: each one and why (the error says it), and
    /// what to do about the last one's failure.
    fn explain_several(&self, error: &ClientError) -> String {
        let (user, port) = (&self.args.user, self.args.control_port);
        let certs = self.args.certs_path.display();
        let advice = match error.transport_problem() {
            None if error.status() == Some(503) => {
                "no instance can reach the cluster's store now; try again when one can".to_owned()
            }
            None => return error.to_string(),
            Some(TransportProblem::UntrustedServer) => {
                format!("check --control-service, and that {certs}/cluster.crt is this cluster's")
            }
            Some(TransportProblem::CertificateRefused) => format!(
                "use an API user's certificate from this cluster's CA (`flockerctl ca create-api-certificate {user}`)"
            ),
            Some(_) => format!(
                "is flocker-control running there, are --control-service and --control-port right, and is port {port} open to this machine?"
            ),
        };
        format!("{error}: {advice}")
    }
}

impl Drop for Connection {
    /// A command whose last call went to another instance says so before it ends.
    fn drop(&mut self) {
        self.announce();
    }
}

/// The causes of an error, joined: the last resort, when we cannot say it better.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}
