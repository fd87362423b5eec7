//! The Flocker v1 REST API, written once for every part of the project: the wire types
//! ([`types`]), the identifiers ([`ids`]), the rules a server enforces ([`validate`]), the
//! certificate files ([`certificates`]) and a blocking mutual-TLS client ([`client`]).
//!
//! The contract is Flocker 1.15's, down to status codes and quirks; where we differ (a `deleted`
//! key on create is a 400, not a 500) the item says so.

pub mod agent_protocol;
pub mod certificates;
pub mod client;
pub mod ids;
pub mod types;
pub mod units;
pub mod validate;

pub use client::{Client, ClientConfig, ClientError, LeaseOutcome, RawResponse, TransportProblem};
pub use ids::{DatasetId, Era, NodeUuid};
pub use types::{
    AcquireLease, ConfigurationTag, CreateDataset, DATASET_PROBLEMS_PATH, Dataset, DatasetProblem,
    DatasetState, ErrorBody, Lease, Metadata, NAME_KEYS, Node, NodeByEra, UpdateDataset, Version,
};
pub use validate::DEFAULT_MAXIMUM_SIZE;
