//! A Flocker 1.x `current_configuration.json`, shared by `tests/flocker_migration.rs` and the
//! `migrate` test of `tests/zookeeper.rs`.

use serde_json::{Value, json};

pub const NODE: &str = "5d6c1a0e-3b1f-4c9e-8e2a-1f0b9c8d7e6a";
pub const DATASET: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d";

fn pmap(pairs: Vec<(Value, Value)>) -> Value {
    json!({"$__class__$": "PMap", "values": pairs.into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()})
}

fn uuid(hex: &str) -> Value {
    json!({"$__class__$": "UUID", "hex": hex})
}

/// `current_configuration.json` as Flocker 1.15 wrote it: one node, one dataset, a lease.
pub fn flocker_configuration() -> Value {
    let dataset = json!({"$__class__$": "Dataset", "dataset_id": DATASET, "deleted": false,
        "maximum_size": 1073741824, "metadata": pmap(vec![(json!("name"), json!("webapp-data"))])});
    let node = json!({"$__class__$": "Node", "uuid": uuid(NODE), "applications": pmap(vec![]),
        "manifestations": pmap(vec![(json!(DATASET), json!({"$__class__$": "Manifestation", "primary": true, "dataset": dataset}))])});
    json!({"$__class__$": "Configuration", "version": 6, "deployment": {"$__class__$": "Deployment",
        "nodes": pmap(vec![(uuid(NODE), node)]),
        "leases": pmap(vec![(uuid(DATASET), json!({"$__class__$": "Lease", "dataset_id": uuid(DATASET), "node_id": uuid(NODE), "expiration": null}))]),
        "persistent_state": {"$__class__$": "PersistentState", "blockdevice_ownership": pmap(vec![(uuid(DATASET), json!(format!("block-{DATASET}")))])}}})
}
