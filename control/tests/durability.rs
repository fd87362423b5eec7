//! What the store promises: an acknowledged write survives `kill -9`, and a damaged store stops
//! the service with a message naming the file instead of being replaced by an empty one.

use std::fs::{self, OpenOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flocker_api::{AcquireLease, CreateDataset, Dataset, DatasetId, NodeUuid};
use flocker_testkit::{ClusterCertificates, ControlProcess};

fn binary() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_flocker-control").as_ref()
}

fn start(certificates: &ClusterCertificates) -> ControlProcess {
    ControlProcess::start(binary(), certificates, &certificates.root().join("data"), &[])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn create_request(name: &str) -> CreateDataset {
    CreateDataset {
        primary: NodeUuid::random(),
        dataset_id: None,
        maximum_size: Some(1 << 30),
        metadata: [("name".to_owned(), name.to_owned())].into(),
    }
}

fn sorted(mut datasets: Vec<Dataset>) -> Vec<Dataset> {
    datasets.sort_by_key(|d| d.dataset_id);
    datasets
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let certificates = ClusterCertificates::new();
    let mut control = start(&certificates);
    let client = certificates.client(control.rest, "alice");
    let mut acknowledged = Vec::new();
    for i in 0..100 {
        acknowledged.push(client.create_dataset(&create_request(&format!("d{i}")), None).unwrap());
    }
    let moved =
        client.move_dataset(&acknowledged[0].dataset_id, &NodeUuid::random(), None).unwrap();
    acknowledged[0] = moved;
    acknowledged[1] = client.delete_dataset(&acknowledged[1].dataset_id, None).unwrap();
    let lease = AcquireLease {
        dataset_id: acknowledged[2].dataset_id,
        node_uuid: NodeUuid::random(),
        expires: None,
    };
    client.acquire_lease(&lease).unwrap();
    control.kill();

    let control = start(&certificates);
    let client = certificates.client(control.rest, "alice");
    let (datasets, _) = client.list_datasets().unwrap();
    assert_eq!(sorted(datasets), sorted(acknowledged));
    let leases = client.list_leases().unwrap();
    assert_eq!(
        (leases.len(), leases[0].dataset_id, leases[0].node_uuid),
        (1, lease.dataset_id, lease.node_uuid)
    );
}

#[test]
fn writes_in_flight_when_the_service_is_killed_are_all_there_if_they_were_acknowledged() {
    let certificates = ClusterCertificates::new();
    let mut control = start(&certificates);
    let acknowledged: Arc<Mutex<Vec<DatasetId>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let client = certificates.client(control.rest, "alice");
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    match client.create_dataset(&create_request(&format!("w{writer}-{i}")), None) {
                        Ok(dataset) => acknowledged.lock().unwrap().push(dataset.dataset_id),
                        Err(_) => break, // the service is gone
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    control.kill();
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "too few writes to mean anything: {}", acknowledged.len());

    let control = start(&certificates);
    let (datasets, _) = certificates.client(control.rest, "alice").list_datasets().unwrap();
    let stored: std::collections::BTreeSet<DatasetId> =
        datasets.iter().map(|d| d.dataset_id).collect();
    let lost: Vec<_> = acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "{} acknowledged creates were lost: {lost:?}", lost.len());
    // At most one unacknowledged write per writer can have landed.
    assert!(stored.len() <= acknowledged.len() + 4);
}

fn journal(certificates: &ClusterCertificates) -> std::path::PathBuf {
    certificates.root().join("data").join("configuration.journal")
}

fn filled_store() -> ClusterCertificates {
    let certificates = ClusterCertificates::new();
    let mut control = start(&certificates);
    let client = certificates.client(control.rest, "alice");
    for i in 0..5 {
        client.create_dataset(&create_request(&format!("d{i}")), None).unwrap();
    }
    control.terminate();
    certificates
}

fn assert_refuses_to_start(certificates: &ClusterCertificates, file: &str, words: &str) {
    let (status, log) =
        ControlProcess::run_to_exit(binary(), certificates, &certificates.root().join("data"));
    assert!(!status.success(), "the service started on a damaged store:\n{log}");
    assert!(log.contains(file), "the message does not name {file}:\n{log}");
    assert!(log.contains(words), "{log}");
}

#[test]
fn a_garbled_journal_stops_the_service_with_a_message_naming_the_file() {
    let certificates = filled_store();
    let path = journal(&certificates);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    assert_refuses_to_start(&certificates, &path.display().to_string(), "damaged");
    assert_eq!(fs::read(&path).unwrap(), bytes, "the damaged file was left as it was");
}

#[test]
fn a_journal_cut_in_the_middle_of_a_record_that_is_not_the_last_stops_the_service() {
    let certificates = filled_store();
    let path = journal(&certificates);
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = format!("{}\n{}\n{}\n", lines[0], lines[1], &lines[2][..lines[2].len() / 2])
        + &lines[3..].join("\n")
        + "\n";
    fs::write(&path, cut).unwrap();
    assert_refuses_to_start(&certificates, &path.display().to_string(), "line 3");
}

#[test]
fn a_truncated_store_stops_the_service_with_a_message_naming_the_file() {
    let certificates = filled_store();
    let path = journal(&certificates);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(10).unwrap(); // into the header
    assert_refuses_to_start(&certificates, &path.display().to_string(), "header");
}

#[test]
fn an_unreadable_store_stops_the_service() {
    let certificates = filled_store();
    let path = journal(&certificates);
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap(); // reading it fails
    assert_refuses_to_start(&certificates, &path.display().to_string(), "cannot read");
}

#[test]
fn a_second_service_on_the_same_data_path_is_refused() {
    let certificates = ClusterCertificates::new();
    let _first = start(&certificates);
    assert_refuses_to_start(&certificates, "control.lock", "already running");
}

#[test]
fn a_missing_certificate_stops_the_service_with_a_message_naming_it() {
    let certificates = ClusterCertificates::new();
    let key = certificates.control_directory().join("control-service.key");
    fs::remove_file(&key).unwrap();
    assert_refuses_to_start(&certificates, &key.display().to_string(), "cannot read");
}
