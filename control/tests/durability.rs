//! What the store promises: an acknowledged write survives `kill -9`; a damaged store, or one
//! that lost acknowledged changes, stops the service with a message naming the file instead of
//! starting with less (unless the operator accepts the loss with `--accept-data-loss`).

use std::fs::{self, File, OpenOptions};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Runs the service on the test's data path until it exits, or for 20 s at most (then it is
/// killed: it started): its exit status if it exited, and its log.
fn run_to_exit(certificates: &ClusterCertificates) -> (Option<ExitStatus>, String) {
    let log_path = certificates.root().join("run-to-exit.log");
    let mut child = Command::new(binary())
        .arg("--certificates-directory")
        .arg(certificates.control_directory())
        .arg("--data-path")
        .arg(certificates.root().join("data"))
        .args(["--port", "127.0.0.1:0", "--agent-port", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).unwrap())
        .spawn()
        .expect("run flocker-control");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    (status, fs::read_to_string(&log_path).unwrap_or_default())
}

fn assert_refuses_to_start(certificates: &ClusterCertificates, file: &str, words: &str) {
    let (status, log) = run_to_exit(certificates);
    assert!(
        status.is_some_and(|status| !status.success()),
        "the service started on a damaged store:\n{log}"
    );
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

// Never silently forget (issue 15): a store that lost changes it had acknowledged refuses to
// start, naming the file, unless the operator accepts the loss with --accept-data-loss.

fn start_accepting_the_loss(certificates: &ClusterCertificates) -> ControlProcess {
    let data = certificates.root().join("data");
    ControlProcess::start(binary(), certificates, &data, &["--accept-data-loss"])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The journal's lines, each with its newline.
fn journal_lines(certificates: &ClusterCertificates) -> Vec<Vec<u8>> {
    let bytes = fs::read(journal(certificates)).unwrap();
    bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

#[test]
fn a_deleted_journal_stops_the_service_and_the_flag_starts_it_without_what_was_lost() {
    let certificates = filled_store();
    let path = journal(&certificates);
    fs::remove_file(&path).unwrap();
    assert_refuses_to_start(&certificates, &path.display().to_string(), "is missing");
    assert!(!path.exists(), "nothing was made while refusing");

    let mut control = start_accepting_the_loss(&certificates);
    let (datasets, _) = certificates.client(control.rest, "alice").list_datasets().unwrap();
    assert!(datasets.is_empty());
    let warning = format!("--accept-data-loss: the journal {} is missing", path.display());
    let (warned, log) = control.wait_for_log(&warning);
    assert!(warned, "no warning about the loss:\n{log}");
    control.terminate();

    // The loss was accepted once: the next start needs no flag.
    let control = start(&certificates);
    let (datasets, _) = certificates.client(control.rest, "alice").list_datasets().unwrap();
    assert!(datasets.is_empty());
}

#[test]
fn a_journal_cut_at_a_record_boundary_that_loses_acknowledged_changes_stops_the_service() {
    let certificates = filled_store();
    let path = journal(&certificates);
    let lines = journal_lines(&certificates);
    assert_eq!(lines.len(), 6, "a header and five creates");
    fs::write(&path, lines[..3].concat()).unwrap(); // the header and the first two creates
    assert_refuses_to_start(
        &certificates,
        &path.display().to_string(),
        "changes 3 to 5 are missing",
    );
    assert_eq!(fs::read(&path).unwrap(), lines[..3].concat(), "the journal was left as it was");

    let control = start_accepting_the_loss(&certificates);
    let (datasets, _) = certificates.client(control.rest, "alice").list_datasets().unwrap();
    assert_eq!(datasets.len(), 2);
}

#[test]
fn a_torn_append_after_the_last_acknowledged_change_is_dropped_and_the_service_starts() {
    let certificates = filled_store();
    // A crash in the middle of writing a sixth change, which was never acknowledged.
    let last = journal_lines(&certificates).pop().unwrap();
    let mut journal_file = OpenOptions::new().append(true).open(journal(&certificates)).unwrap();
    std::io::Write::write_all(&mut journal_file, &last[..last.len() / 2]).unwrap();

    let control = start(&certificates);
    let (datasets, _) = certificates.client(control.rest, "alice").list_datasets().unwrap();
    assert_eq!(datasets.len(), 5);
    let (warned, log) = control.wait_for_log("dropped an unterminated last record");
    assert!(warned, "{log}");
}
