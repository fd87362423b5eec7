//! A blocking HTTPS client for the Flocker v1 REST API, with mutual TLS.
//!
//! It trusts only the cluster's `cluster.crt`, presents a `user-*` certificate, and verifies the
//! server as `control-service` whatever address it dialled: every control certificate carries
//! that name, while its other names depend on how the operator made it. It does this by asking
//! for `https://control-service:<port>` and resolving that name to the configured host itself.
//! Connections are pooled and kept alive; every call has a timeout.
//!
//! A control service may run as several instances sharing one configuration (one per Mesos
//! master); a client given all their hosts moves on from one that does not answer to the next
//! when that is safe ([`failover`] says when), and starts where the last call was answered.

mod failover;
mod hosts;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http::{self, Uri};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, DefaultConnector, NextTimeout};
use ureq::{Agent, Body};

use self::failover::Verdict;
pub use self::hosts::{HostList, HostListError, MAXIMUM_HOSTS, host_address, split_hosts};
use crate::certificates::{self, CertificateError};
use crate::ids::{DatasetId, Era, NodeUuid};
use crate::types::{
    AcquireLease, ConfigurationTag, CreateDataset, DATASET_PROBLEMS_PATH, DATASET_TRANSFERS_PATH,
    Dataset, DatasetProblem, DatasetState, DatasetTransfer, ErrorBody, Lease, Node, NodeByEra,
    UpdateDataset, Version,
};

/// The name every control-service certificate carries, and the one clients verify.
pub const CONTROL_SERVICE_NAME: &str = "control-service";
/// The REST API's port.
pub const DEFAULT_REST_PORT: u16 = 4523;
/// The agent API's port.
pub const DEFAULT_AGENT_PORT: u16 = 4524;
/// The query of `GET /v1/configuration/datasets` that asks for one name's datasets (ours).
pub const NAME_QUERY: &str = "name";
/// The query of `GET /v1/state/datasets` and `/v1/configuration/leases` that asks for one
/// dataset's (ours).
pub const DATASET_ID_QUERY: &str = "dataset_id";

/// The response header carrying the configuration tag.
pub const TAG_HEADER: &str = "x-configuration-tag";
/// The request header that makes a write conditional.
pub const IF_MATCHES_HEADER: &str = "x-if-configuration-matches";

/// The largest response body a client reads: enough for a very large cluster's dataset list.
const MAXIMUM_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;

/// Which TLS implementation a client uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsLibrary {
    /// rustls: the default. It accepts only X.509 v3 certificates.
    #[default]
    Rustls,
    /// The system's OpenSSL (the `native-tls` feature): for a Flocker 1.x cluster whose
    /// `flocker-ca` certificates are X.509 v1.
    OpenSsl,
}

/// Where the control service is and which certificate to present to it.
///
/// Time: a call tries each host at most once, spending at most `connect_timeout` on each that
/// cannot be reached, so it takes at most `hosts × connect_timeout + timeout` in all (with one
/// host, `timeout`, as the connection is part of it).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The host name or IP address to dial; or the instances of one control service, separated
    /// by commas (`10.0.0.1,10.0.0.2,master-3`; an IPv6 literal bare or in brackets), all on
    /// `port` and with the same certificates: see [`split_hosts`].
    pub host: String,
    pub port: u16,
    /// The cluster CA, the only certificate the client trusts.
    pub cluster_certificate: PathBuf,
    /// The client's certificate (`user-*` for the REST API, `node-*` for the agent API).
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The longest a call may take on one host, connection included.
    pub timeout: Duration,
    /// The longest a new connection (TCP and TLS) may take to open, on each host tried.
    pub connect_timeout: Duration,
    pub tls: TlsLibrary,
}

impl ClientConfig {
    /// `cluster.crt` and `<name>.crt`/`<name>.key` from one directory, as Flocker lays out
    /// `/etc/flocker` (`name` is `plugin` for the plugin's API user, `node` for an agent).
    pub fn from_directory(directory: &Path, name: &str, host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
            cluster_certificate: directory.join("cluster.crt"),
            certificate: directory.join(format!("{name}.crt")),
            key: directory.join(format!("{name}.key")),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            tls: TlsLibrary::Rustls,
        }
    }

    /// The hosts to dial, in order; an empty one is an error.
    pub fn hosts(&self) -> Result<Vec<String>, HostListError> {
        split_hosts(&self.host)
    }

    /// `host:port`, as dialled; with several hosts, each, separated by commas.
    pub fn address(&self) -> String {
        let each = self.host.split(',').map(|host| host_address(host.trim(), self.port));
        each.collect::<Vec<_>>().join(",")
    }
}

/// A call that failed, saying which call and why.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error(transparent)]
    Hosts(#[from] HostListError),
    #[error("{method} {path}: cannot talk to the control service at {address}")]
    Transport {
        method: String,
        path: String,
        address: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{method} {path} answered {status}: {description}")]
    Api { method: String, path: String, status: u16, description: String },
    #[error("{method} {path} answered {status} with a body that is not the expected JSON")]
    Decode {
        method: String,
        path: String,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
    /// With several hosts: no instance took the call. Each tried, and why; the last one's
    /// error is the source. (With one host, that error comes as it is.)
    #[error(
        "{method} {path}: no control service instance took the call: {}",
        each_attempt(attempts)
    )]
    Failover {
        method: String,
        path: String,
        attempts: Vec<FailedAttempt>,
        #[source]
        last: Box<ClientError>,
    },
}

/// One control-service instance a call tried in vain, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    /// `host:port`.
    pub address: String,
    /// In words: `connection refused`, `unavailable (503): …`.
    pub reason: String,
}

fn each_attempt(attempts: &[FailedAttempt]) -> String {
    let each: Vec<String> =
        attempts.iter().map(|a| format!("{} ({})", a.address, a.reason)).collect();
    each.join("; ")
}

/// Why a call never got an answer, in the terms an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportProblem {
    /// Nothing listens there (connection refused).
    Refused,
    /// No answer in time (the address is wrong, or a firewall drops the packets).
    TimedOut,
    /// The name does not resolve.
    UnknownHost,
    /// The server's certificate is not signed by our `cluster.crt`: another cluster's service.
    UntrustedServer,
    /// The server refused the certificate we presented (wrong CA, or not a `user-*` one).
    CertificateRefused,
    /// Another TLS failure.
    Tls,
    /// Anything else (a reset, a broken answer).
    Other,
}

impl ClientError {
    /// Why the call never got an answer; `None` if it did, or never started.
    pub fn transport_problem(&self) -> Option<TransportProblem> {
        match self {
            Self::Transport { source, .. } => Some(classify(source.as_ref())),
            Self::Failover { last, .. } => last.transport_problem(),
            _ => None,
        }
    }

    /// The HTTP status of an answer the server gave, if it gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            Self::Failover { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The instances a call tried in vain, when it had several.
    pub fn failed_attempts(&self) -> &[FailedAttempt] {
        match self {
            Self::Failover { attempts, .. } => attempts,
            _ => &[],
        }
    }
}

/// An answer as it came: status, headers and body, for callers that need more than the typed
/// calls give (tests, tools).
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Whether a 2xx lease answer created the lease or renewed one this node already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// 201: there was no lease.
    Acquired,
    /// 200: this node held it already; its expiry was replaced.
    Renewed,
}

/// A blocking, pooled, mutual-TLS client. Cheap to clone; clones share the pools and the
/// current instance.
///
/// Given several hosts, it keeps a pool for each and starts every call on the one that
/// answered last; one that does not answer is left for the next, in order, each tried at most
/// once per call, as far as that is safe (see the `failover` module: an instance that could
/// not be reached, or answered 503; a GET or HEAD also when the request was sent and no answer
/// came). A server with a certificate of another cluster ends the call at once.
#[derive(Debug, Clone)]
pub struct Client {
    instances: Arc<[Instance]>,
    /// The index of the instance that answered last, where the next call starts.
    current: Arc<AtomicUsize>,
    base: String,
    timeout: Duration,
    connect_timeout: Duration,
}

/// One instance of the control service: its address and its connection pool.
#[derive(Debug)]
struct Instance {
    agent: Agent,
    address: String,
}

impl Client {
    /// Loads the certificates and prepares the connection pools; connects on first use.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let hosts = config.hosts()?;
        let tls = tls_config(config)?;
        let instances = hosts.iter().map(|host| Instance::new(config, tls.clone(), host));
        Ok(Self {
            instances: instances.collect(),
            current: Arc::default(),
            base: format!("https://{CONTROL_SERVICE_NAME}:{}", config.port),
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
        })
    }

    /// `host:port` of the instance the next call starts with: the one that answered last.
    pub fn current_address(&self) -> String {
        self.instances[self.current_index()].address.clone()
    }

    fn current_index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.instances.len()
    }

    /// `GET /v1/version`.
    pub fn version(&self) -> Result<Version, ClientError> {
        self.call("GET", "/v1/version", &[], None::<&()>, &[200])
    }

    /// `GET /v1/configuration/datasets`: every dataset, tombstones included, and the tag.
    pub fn list_datasets(&self) -> Result<(Vec<Dataset>, ConfigurationTag), ClientError> {
        let path = "/v1/configuration/datasets";
        let response = self.checked("GET", path, &[], None::<&()>, &[200], None)?;
        let tag = ConfigurationTag(response.header(TAG_HEADER).unwrap_or_default().to_owned());
        Ok((decode("GET", path, &response)?, tag))
    }

    /// The datasets named `name` (under one of [`crate::NAME_KEYS`]), tombstones included,
    /// and the tag: `GET /v1/configuration/datasets?name=…`, a lookup of ours that costs what
    /// the answer holds, not the cluster. A service without it (Flocker 1.x) ignores the query
    /// and sends every dataset; the same filter applied here gives the same answer from either.
    pub fn datasets_named(
        &self,
        name: &str,
    ) -> Result<(Vec<Dataset>, ConfigurationTag), ClientError> {
        let path = format!("/v1/configuration/datasets?{}", query(NAME_QUERY, name));
        let response = self.checked("GET", &path, &[], None::<&()>, &[200], None)?;
        let tag = ConfigurationTag(response.header(TAG_HEADER).unwrap_or_default().to_owned());
        let mut datasets: Vec<Dataset> = decode("GET", &path, &response)?;
        datasets.retain(|dataset| dataset.is_named(name));
        Ok((datasets, tag))
    }

    /// `POST /v1/configuration/datasets`, conditional on `if_matches` when given.
    pub fn create_dataset(
        &self,
        request: &CreateDataset,
        if_matches: Option<&ConfigurationTag>,
    ) -> Result<Dataset, ClientError> {
        let headers = condition(if_matches);
        self.call("POST", "/v1/configuration/datasets", &headers, Some(request), &[201])
    }

    /// `POST /v1/configuration/datasets/<id>` with `{"primary": …}`: moves the dataset.
    pub fn move_dataset(
        &self,
        dataset_id: &DatasetId,
        primary: &NodeUuid,
        if_matches: Option<&ConfigurationTag>,
    ) -> Result<Dataset, ClientError> {
        let path = format!("/v1/configuration/datasets/{dataset_id}");
        let body = UpdateDataset { primary: Some(*primary) };
        self.call("POST", &path, &condition(if_matches), Some(&body), &[200])
    }

    /// `DELETE /v1/configuration/datasets/<id>`: leaves a tombstone.
    pub fn delete_dataset(
        &self,
        dataset_id: &DatasetId,
        if_matches: Option<&ConfigurationTag>,
    ) -> Result<Dataset, ClientError> {
        let path = format!("/v1/configuration/datasets/{dataset_id}");
        self.call("DELETE", &path, &condition(if_matches), None::<&()>, &[200])
    }

    /// `GET /v1/state/datasets`: what the agents report.
    pub fn dataset_states(&self) -> Result<Vec<DatasetState>, ClientError> {
        self.call("GET", "/v1/state/datasets", &[], None::<&()>, &[200])
    }

    /// What the agents report of one dataset: `GET /v1/state/datasets?dataset_id=…`, a lookup
    /// of ours; against a service without it (Flocker 1.x), the whole state, filtered here.
    pub fn dataset_states_of(
        &self,
        dataset_id: &DatasetId,
    ) -> Result<Vec<DatasetState>, ClientError> {
        let path =
            format!("/v1/state/datasets?{}", query(DATASET_ID_QUERY, &dataset_id.to_string()));
        let mut states: Vec<DatasetState> = self.call("GET", &path, &[], None::<&()>, &[200])?;
        states.retain(|state| state.dataset_id == *dataset_id);
        Ok(states)
    }

    /// `GET /v1/state/problems`, an extension of ours: why agents leave datasets as they are,
    /// sorted by dataset. `None` from a service without it (Flocker 1.x answers 404).
    pub fn dataset_problems(&self) -> Result<Option<Vec<DatasetProblem>>, ClientError> {
        let path = DATASET_PROBLEMS_PATH;
        let response = self.checked("GET", path, &[], None::<&()>, &[200, 404], None)?;
        match response.status {
            404 => Ok(None),
            _ => decode("GET", path, &response).map(Some),
        }
    }

    /// `GET /v1/state/transfers`, an extension of ours: the pushes of volumes between nodes'
    /// own disks under way, as the pushing nodes report them. `None` from a service without it
    /// (Flocker 1.x answers 404).
    pub fn dataset_transfers(&self) -> Result<Option<Vec<DatasetTransfer>>, ClientError> {
        let path = DATASET_TRANSFERS_PATH;
        let response = self.checked("GET", path, &[], None::<&()>, &[200, 404], None)?;
        match response.status {
            404 => Ok(None),
            _ => decode("GET", path, &response).map(Some),
        }
    }

    /// `GET /v1/configuration/leases`.
    pub fn list_leases(&self) -> Result<Vec<Lease>, ClientError> {
        self.call("GET", "/v1/configuration/leases", &[], None::<&()>, &[200])
    }

    /// The lease on one dataset, if any: `GET /v1/configuration/leases?dataset_id=…`, a lookup
    /// of ours; against a service without it (Flocker 1.x), every lease, filtered here.
    pub fn lease_of(&self, dataset_id: &DatasetId) -> Result<Option<Lease>, ClientError> {
        let path = format!(
            "/v1/configuration/leases?{}",
            query(DATASET_ID_QUERY, &dataset_id.to_string())
        );
        let leases: Vec<Lease> = self.call("GET", &path, &[], None::<&()>, &[200])?;
        Ok(leases.into_iter().find(|lease| lease.dataset_id == *dataset_id))
    }

    /// `POST /v1/configuration/leases`: acquires, or renews this node's lease. Another node's
    /// lease is an [`ClientError::Api`] with status 409.
    pub fn acquire_lease(
        &self,
        request: &AcquireLease,
    ) -> Result<(Lease, LeaseOutcome), ClientError> {
        let path = "/v1/configuration/leases";
        let response = self.checked("POST", path, &[], Some(request), &[200, 201], None)?;
        let outcome =
            if response.status == 201 { LeaseOutcome::Acquired } else { LeaseOutcome::Renewed };
        Ok((decode("POST", path, &response)?, outcome))
    }

    /// `DELETE /v1/configuration/leases/<id>`; `None` if there was no lease.
    pub fn release_lease(&self, dataset_id: &DatasetId) -> Result<Option<Lease>, ClientError> {
        let path = format!("/v1/configuration/leases/{dataset_id}");
        let response = self.checked("DELETE", &path, &[], None::<&()>, &[200, 404], None)?;
        match response.status {
            404 => Ok(None),
            _ => decode("DELETE", &path, &response).map(Some),
        }
    }

    /// `GET /v1/state/nodes`.
    pub fn list_nodes(&self) -> Result<Vec<Node>, ClientError> {
        self.call("GET", "/v1/state/nodes", &[], None::<&()>, &[200])
    }

    /// `GET /v1/state/nodes/by_era/<era>`; `None` until that node's agent has said hello.
    pub fn node_by_era(&self, era: &Era) -> Result<Option<NodeUuid>, ClientError> {
        let path = format!("/v1/state/nodes/by_era/{era}");
        let response = self.checked("GET", &path, &[], None::<&()>, &[200, 404], None)?;
        match response.status {
            404 => Ok(None),
            _ => decode::<NodeByEra>("GET", &path, &response).map(|n| Some(n.uuid)),
        }
    }

    /// Sends one request and returns the answer whatever its status. `path` starts with `/`.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<RawResponse, ClientError> {
        self.send_with_timeout(method, path, headers, body, None)
    }

    /// [`Client::send`] with a timeout of its own, for calls that wait on purpose (long-polls).
    pub fn send_with_timeout(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<RawResponse, ClientError> {
        let (outcome, failed) = self.exchange(method, path, headers, body, timeout);
        outcome.map_err(|error| failed_over(method, path, failed, error))
    }

    /// Sends `body` as JSON; an answer with a status not in `expected` is an error carrying
    /// the server's description.
    pub fn send_json<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        expected: &[u16],
        timeout: Option<Duration>,
    ) -> Result<RawResponse, ClientError> {
        self.checked(method, path, &[], body, expected, timeout)
    }

    fn checked<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&B>,
        expected: &[u16],
        timeout: Option<Duration>,
    ) -> Result<RawResponse, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let (outcome, failed) = self.exchange(method, path, headers, bytes.as_deref(), timeout);
        match outcome {
            Ok(response) if expected.contains(&response.status) => Ok(response),
            Ok(response) => {
                Err(failed_over(method, path, failed, api_error(method, path, &response)))
            }
            Err(error) => Err(failed_over(method, path, failed, error)),
        }
    }

    /// Sends one request to each instance in turn, from the current one, until one answers or
    /// going on would be unsafe; remembers the one that answered. The last outcome, and, if
    /// that was a failure too and there are several hosts, every instance tried and why.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> (Result<RawResponse, ClientError>, Vec<FailedAttempt>) {
        let request = match self.request(method, path, headers, body) {
            Ok(request) => request,
            Err(error) => {
                let index = self.current_index();
                return (Err(self.transport(index, method, path, error)), Vec::new());
            }
        };
        let count = self.instances.len();
        let first = self.current_index();
        // Each unreachable host costs at most a connect timeout; the call as a whole is bounded.
        let budget = timeout.unwrap_or(self.timeout);
        let allowance = self.connect_timeout.saturating_mul(count as u32).saturating_add(budget);
        let deadline = Instant::now().checked_add(allowance); // None: too far to matter
        let mut failed = Vec::new();
        let mut step = 0;
        loop {
            let index = (first + step) % count;
            step += 1;
            let left = deadline.map_or(budget, |d| d.saturating_duration_since(Instant::now()));
            // The agent's own timeout unless the call has one, or less time is left.
            let timeout = (timeout.is_some() || left < budget).then(|| budget.min(left));
            let (outcome, sent) =
                failover::watching(|| self.attempt(index, method, path, request.clone(), timeout));
            let address = self.instances[index].address.clone();
            let others_left = step < count;
            let reason = match failover::verdict(method, &outcome, sent, others_left) {
                Verdict::Answered => {
                    log::debug!("{method} {path}: answered by the control service at {address}");
                    self.current.store(index, Ordering::Relaxed);
                    return (outcome, Vec::new());
                }
                Verdict::TryNext { reason } if others_left && left_over(deadline) => {
                    let next = &self.instances[(index + 1) % count].address;
                    log::info!(
                        "control service at {address} did not answer ({reason}); using {next}"
                    );
                    failed.push(FailedAttempt { address, reason });
                    continue;
                }
                Verdict::TryNext { reason } if others_left => {
                    format!("{reason}; no time was left to try the other hosts")
                }
                Verdict::TryNext { reason } | Verdict::Stop { reason } => reason,
            };
            failed.push(FailedAttempt { address, reason });
            return (outcome, if count > 1 { failed } else { Vec::new() });
        }
    }

    /// The request, ready for any instance.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<http::Request<Vec<u8>>, ureq::Error> {
        let mut builder =
            http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        builder
            .body(body.unwrap_or_default().to_vec())
            .map_err(|e| ureq::Error::BadUri(format!("{method} {path}: {e}")))
    }

    /// One request to one instance, body read; `timeout` replaces the agent's.
    fn attempt(
        &self,
        index: usize,
        method: &str,
        path: &str,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<RawResponse, ClientError> {
        let agent = &self.instances[index].agent;
        let response = match timeout {
            None => agent.run(request),
            Some(timeout) => {
                agent.run(agent.configure_request(request).timeout_global(Some(timeout)).build())
            }
        }
        .map_err(|error| self.transport(index, method, path, error))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = read_body(body).map_err(|error| self.transport(index, method, path, error))?;
        Ok(RawResponse { status, headers: parts.headers, body })
    }

    fn transport(&self, index: usize, method: &str, path: &str, error: ureq::Error) -> ClientError {
        ClientError::Transport {
            method: method.to_owned(),
            path: path.to_owned(),
            address: self.instances[index].address.clone(),
            source: Box::new(error),
        }
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&B>,
        expected: &[u16],
    ) -> Result<T, ClientError> {
        let response = self.checked(method, path, headers, body, expected, None)?;
        decode(method, path, &response)
    }

    /// [`Client::send_json`], and the answer's body decoded as `T`.
    pub fn call_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        expected: &[u16],
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let response = self.send_json(method, path, body, expected, timeout)?;
        decode(method, path, &response)
    }
}

fn classify(error: &ureq::Error) -> TransportProblem {
    use rustls::{AlertDescription, CertificateError as Bad};
    let rustls_error = match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match (error, rustls_error) {
        (_, Some(rustls::Error::InvalidCertificate(Bad::UnknownIssuer | Bad::BadSignature))) => {
            TransportProblem::UntrustedServer
        }
        (_, Some(rustls::Error::AlertReceived(alert))) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRequired
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => TransportProblem::CertificateRefused,
            _ => TransportProblem::Tls,
        },
        (_, Some(_)) | (ureq::Error::Tls(_), _) => TransportProblem::Tls,
        (ureq::Error::Timeout(_), _) => TransportProblem::TimedOut,
        (ureq::Error::HostNotFound, _) => TransportProblem::UnknownHost,
        (ureq::Error::Io(io), _) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => TransportProblem::Refused,
            std::io::ErrorKind::TimedOut => TransportProblem::TimedOut,
            _ => TransportProblem::Other,
        },
        _ => TransportProblem::Other,
    }
}

/// Whether some time is left before `deadline`.
fn left_over(deadline: Option<Instant>) -> bool {
    deadline.is_none_or(|deadline| Instant::now() < deadline)
}

/// `error` as it is with one host; else with every instance tried and why.
fn failed_over(
    method: &str,
    path: &str,
    attempts: Vec<FailedAttempt>,
    error: ClientError,
) -> ClientError {
    if attempts.is_empty() {
        return error;
    }
    let (method, path) = (method.to_owned(), path.to_owned());
    ClientError::Failover { method, path, attempts, last: Box::new(error) }
}

/// `key=value`, the value percent-encoded.
fn query(key: &str, value: &str) -> String {
    form_urlencoded::Serializer::new(String::new()).append_pair(key, value).finish()
}

fn condition(if_matches: Option<&ConfigurationTag>) -> Vec<(&'static str, &str)> {
    if_matches.map(|tag| (IF_MATCHES_HEADER, tag.0.as_str())).into_iter().collect()
}

fn read_body(mut body: Body) -> Result<Vec<u8>, ureq::Error> {
    body.with_config().limit(MAXIMUM_RESPONSE_BYTES).read_to_vec()
}

/// The body of an answer as `T`.
fn decode<T: DeserializeOwned>(
    method: &str,
    path: &str,
    response: &RawResponse,
) -> Result<T, ClientError> {
    serde_json::from_slice(&response.body).map_err(|source| ClientError::Decode {
        method: method.to_owned(),
        path: path.to_owned(),
        status: response.status,
        source,
    })
}

/// An unexpected status, with the server's `description` when it sent one.
fn api_error(method: &str, path: &str, response: &RawResponse) -> ClientError {
    ClientError::Api {
        method: method.to_owned(),
        path: path.to_owned(),
        status: response.status,
        description: description(response),
    }
}

/// The `description` of an error answer, or the start of its body.
fn description(response: &RawResponse) -> String {
    serde_json::from_slice::<ErrorBody>(&response.body)
        .map(|e| e.description)
        .unwrap_or_else(|_| String::from_utf8_lossy(&response.body).chars().take(200).collect())
}

/// The trust anchor and the identity to present, for the chosen TLS library. rustls gets the
/// certificates as they are (v1 ones are refused here, with a message saying what to do);
/// OpenSSL gets the same, with the key turned into the PKCS#8 it insists on.
fn tls_config(config: &ClientConfig) -> Result<TlsConfig, ClientError> {
    let der = |c: &rustls_pki_types::CertificateDer<'_>| Certificate::from_der(c).to_owned();
    let roots: Vec<Certificate<'static>> =
        certificates::load_certificates(&config.cluster_certificate)?.iter().map(der).collect();
    let identity = match config.tls {
        TlsLibrary::Rustls => certificates::load_identity(&config.certificate, &config.key)?,
        TlsLibrary::OpenSsl => certificates::Identity {
            chain: certificates::load_certificates(&config.certificate)?,
            key: certificates::load_private_key(&config.key)?,
        },
    };
    let chain: Vec<Certificate<'static>> = identity.chain.iter().map(der).collect();
    let key = private_key(&config.key, &identity.key)?;
    let builder = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    match config.tls {
        TlsLibrary::Rustls => Ok(builder
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build()),
        #[cfg(feature = "native-tls")]
        TlsLibrary::OpenSsl => Ok(builder.provider(TlsProvider::NativeTls).build()),
        #[cfg(not(feature = "native-tls"))]
        TlsLibrary::OpenSsl => Err(ClientError::Certificate(CertificateError::Malformed {
            path: config.certificate.clone(),
            reason: "this build has no OpenSSL support (the api crate's native-tls feature)".into(),
        })),
    }
}

/// The key in ureq's form: PKCS#8, which every TLS library takes.
fn private_key(
    path: &Path,
    key: &rustls_pki_types::PrivateKeyDer<'_>,
) -> Result<PrivateKey<'static>, CertificateError> {
    let malformed = |reason: String| CertificateError::Malformed { path: path.to_owned(), reason };
    let pkcs8 =
        certificates::pkcs8(key).ok_or_else(|| malformed("an unsupported key type".into()))?;
    let pem = crate::certificates::pem("PRIVATE KEY", &pkcs8);
    PrivateKey::from_pem(pem.as_bytes()).map_err(|e| malformed(e.to_string()))
}

impl Instance {
    fn new(config: &ClientConfig, tls: TlsConfig, host: &str) -> Self {
        let agent_config = Agent::config_builder()
            .tls_config(tls)
            .https_only(true)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.connect_timeout))
            // Many calls at once (a crowd of prepares) should reuse connections, not handshake.
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .user_agent(concat!("flocker-rs/", env!("CARGO_PKG_VERSION")))
            .build();
        let address = host_address(host, config.port);
        let resolver = AddressResolver::new(address.clone());
        let connector = DefaultConnector::new().chain(failover::WatchSends);
        Self { agent: Agent::with_parts(agent_config, connector, resolver), address }
    }
}

/// Resolves whatever host a URL names to one configured `host:port`: the URL carries the name
/// TLS verifies (`control-service`, `node-<uuid>`), the connection goes where it is told.
///
/// ureq asks before every request, pooled connection or not, and its own resolver starts a
/// thread for each lookup that has a timeout: an IP address is used as it is, and a name's
/// addresses are kept for [`RESOLVED_FOR`].
#[derive(Debug)]
pub struct AddressResolver {
    address: String,
    resolved: Mutex<Option<(Instant, Vec<SocketAddr>)>>,
}

/// How long a name's addresses are used before it is looked up again.
pub const RESOLVED_FOR: Duration = Duration::from_secs(5);

impl AddressResolver {
    /// Connections go to `address` (`host:port`, a name or an IP address).
    pub fn new(address: String) -> Self {
        Self { address, resolved: Mutex::new(None) }
    }

    /// The addresses of a name resolved less than [`RESOLVED_FOR`] ago.
    fn kept(&self) -> Option<Vec<SocketAddr>> {
        let resolved = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, addresses) = resolved.as_ref()?;
        (at.elapsed() < RESOLVED_FOR).then(|| addresses.clone())
    }

    fn keep(&self, addresses: &ResolvedSocketAddrs) {
        let addresses = addresses.iter().copied().collect();
        *self.resolved.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), addresses));
    }
}

impl Resolver for AddressResolver {
    fn resolve(
        &self,
        _uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let known =
            self.address.parse::<SocketAddr>().ok().map(|a| vec![a]).or_else(|| self.kept());
        if let Some(addresses) = known {
            let mut resolved = self.empty();
            addresses.into_iter().for_each(|address| resolved.push(address));
            return Ok(resolved);
        }
        let target: Uri = format!("https://{}/", self.address)
            .parse()
            .map_err(|e| ureq::Error::BadUri(format!("{}: {e}", self.address)))?;
        let resolved = DefaultResolver::default().resolve(&target, config, timeout)?;
        self.keep(&resolved);
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(resolver: &AddressResolver) -> Vec<SocketAddr> {
        let timeout = NextTimeout {
            after: Duration::from_secs(5).into(),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let uri: Uri = "https://control-service/".parse().unwrap();
        let config = ureq::config::Config::default();
        resolver.resolve(&uri, &config, timeout).unwrap().iter().copied().collect()
    }

    #[test]
    fn an_ip_address_is_used_as_it_is_and_a_names_addresses_are_kept_a_while() {
        let literal = AddressResolver::new("[::1]:4523".into());
        assert_eq!(resolve(&literal), ["[::1]:4523".parse().unwrap()]);
        assert!(literal.kept().is_none(), "nothing to keep for an address");

        let name = AddressResolver::new("localhost:4523".into());
        let found = resolve(&name);
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 4523), "{found:?}");
        assert_eq!(name.kept().as_deref(), Some(found.as_slice()));
        assert_eq!(resolve(&name), found, "answered from what was kept");
        *name.resolved.lock().unwrap() = Some((Instant::now() - RESOLVED_FOR, vec![]));
        assert_eq!(name.kept(), None, "looked up again once it is older");
    }
}
