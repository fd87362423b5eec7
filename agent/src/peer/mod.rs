//! Agents talking to agents: the push of a btrfs volume from the node that holds it to the node
//! that is to have it, over HTTPS with mutual TLS and the nodes' own certificates. Each side
//! verifies the other against `cluster.crt`; the sender dials the address the control service
//! gave it and verifies the receiver as `node-<uuid>` of the node it means to reach (the
//! certificate's DNS name), and the receiver knows the sender from its certificate's CN.
//!
//! | call | what |
//! |---|---|
//! | `GET /v1/transfers/<dataset>` | [`Holding`]: what the receiver holds of the dataset |
//! | `PUT /v1/transfers/<dataset>` | a `btrfs send` stream and then its SHA-256 (32 bytes) |
//! | `POST /v1/transfers/<dataset>/promote` | [`Promote`]: make the volume of a snapshot |
//!
//! A receiver takes a stream or a promotion only from a node the control service says holds
//! the dataset, and only while the dataset's primary is the receiver (`arriving`); it says
//! what it holds to any node of the cluster. Errors are `{"description": "…"}`.

pub mod client;
pub mod server;
mod tls;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The port an agent takes pushes on when `agent.yml` names none.
pub const DEFAULT_TRANSFER_PORT: u16 = 4525;

/// Where a dataset's calls are.
pub fn path(dataset: &flocker_api::DatasetId) -> String {
    format!("/v1/transfers/{dataset}")
}

/// What a node holds of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Its complete snapshots of the dataset, taken or received.
    pub snapshots: Vec<HeldSnapshot>,
    /// Its volume of the dataset, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<HeldVolume>,
    /// Why it would refuse a push from the caller now; none if it would take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuses: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSnapshot {
    /// Its name: a generation (ten digits).
    pub name: u32,
    /// Its identity on every node (see `transfer::plan`).
    pub origin: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldVolume {
    /// The origin of the snapshot it was promoted from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<Uuid>,
}

/// `POST …/promote`: make the dataset's volume of the received snapshot of this origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promote {
    pub origin: Uuid,
}

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub description: String,
}
