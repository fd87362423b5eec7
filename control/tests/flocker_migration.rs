//! Replacing Flocker's control service in place: ours starts on Flocker's `--data-path` and
//! serves the datasets, leases and block-device records that Flocker stored there.

#[path = "support/flocker_one.rs"]
mod flocker_one;

use flocker_testkit::{ClusterCertificates, ControlProcess};

use self::flocker_one::{DATASET, NODE, flocker_configuration};

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
