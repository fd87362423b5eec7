//! The sender's side of a push: calls to the node that is to have a dataset.

use std::io::Read;
use std::time::Duration;

use flocker_api::client::AddressResolver;
use flocker_api::{DatasetId, NodeUuid};
use serde::de::DeserializeOwned;
use ureq::Agent;
use ureq::tls::TlsConfig;
use ureq::unversioned::transport::DefaultConnector;

use super::tls::{NodeFiles, client_config};
use super::{Holding, Promote, Refusal, path};

/// Connecting to a node that is up takes milliseconds.
const CONNECT: Duration = Duration::from_secs(5);
/// A question, or a promotion (a snapshot, a quota, a rename, a sync).
const CALL: Duration = Duration::from_secs(120);
/// After the last byte of a stream, the receiver checks and syncs the copy before it answers.
const AFTER_STREAM: Duration = Duration::from_secs(300);
/// A stream's bytes must keep coming at least this fast, on average, or the push is cut (and
/// tried again later).
const SLOWEST_STREAM_BYTES_PER_SECOND: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Certificate(#[from] flocker_api::certificates::CertificateError),
    #[error("cannot reach node {node} at {address}: {source}")]
    Unreachable {
        node: NodeUuid,
        address: String,
        #[source]
        source: ureq::Error,
    },
    #[error("node {node} refused: {description} ({status})")]
    Refused { node: NodeUuid, status: u16, description: String },
    #[error("node {node} answered what is not understood: {problem}")]
    Garbled { node: NodeUuid, problem: String },
}

impl PeerError {
    /// The answer's status, if the node answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Calls other nodes as this node.
#[derive(Clone)]
pub struct PeerClient {
    tls: TlsConfig,
}

impl PeerClient {
    /// With the certificates in `directory` (`cluster.crt`, `node.crt`, `node.key`).
    pub fn new(directory: &std::path::Path) -> Result<Self, PeerError> {
        Ok(Self { tls: client_config(&NodeFiles { directory })? })
    }

    /// What `node` holds of `dataset`, and whether it would take a push from us.
    pub fn holding(
        &self,
        node: NodeUuid,
        address: &str,
        dataset: &DatasetId,
    ) -> Result<Holding, PeerError> {
        let call = Call::new(self, node, address, Some(CALL), None);
        call.answer(call.agent.get(call.url(&path(dataset))).call())
    }

    /// Sends `stream` (a `btrfs send` stream followed by its SHA-256) of at most about `most`
    /// bytes, which sets how long it may take.
    pub fn push(
        &self,
        node: NodeUuid,
        address: &str,
        dataset: &DatasetId,
        stream: impl Read,
        most: u64,
    ) -> Result<Holding, PeerError> {
        let seconds = (most / SLOWEST_STREAM_BYTES_PER_SECOND).max(60);
        let call = Call::new(self, node, address, None, Some(Duration::from_secs(seconds)));
        let mut stream = stream;
        let body = ureq::SendBody::from_reader(&mut stream);
        // The receiver may refuse before the first byte: it says why rather than reset the
        // connection under a stream it will not read.
        let request = call.agent.put(call.url(&path(dataset))).header("expect", "100-continue");
        call.answer(request.send(body))
    }

    /// Asks `node` to make its volume of the snapshot of `origin` it received from us.
    pub fn promote(
        &self,
        node: NodeUuid,
        address: &str,
        dataset: &DatasetId,
        promote: &Promote,
    ) -> Result<Holding, PeerError> {
        let call = Call::new(self, node, address, Some(CALL), None);
        let url = call.url(&format!("{}/promote", path(dataset)));
        call.answer(call.agent.post(url).send_json(promote))
    }
}

/// One call to one node.
struct Call {
    agent: Agent,
    node: NodeUuid,
    address: String,
}

impl Call {
    fn new(
        client: &PeerClient,
        node: NodeUuid,
        address: &str,
        whole: Option<Duration>,
        body: Option<Duration>,
    ) -> Self {
        let config = Agent::config_builder()
            .tls_config(client.tls.clone())
            .https_only(true)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(whole)
            .timeout_connect(Some(CONNECT))
            .timeout_send_body(body)
            .timeout_recv_response(Some(AFTER_STREAM))
            .timeout_recv_body(Some(CALL))
            .user_agent(concat!("flocker-dataset-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        let resolver = AddressResolver::new(address.to_owned());
        let agent = Agent::with_parts(config, DefaultConnector::new(), resolver);
        Self { agent, node, address: address.to_owned() }
    }

    /// The URL names the node as its certificate does: TLS verifies that name, whatever address
    /// the connection goes to.
    fn url(&self, path: &str) -> String {
        format!("https://node-{}{path}", self.node)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, PeerError> {
        let node = self.node;
        let mut response = response.map_err(|source| PeerError::Unreachable {
            node,
            address: self.address.clone(),
            source,
        })?;
        let status = response.status().as_u16();
        let body =
            response.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(|source| {
                PeerError::Unreachable { node, address: self.address.clone(), source }
            })?;
        if status != 200 {
            let description = serde_json::from_slice::<Refusal>(&body)
                .map(|refusal| refusal.description)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(PeerError::Refused { node, status, description });
        }
        serde_json::from_slice(&body)
            .map_err(|e| PeerError::Garbled { node, problem: e.to_string() })
    }
}
