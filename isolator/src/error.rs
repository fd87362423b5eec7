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

/// Every name [`IsolatorError::cause`] gives, and [`OTHER_CAUSE`] last: the fixed set the
/// shim registers a counter for up front, so that each shows 0 until it happens.
pub const CAUSES: &[&str] = &[
    "invalid_request",
    "not_allowed",
    "checkpoint",
    "control_service",
    "node_identity",
    "ambiguous",
    "leased_elsewhere",
    "not_mounted",
    "refused_by_agent",
    "placement",
    OTHER_CAUSE,
];

/// The cause of a failure that is not an [`IsolatorError`]: a call the C ABI could not read,
/// or a bug (a panic, abandoned work).
pub const OTHER_CAUSE: &str = "other";

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
    /// A stable short name for what went wrong, one of [`CAUSES`]: what the Mesos shim counts
    /// failures by (`flocker/prepare_failures/<cause>`). A new variant must pick one here; a
    /// new name must also go in [`CAUSES`], and is a change of the metrics users see.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Request(_) | Self::ContainerId(_) | Self::Json(_) => "invalid_request",
            Self::NotAllowed(_) => "not_allowed",
            Self::Checkpoint(_) => "checkpoint",
            Self::Control { .. } => "control_service",
            Self::Identity(_) => "node_identity",
            Self::Ambiguous { .. } => "ambiguous",
            Self::LeasedElsewhere { .. } => "leased_elsewhere",
            Self::NotMounted { .. } => "not_mounted",
            Self::RefusedByAgent { .. } => "refused_by_agent",
            Self::Placement { .. } => "placement",
        }
    }

    /// For `map_err`: a failed call to the control service while doing something for a volume.
    pub fn control(id: &FlockerId, doing: &'static str) -> impl FnOnce(ClientError) -> Self {
        let id = id.clone();
        move |source| Self::Control { id, doing, source: Box::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn id() -> FlockerId {
        FlockerId::new("orders-db").unwrap()
    }

    fn dataset() -> DatasetId {
        "0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f".parse().unwrap()
    }

    /// One error of each variant, with the cause it must keep: these names are metric names.
    fn one_of_each() -> Vec<(IsolatorError, &'static str)> {
        let io = || std::io::Error::other("disk gone");
        let api = ClientError::Api {
            method: "GET".into(),
            path: "/v1/configuration/datasets".into(),
            status: 500,
            description: "down".into(),
        };
        vec![
            (
                RequestError::HalfPair { present: "a".into(), missing: "b".into() }.into(),
                "invalid_request",
            ),
            (
                crate::policy::Refusal {
                    variable: "v".into(),
                    value: "x".into(),
                    reason: "r".into(),
                }
                .into(),
                "not_allowed",
            ),
            (crate::container::InvalidContainerId("bad".into()).into(), "invalid_request"),
            (IsolatorError::Json("not json".into()), "invalid_request"),
            (CheckpointError::new("append to", Path::new("/j"), io()).into(), "checkpoint"),
            (IsolatorError::control(&id(), "list datasets")(api), "control_service"),
            (IsolatorError::Identity("no node".into()), "node_identity"),
            (IsolatorError::Ambiguous { id: id(), datasets: vec![dataset()] }, "ambiguous"),
            (
                IsolatorError::LeasedElsewhere {
                    id: id(),
                    dataset: dataset(),
                    node: "4ad2c2a4-4a3f-4b5c-8d1e-2f3a4b5c6d7e".parse().unwrap(),
                    host: None,
                },
                "leased_elsewhere",
            ),
            (
                IsolatorError::NotMounted {
                    id: id(),
                    dataset: dataset(),
                    waited: Duration::from_secs(60),
                    last_seen: "nothing".into(),
                },
                "not_mounted",
            ),
            (
                IsolatorError::RefusedByAgent {
                    id: id(),
                    dataset: dataset(),
                    problem: "full".into(),
                },
                "refused_by_agent",
            ),
            (
                IsolatorError::Placement {
                    id: id(),
                    source: PlacementError::RootMissing { root: "/srv".into() },
                },
                "placement",
            ),
        ]
    }

    #[test]
    fn each_error_has_its_stable_cause_and_every_cause_is_listed() {
        for (error, cause) in one_of_each() {
            assert_eq!(error.cause(), cause, "{error}");
            assert!(CAUSES.contains(&cause), "{cause} is not in CAUSES");
        }
    }

    #[test]
    fn causes_are_distinct_short_snake_case_names_ending_with_other() {
        let distinct: std::collections::BTreeSet<_> = CAUSES.iter().collect();
        assert_eq!(distinct.len(), CAUSES.len(), "no name twice");
        for cause in CAUSES {
            assert!(!cause.is_empty() && cause.len() <= 20, "{cause}");
            assert!(cause.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{cause}");
        }
        assert_eq!(CAUSES.last(), Some(&OTHER_CAUSE));
        let given: std::collections::BTreeSet<_> =
            one_of_each().iter().map(|(e, _)| e.cause()).collect();
        assert_eq!(given.len() + 1, CAUSES.len(), "every cause but 'other' is some error's");
    }
}
