//! What can go wrong, said so that whoever reads the agent's log knows what to do.

use std::path::PathBuf;
use std::time::Duration;

use flocker_api::{ClientError, DatasetId, NodeUuid};

use crate::checkpoint::CheckpointError;
use crate::placement::PlacementError;
use crate::request::{FlockerId, RequestError};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Parameters(#[from] crate::params::ParameterError),
    #[error("cannot set up the client of the control service")]
    Client(#[source] ClientError),
    #[error("cannot use the state directory")]
    StateDirectory(#[source] CheckpointError),
    #[error("cannot tell this node's UUID from {}", path.display())]
    NodeCertificate {
        path: PathBuf,
        #[source]
        source: flocker_api::certificates::CertificateError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum IsolatorError {
    #[error("the task's request is invalid")]
    Request(#[from] RequestError),
    #[error("the module's parameters do not allow the task's request")]
    NotAllowed(#[from] crate::policy::Refusal),
    #[error("the container id is invalid")]
    ContainerId(#[from] crate::container::InvalidContainerId),
    #[error("the request is not valid JSON: {0}")]
    Json(String),
    #[error("cannot keep the isolator's checkpoint")]
    Checkpoint(#[from] CheckpointError),
    #[error("volume '{id}': cannot {doing} on the control service")]
    Control {
        id: FlockerId,
        doing: &'static str,
        #[source]
        source: Box<ClientError>,
    },
    #[error("cannot tell this node's UUID: {0}")]
    Identity(String),
    #[error(
        "volume '{id}' names several datasets ({}); delete the extras with `flockerctl destroy`",
        datasets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous { id: FlockerId, datasets: Vec<DatasetId> },
    #[error(
        "volume '{id}' (dataset {dataset}) is in use on node {node}{}; stop that task, or run \
         `flockerctl leases release --dataset {dataset}` if that node is gone",
        host.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    LeasedElsewhere { id: FlockerId, dataset: DatasetId, node: NodeUuid, host: Option<String> },
    #[error("volume '{id}' (dataset {dataset}) was not mounted here within {} s; last seen: {last_seen}", waited.as_secs())]
    NotMounted { id: FlockerId, dataset: DatasetId, waited: Duration, last_seen: String },
    #[error(
        "volume '{id}' (dataset {dataset}) will not be mounted here: this node's agent says {problem}"
    )]
    RefusedByAgent { id: FlockerId, dataset: DatasetId, problem: String },
    #[error("volume '{id}' cannot be placed for the task")]
    Placement {
        id: FlockerId,
        #[source]
        source: PlacementError,
    },
}

impl IsolatorError {
    /// For `map_err`: a failed call to the control service while doing something for a volume.
    pub fn control(id: &FlockerId, doing: &'static str) -> impl FnOnce(ClientError) -> Self {
        let id = id.clone();
        move |source| Self::Control { id, doing, source: Box::new(source) }
    }
}
