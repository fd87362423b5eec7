//! Reading the configuration a Flocker 1.x control service left in
//! `<data-path>/current_configuration.json`, so that replacing Flocker's control service with
//! ours keeps every dataset, lease and block-device record.
//!
//! Flocker wrote its pyrsistent objects as JSON with a `$__class__$` marker on each; maps are
//! `{"$__class__$": "PMap", "values": [[key, value], …]}`, UUIDs `{"…": "UUID", "hex": "…"}`,
//! times `{"…": "datetime", "seconds": <Unix seconds>}`. Versions 5 and 6 (Flocker 1.5 on) share
//! the parts we read. Containers ("applications") are not imported: this service has no
//! container API.

use std::path::Path;

use flocker_api::{Dataset, DatasetId, NodeUuid};
use serde_json::{Map, Value};

use crate::model::{Configuration, StoredLease};

/// The file Flocker's control service kept under its `--data-path`.
pub const FLOCKER_CONFIGURATION: &str = "current_configuration.json";

/// What was wrong, with where in the document.
type Problem = String;

/// Reads Flocker's configuration file into ours.
pub fn import(path: &Path) -> Result<Configuration, Problem> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let document: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("it is not JSON: {e}"))?;
    let root = object(&document, "Configuration", "the document")?;
    match root.get("version").and_then(Value::as_u64) {
        Some(5 | 6) => {}
        other => {
            return Err(format!(
                "it is configuration version {}, and only versions 5 and 6 are read: start \
                 Flocker 1.15's flocker-control on it once to upgrade it",
                other.map_or("(none)".to_owned(), |v| v.to_string())
            ));
        }
    }
    let deployment = object(field(root, "deployment")?, "Deployment", "deployment")?;
    let mut configuration = Configuration::default();
    for (node, node_value) in pmap(field(deployment, "nodes")?, "nodes")? {
        let node_uuid = NodeUuid::new(uuid(node, "a node's UUID")?);
        let node_object = object(node_value, "Node", "a node")?;
        for (_, manifestation) in pmap(field(node_object, "manifestations")?, "manifestations")? {
            if let Some(dataset) = primary_dataset(manifestation, node_uuid)? {
                configuration.datasets.insert(dataset.dataset_id, dataset);
            }
        }
    }
    for (id, lease) in pmap(field(deployment, "leases")?, "leases")? {
        let lease = object(lease, "Lease", "a lease")?;
        let expiration = match field(lease, "expiration")? {
            Value::Null => None,
            time => Some(datetime(time)?),
        };
        let node_uuid = NodeUuid::new(uuid(field(lease, "node_id")?, "a lease's node_id")?);
        let dataset_id = DatasetId::new(uuid(id, "a lease's dataset id")?);
        configuration.leases.insert(dataset_id, StoredLease { node_uuid, expiration });
    }
    if let Some(state) = deployment.get("persistent_state") {
        let state = object(state, "PersistentState", "persistent_state")?;
        for (id, device) in pmap(field(state, "blockdevice_ownership")?, "blockdevice_ownership")? {
            let device = device.as_str().ok_or("a block device id is not a string")?;
            let dataset_id = DatasetId::new(uuid(id, "a block device's dataset id")?);
            configuration.blockdevice_ownership.insert(dataset_id, device.to_owned());
        }
    }
    Ok(configuration)
}

/// The dataset of a primary manifestation; Flocker's API never made replicas, so any are skipped.
fn primary_dataset(manifestation: &Value, primary: NodeUuid) -> Result<Option<Dataset>, Problem> {
    let manifestation = object(manifestation, "Manifestation", "a manifestation")?;
    if field(manifestation, "primary")?.as_bool() != Some(true) {
        return Ok(None);
    }
    let dataset = object(field(manifestation, "dataset")?, "Dataset", "a dataset")?;
    let id = field(dataset, "dataset_id")?.as_str().ok_or("a dataset_id is not a string")?;
    let dataset_id: DatasetId = id.parse().map_err(|e| format!("{e}"))?;
    let metadata = pmap(field(dataset, "metadata")?, "metadata")?
        .map(|(key, value)| match (key.as_str(), value.as_str()) {
            (Some(key), Some(value)) => Ok((key.to_owned(), value.to_owned())),
            _ => Err(format!("dataset {dataset_id} has metadata that is not text")),
        })
        .collect::<Result<_, _>>()?;
    let maximum_size = match field(dataset, "maximum_size")? {
        Value::Null => None,
        size => Some(
            size.as_u64()
                .ok_or_else(|| format!("dataset {dataset_id}: bad maximum_size {size}"))?,
        ),
    };
    let deleted = field(dataset, "deleted")?.as_bool().unwrap_or(false);
    Ok(Some(Dataset { dataset_id, primary, metadata, deleted, maximum_size }))
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a Value, Problem> {
    object.get(name).ok_or_else(|| format!("'{name}' is missing"))
}

/// An object carrying `"$__class__$": class`.
fn object<'a>(
    value: &'a Value,
    class: &str,
    what: &str,
) -> Result<&'a Map<String, Value>, Problem> {
    match value {
        Value::Object(map) if map.get("$__class__$").and_then(Value::as_str) == Some(class) => {
            Ok(map)
        }
        _ => Err(format!("{what} is not a {class}")),
    }
}

/// The key/value pairs of a PMap.
fn pmap<'a>(
    value: &'a Value,
    what: &str,
) -> Result<impl Iterator<Item = (&'a Value, &'a Value)>, Problem> {
    let values = object(value, "PMap", what)?.get("values").and_then(Value::as_array);
    let pairs = values.ok_or_else(|| format!("{what} has no values"))?;
    if let Some(bad) = pairs.iter().find(|pair| pair.as_array().is_none_or(|p| p.len() != 2)) {
        return Err(format!("{what} holds {bad}, not a [key, value] pair"));
    }
    Ok(pairs.iter().filter_map(|pair| Some((pair.get(0)?, pair.get(1)?))))
}

fn uuid(value: &Value, what: &str) -> Result<uuid::Uuid, Problem> {
    let hex = object(value, "UUID", what)?.get("hex").and_then(Value::as_str);
    hex.and_then(|hex| uuid::Uuid::try_parse(hex).ok())
        .ok_or_else(|| format!("{what} is not a UUID"))
}

fn datetime(value: &Value) -> Result<f64, Problem> {
    let seconds =
        object(value, "datetime", "a lease's expiration")?.get("seconds").and_then(Value::as_f64);
    seconds.ok_or_else(|| "a lease's expiration has no seconds".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NODE: &str = "5d6c1a0e-3b1f-4c9e-8e2a-1f0b9c8d7e6a";
    const LIVE: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d";
    const GONE: &str = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e";

    fn uuid_json(hex: &str) -> Value {
        json!({"$__class__$": "UUID", "hex": hex})
    }

    fn pmap_json(pairs: Vec<(Value, Value)>) -> Value {
        json!({"$__class__$": "PMap", "values": pairs.into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()})
    }

    fn manifestation(id: &str, deleted: bool, size: Value, primary: bool) -> Value {
        json!({"$__class__$": "Manifestation", "primary": primary, "dataset": {
            "$__class__$": "Dataset", "dataset_id": id, "deleted": deleted, "maximum_size": size,
            "metadata": pmap_json(vec![(json!("name"), json!("orders"))])}})
    }

    /// A version 6 document in the shape Flocker 1.15 wrote.
    fn document(version: u64) -> Value {
        json!({"$__class__$": "Configuration", "version": version, "deployment": {
            "$__class__$": "Deployment",
            "nodes": pmap_json(vec![(uuid_json(NODE), json!({
                "$__class__$": "Node", "uuid": uuid_json(NODE), "applications": pmap_json(vec![]),
                "manifestations": pmap_json(vec![
                    (json!(LIVE), manifestation(LIVE, false, json!(1073741824), true)),
                    (json!(GONE), manifestation(GONE, true, Value::Null, true)),
                ])}))]),
            "leases": pmap_json(vec![(uuid_json(LIVE), json!({"$__class__$": "Lease",
                "dataset_id": uuid_json(LIVE), "node_id": uuid_json(NODE),
                "expiration": {"$__class__$": "datetime", "seconds": 1_900_000_000}}))]),
            "persistent_state": {"$__class__$": "PersistentState",
                "blockdevice_ownership": pmap_json(vec![(uuid_json(LIVE), json!(format!("block-{LIVE}")))])}}})
    }

    fn import_json(value: &Value) -> Result<Configuration, Problem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FLOCKER_CONFIGURATION);
        std::fs::write(&path, value.to_string()).unwrap();
        import(&path)
    }

    #[test]
    fn datasets_tombstones_leases_and_block_devices_come_across() {
        let configuration = import_json(&document(6)).unwrap();
        let live: DatasetId = LIVE.parse().unwrap();
        let gone: DatasetId = GONE.parse().unwrap();
        let node: NodeUuid = NODE.parse().unwrap();
        assert_eq!(configuration.datasets[&live].primary, node);
        assert_eq!(configuration.datasets[&live].maximum_size, Some(1073741824));
        assert_eq!(configuration.datasets[&live].metadata["name"], "orders");
        assert!(configuration.datasets[&gone].deleted);
        assert_eq!(
            configuration.leases[&live],
            StoredLease { node_uuid: node, expiration: Some(1.9e9) }
        );
        assert_eq!(configuration.blockdevice_ownership[&live], format!("block-{LIVE}"));
    }

    #[test]
    fn a_replica_manifestation_is_skipped() {
        let mut value = document(6);
        let manifestations =
            &mut value["deployment"]["nodes"]["values"][0][1]["manifestations"]["values"];
        manifestations[1][1]["primary"] = json!(false);
        assert_eq!(import_json(&value).unwrap().datasets.len(), 1);
    }

    #[test]
    fn an_old_version_or_a_damaged_document_is_refused_with_the_reason() {
        assert!(import_json(&document(4)).unwrap_err().contains("version 4"));
        let mut value = document(6);
        value["deployment"]["leases"]["values"][0][1]["node_id"] = json!("not a uuid object");
        assert!(import_json(&value).unwrap_err().contains("node_id"));
        assert!(import_json(&json!([])).is_err());
    }
}
