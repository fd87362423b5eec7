//! The JSON bodies of the Flocker v1 REST API, as the server sends them and clients read them.
//!
//! Decoding is lenient (unknown keys are ignored) so that a client keeps working against a newer
//! server; the strict rules for what a server accepts live in [`crate::validate`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{DatasetId, NodeUuid};

/// A dataset's metadata: free-form string pairs the API stores and never interprets.
pub type Metadata = BTreeMap<String, String>;

/// A dataset in the desired configuration (`/v1/configuration/datasets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub dataset_id: DatasetId,
    /// The node that should hold the dataset.
    pub primary: NodeUuid,
    #[serde(default)]
    pub metadata: Metadata,
    /// A tombstone: the dataset is gone, and its id can never be used again.
    #[serde(default)]
    pub deleted: bool,
    /// Bytes; left out of the JSON when there is no size (agents then use
    /// [`crate::DEFAULT_MAXIMUM_SIZE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// The metadata keys a volume's name may be under: Flocker's Docker plugin (and Kubernetes)
/// used `name`, the original Mesos module `FLOCKER_ID`. Datasets we create get both.
pub const NAME_KEYS: [&str; 2] = ["name", "FLOCKER_ID"];

impl Dataset {
    /// Whether `name` is this dataset's name under one of [`NAME_KEYS`].
    pub fn is_named(&self, name: &str) -> bool {
        NAME_KEYS.iter().any(|key| self.metadata.get(*key).is_some_and(|value| value == name))
    }

    /// The dataset's name: the first of [`NAME_KEYS`] it has.
    pub fn name(&self) -> Option<&str> {
        NAME_KEYS.iter().find_map(|key| self.metadata.get(*key)).map(String::as_str)
    }
}

/// A dataset as the agents report it (`/v1/state/datasets`).
///
/// A *manifest* dataset is mounted on `primary` at `path`; a *non-manifest* one exists but is
/// mounted nowhere, and has neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetState {
    pub dataset_id: DatasetId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<NodeUuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// `GET /v1/state/problems`: an extension of ours, which Flocker 1.x answers with 404.
pub const DATASET_PROBLEMS_PATH: &str = "/v1/state/problems";
/// `GET /v1/state/transfers`: the pushes under way (an extension).
pub const DATASET_TRANSFERS_PATH: &str = "/v1/state/transfers";

/// Why the agent of a dataset's primary node leaves it as it is (it will not make, format or
/// mount its volume), as that agent last reported it (`/v1/state/problems`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetProblem {
    pub dataset_id: DatasetId,
    /// The node that reported it: the dataset's primary.
    pub node_uuid: NodeUuid,
    /// In the agent's words, for people, on one line.
    pub problem: String,
}

/// A push of a dataset's volume between two nodes' own disks under way (`GET
/// /v1/state/transfers`, an extension: Flocker 1.x answers 404).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetTransfer {
    pub dataset_id: DatasetId,
    /// The node pushing: it reported the transfer.
    pub from: NodeUuid,
    pub to: NodeUuid,
    pub phase: crate::agent_protocol::TransferPhase,
    pub sent: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A node whose agent reports to the control service (`/v1/state/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub uuid: NodeUuid,
    /// The address the agent connects from.
    pub host: String,
}

/// The answer of `/v1/state/nodes/by_era/<era>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeByEra {
    pub uuid: NodeUuid,
}

/// A lease: while it exists, the agent of `node_uuid` will not unmount the dataset there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub dataset_id: DatasetId,
    pub node_uuid: NodeUuid,
    /// Seconds left, measured by the server when it answered; `None` never expires.
    pub expires: Option<f64>,
}

/// `/v1/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub flocker: String,
}

/// The body of every error the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub description: String,
    /// For schema failures: what was wrong, one item each. Meant for people, not programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

/// The body of `POST /v1/configuration/datasets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateDataset {
    pub primary: NodeUuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<DatasetId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// The body of `POST /v1/configuration/datasets/<dataset_id>`: a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateDataset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<NodeUuid>,
}

/// The body of `POST /v1/configuration/leases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquireLease {
    pub dataset_id: DatasetId,
    pub node_uuid: NodeUuid,
    /// Seconds from now; `None` (sent as `null`, never left out) for a lease that never expires.
    pub expires: Option<f64>,
}

/// The opaque `X-Configuration-Tag`: it changes whenever the stored configuration changes, and
/// a write sent with `X-If-Configuration-Matches: <tag>` only succeeds if it has not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigurationTag(pub String);

impl fmt::Display for ConfigurationTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_dataset_without_a_size_has_no_maximum_size_key_but_always_metadata_and_deleted() {
        let dataset = Dataset {
            dataset_id: "0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f".parse().unwrap(),
            primary: "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b".parse().unwrap(),
            metadata: Metadata::new(),
            deleted: false,
            maximum_size: None,
        };
        assert_eq!(
            serde_json::to_value(&dataset).unwrap(),
            json!({
                "dataset_id": "0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f",
                "primary": "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
                "metadata": {},
                "deleted": false
            })
        );
    }

    #[test]
    fn a_lease_that_never_expires_says_null() {
        let lease = Lease {
            dataset_id: "0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f".parse().unwrap(),
            node_uuid: "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b".parse().unwrap(),
            expires: None,
        };
        assert_eq!(serde_json::to_value(&lease).unwrap()["expires"], json!(null));
    }
}
