//! Replacing Flocker's control service in place: ours starts on Flocker's `--data-path` and
//! serves the datasets, leases and block-device records that Flocker stored there.

use flocker_testkit::{ClusterCertificates, ControlProcess};
use serde_json::{Value, json};

const NODE: &str = "5d6c1a0e-3b1f-4c9e-8e2a-1f0b9c8d7e6a";
const DATASET: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d";

fn pmap(pairs: Vec<(Value, Value)>) -> Value {
    json!({"$__class__$": "PMap", "values": pairs.into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()})
}

fn uuid(hex: &str) -> Value {
    json!({"$__class__$": "UUID", "hex": hex})
}

/// `current_configuration.json` as Flocker 1.15 wrote it: one node, one dataset, a lease.
fn flocker_configuration() -> Value {
    let dataset = json!({"$__class__$": "Dataset", "dataset_id": DATASET, "deleted": false,
        "maximum_size": 1073741824, "metadata": pmap(vec![(json!("name"), json!("webapp-data"))])});
    let node = json!({"$__class__$": "Node", "uuid": uuid(NODE), "applications": pmap(vec![]),
        "manifestations": pmap(vec![(json!(DATASET), json!({"$__class__$": "Manifestation", "primary": true, "dataset": dataset}))])});
    json!({"$__class__$": "Configuration", "version": 6, "deployment": {"$__class__$": "Deployment",
        "nodes": pmap(vec![(uuid(NODE), node)]),
        "leases": pmap(vec![(uuid(DATASET), json!({"$__class__$": "Lease", "dataset_id": uuid(DATASET), "node_id": uuid(NODE), "expiration": null}))]),
        "persistent_state": {"$__class__$": "PersistentState", "blockdevice_ownership": pmap(vec![(uuid(DATASET), json!(format!("block-{DATASET}")))])}}})
}

#[test]
fn a_flocker_data_path_is_imported_once_and_left_as_it_was() {
    let certificates = ClusterCertificates::new();
    let data = certificates.root().join("data");
    std::fs::create_dir(&data).unwrap();
    let original = flocker_configuration().to_string();
    std::fs::write(data.join("current_configuration.json"), &original).unwrap();
    let binary = env!("CARGO_BIN_EXE_flocker-control").as_ref();

    let mut control = ControlProcess::start(binary, &certificates, &data, &[]).unwrap();
    let client = certificates.client(control.rest, "alice");
    let (datasets, _) = client.list_datasets().unwrap();
    assert_eq!(datasets.len(), 1);
    assert_eq!(
        (datasets[0].dataset_id.to_string(), datasets[0].primary.to_string()),
        (DATASET.to_owned(), NODE.to_owned())
    );
    assert_eq!(datasets[0].metadata["name"], "webapp-data");
    let leases = client.list_leases().unwrap();
    assert_eq!((leases[0].node_uuid.to_string(), leases[0].expires), (NODE.to_owned(), None));
    client.delete_dataset(&datasets[0].dataset_id, None).unwrap();
    control.terminate();

    // Our store now rules: the delete stays, Flocker's file is not read again nor changed.
    let control = ControlProcess::start(binary, &certificates, &data, &[]).unwrap();
    let (datasets, _) = certificates.client(control.rest, "alice").list_datasets().unwrap();
    assert!(datasets[0].deleted);
    assert_eq!(std::fs::read_to_string(data.join("current_configuration.json")).unwrap(), original);
}

#[test]
fn a_flocker_file_that_cannot_be_read_stops_the_service_instead_of_starting_empty() {
    let certificates = ClusterCertificates::new();
    let data = certificates.root().join("data");
    std::fs::create_dir(&data).unwrap();
    let path = data.join("current_configuration.json");
    std::fs::write(&path, "{\"version\": 3}").unwrap();
    let binary = env!("CARGO_BIN_EXE_flocker-control").as_ref();
    let (status, log) = ControlProcess::run_to_exit(binary, &certificates, &data);
    assert!(!status.success());
    assert!(log.contains(&path.display().to_string()), "{log}");
}
