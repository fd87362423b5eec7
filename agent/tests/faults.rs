//! Bad input and faults: the agent says what is wrong with its files, keeps the node as it is
//! while the control service is away, never formats what holds a file system, reports failing
//! commands in their own words and retries without looping hot.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flocker_api::DatasetId;
use flocker_testkit::{
    AgentProcess, BackendKind, ClusterCertificates, LocalCluster, SMALL, agent_binary,
    require_root, run_agent_to_exit,
};

/// An agent's directory with a good configuration and certificates, not started.
fn prepared_agent(certificates: &ClusterCertificates) -> std::path::PathBuf {
    let agent = AgentProcess::start(
        &agent_binary(),
        certificates,
        "node-x",
        9, // nothing listens there: the agent only has to start
        BackendKind::DirectorySymlink,
        &certificates.root().join("shared"),
    )
    .unwrap();
    agent.directory.clone()
}

#[test]
fn an_unreadable_or_wrong_agent_yml_is_named_with_its_problem() {
    let certificates = ClusterCertificates::new();
    let directory = prepared_agent(&certificates);
    let config = directory.join("agent.yml");
    fs::write(&config, "version: 1\ncontrol-service: {hostname: h}\ndataset: {backend: zfs}\n")
        .unwrap();
    let message = run_agent_to_exit(&directory);
    assert!(
        message.contains(&config.display().to_string()) && message.contains("zfs"),
        "{message}"
    );
    fs::remove_file(&config).unwrap();
    let message = run_agent_to_exit(&directory);
    assert!(
        message.contains(&config.display().to_string()) && message.contains("cannot read"),
        "{message}"
    );
}

#[test]
fn a_missing_or_wrong_node_certificate_is_named_with_its_problem() {
    let certificates = ClusterCertificates::new();
    let directory = prepared_agent(&certificates);
    let node_certificate = directory.join("node.crt");
    let (user_certificate, _) = certificates.user("someone");
    fs::copy(&user_certificate, &node_certificate).unwrap();
    let message = run_agent_to_exit(&directory);
    assert!(
        message.contains(&node_certificate.display().to_string())
            && message.contains("user-someone"),
        "{message}"
    );
    fs::remove_file(directory.join("node.key")).unwrap();
    fs::copy(certificates.node().certificate, &node_certificate).unwrap();
    let message = run_agent_to_exit(&directory);
    assert!(message.contains("node.key"), "{message}");
}

#[test]
fn the_node_stays_as_it_is_while_the_control_service_is_away_and_reports_when_it_is_back() {
    require_root();
    let mut cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    cluster.kill_control();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&path.display().to_string()),
        "unmounted while the control service was away"
    );
    assert!(cluster.agents[0].log().contains("retrying"), "{}", cluster.agents[0].log());
    cluster.restart_control();
    assert_eq!(
        cluster.wait_mounted(&dataset, 0),
        path,
        "the state was not reported to the new control service"
    );
}

#[test]
fn a_volume_holding_another_file_system_is_never_formatted() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let dataset = DatasetId::random();
    let volume = cluster.volume_path(&dataset, None);
    fs::File::create(&volume).unwrap().set_len(SMALL).unwrap();
    let made = Command::new("mkswap").arg(&volume).output().unwrap();
    assert!(made.status.success());
    let before = fs::read(&volume).unwrap();
    cluster.create_dataset_with_id(0, Some(dataset)).unwrap();
    cluster.wait_for("the agent to refuse the volume", Duration::from_secs(30), || {
        cluster.agents[0].log().contains("holds a file system of its own (swap)")
    });
    std::thread::sleep(Duration::from_millis(500));
    let attached = cluster.volume_path(&dataset, Some(0));
    assert_eq!(fs::read(&attached).unwrap(), before, "the volume was changed");
    assert!(cluster.mounted_path(&dataset, 0).is_none());
    // Every refusal is reported, not only a volume out of sight (issue 14).
    cluster.wait_for("the agent to report the refusal", Duration::from_secs(30), || {
        cluster.problems(&dataset).iter().any(|p| {
            p.node_uuid == cluster.node(0)
                && p.problem.contains(&format!("dataset {dataset} holds a file system of its own"))
        })
    });
}

#[test]
fn a_volume_flockers_agent_made_without_a_file_system_is_formatted_and_mounted() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let dataset = DatasetId::random();
    fs::File::create(cluster.volume_path(&dataset, None)).unwrap().set_len(SMALL).unwrap();
    cluster.create_dataset_with_id(0, Some(dataset)).unwrap();
    let path = cluster.wait_mounted(&dataset, 0);
    assert!(cluster.agents[0].log().contains(&format!("dataset {dataset}: Format")));
    fs::write(path.join("hello"), b"world").unwrap();
}

#[test]
fn a_failing_step_is_logged_with_its_dataset_and_retried_without_looping_hot() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let dataset = DatasetId::random();
    // Someone's files where the dataset would be mounted: never hidden, never removed.
    let blocked = cluster.agents[0].mount_point(&dataset.to_string());
    fs::create_dir_all(&blocked).unwrap();
    fs::write(blocked.join("precious"), b"not ours").unwrap();
    cluster.create_dataset_with_id(0, Some(dataset)).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let log = cluster.agents[0].log();
    let failures = log.matches(&format!("dataset {dataset}: Mount failed")).count();
    assert!(failures >= 2, "the step was not retried:\n{log}");
    assert!(failures <= 12, "{failures} attempts in 5 s: looping hot\n{log}");
    assert!(log.contains("not empty"), "{log}");
    assert_eq!(fs::read(blocked.join("precious")).unwrap(), b"not ours");
    fs::remove_file(blocked.join("precious")).unwrap();
    cluster.wait_mounted(&dataset, 0);
}

#[test]
fn a_step_that_fails_is_reported_with_its_cause() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let dataset = DatasetId::random();
    // A directory where a volume file should be: no loop device can serve it.
    fs::create_dir(cluster.volume_path(&dataset, None)).unwrap();
    cluster.create_dataset_with_id(0, Some(dataset)).unwrap();
    cluster.wait_for("the failure to be logged", Duration::from_secs(30), || {
        let log = cluster.agents[0].log();
        log.contains(&format!("dataset {dataset}: Attach failed: cannot attach a loop device to"))
            && log.contains("Is a directory")
    });
}

#[test]
fn a_busy_volume_is_unmounted_once_let_go_never_by_force() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let on_a = cluster.wait_mounted(&dataset, 0);
    fs::write(on_a.join("open"), b"in use").unwrap();
    let in_use = fs::File::open(on_a.join("open")).unwrap();
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    cluster.wait_for("the busy unmount to be retried", Duration::from_secs(30), || {
        cluster.agents[0].log().matches("is busy").count() >= 2
    });
    assert_eq!(cluster.mounted_path(&dataset, 0), Some(on_a.clone()), "unmounted while in use");
    drop(in_use);
    let on_b = cluster.wait_mounted(&dataset, 1);
    assert_eq!(fs::read(on_b.join("open")).unwrap(), b"in use");
}

/// The loop devices whose backing file is `file`.
fn loop_devices_of(file: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/block") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            fs::read_to_string(entry.path().join("loop/backing_file"))
                .is_ok_and(|backing| Path::new(backing.trim_end()) == file)
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Two loopback nodes and a dataset mounted on the first, holding a file `data` ("kept"): the
/// cluster, the dataset, where it is mounted, and its volume file.
fn a_volume_holding_data_on_node_a() -> (LocalCluster, DatasetId, PathBuf, PathBuf) {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let on_a = cluster.wait_mounted(&dataset, 0);
    fs::write(on_a.join("data"), b"kept").unwrap();
    let file = cluster.volume_path(&dataset, Some(0)).canonicalize().unwrap();
    (cluster, dataset, on_a, file)
}

#[test]
fn a_second_loop_device_of_a_volume_neither_hides_its_mount_nor_stays_behind_on_a_move() {
    // Made by hand, say, or by a `losetup` that outlived a killed agent (before the agent made
    // its loop devices itself).
    let (cluster, dataset, on_a, file) = a_volume_holding_data_on_node_a();
    let added = Command::new("losetup").arg("--find").arg("--show").arg(&file).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert_eq!(loop_devices_of(&file).len(), 2);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(cluster.mounted_path(&dataset, 0), Some(on_a), "the mount is no longer seen");
    assert!(!cluster.agents[0].log().contains("Mount failed"), "{}", cluster.agents[0].log());
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    let on_b = cluster.wait_mounted(&dataset, 1);
    assert_eq!(fs::read(on_b.join("data")).unwrap(), b"kept");
    let moved = cluster.volume_path(&dataset, Some(1)).canonicalize().unwrap();
    assert_eq!(loop_devices_of(&moved).len(), 1, "a loop device followed the file to B");
}

#[test]
fn a_volume_whose_loop_device_is_still_open_is_never_moved_from_under_it() {
    // The detach of an open device succeeds, and only marks it to go at its last close.
    let (cluster, dataset, _, file) = a_volume_holding_data_on_node_a();
    let device = format!("/dev/{}", loop_devices_of(&file)[0]);
    let holder = fs::File::open(&device).unwrap(); // some process still reads the device
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    cluster.wait_for("the detach to be refused as busy", Duration::from_secs(30), || {
        cluster.agents[0].log().contains(&format!("{} is busy", file.display()))
    });
    assert!(file.exists(), "the file moved while its device was open");
    assert_eq!(cluster.mounted_path(&dataset, 1), None);
    drop(holder);
    let on_b = cluster.wait_mounted(&dataset, 1);
    assert_eq!(fs::read(on_b.join("data")).unwrap(), b"kept");
}
