//! The isolator through its Rust API, against a real control service and two real dataset
//! agents (loopback backend, one shared root): what a task sees on first use, after a move,
//! while another node's task holds the volume, after a delete, under a crowd, with bad requests
//! and without a control service.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flocker_api::DatasetId;
use flocker_isolator_core::Isolator;
use flocker_isolator_core::container::ContainerId;
use flocker_isolator_core::params::Parameters;
use flocker_testkit::task::{command_task, fixture, with_variables};
use flocker_testkit::{BackendKind, LocalCluster, require_root};
use rand::RngCore;
use serde_json::json;

struct Node {
    isolator: Isolator,
    links: PathBuf,
}

fn start() -> (LocalCluster, Vec<Node>) {
    start_on(BackendKind::Loopback)
}

fn start_on(backend: BackendKind) -> (LocalCluster, Vec<Node>) {
    require_root();
    let cluster = LocalCluster::start(backend, 2, &[]);
    let nodes = (0..2).map(|i| node(&cluster, i, cluster.isolator_parameters(i))).collect();
    (cluster, nodes)
}

fn node(cluster: &LocalCluster, index: usize, parameters: serde_json::Value) -> Node {
    let isolator = Isolator::new(Parameters::parse(&parameters.to_string()).unwrap()).unwrap();
    let links = cluster.certificates.root().join(format!("links-{index}"));
    Node { isolator, links }
}

fn container() -> ContainerId {
    ContainerId { value: uuid::Uuid::new_v4().to_string(), parent: None }
}

impl Node {
    /// Prepares `container` for the volume `id`, linked at `<links>/<name>`.
    fn prepare(&self, container: &ContainerId, id: &str, name: &str) -> Result<PathBuf, String> {
        let link = self.links.join(name);
        let config = command_task(&[(id, link.to_str().unwrap())]);
        match self.isolator.prepare(container, &config) {
            Ok(None) => Ok(link),
            Ok(Some(launch)) => Err(format!("a link was expected, not {launch:?}")),
            Err(error) => Err(flocker_isolator_core::control::error_chain(&error)),
        }
    }
}

fn random_file(directory: &Path) -> Vec<u8> {
    let mut bytes = vec![0u8; 256 * 1024];
    rand::rng().fill_bytes(&mut bytes);
    fs::write(directory.join("data.bin"), &bytes).unwrap();
    bytes
}

fn datasets_named(cluster: &LocalCluster, id: &str) -> Vec<DatasetId> {
    let (datasets, _) = cluster.client.list_datasets().unwrap();
    datasets
        .into_iter()
        .filter(|d| !d.deleted && d.metadata.get("name").is_some_and(|n| n == id))
        .map(|d| d.dataset_id)
        .collect()
}

fn checkpoints(cluster: &LocalCluster, index: usize) -> usize {
    let state = cluster.agents[index].directory.join("isolator-state");
    flocker_isolator_core::checkpoint::peek(&state).unwrap().len()
}

#[test]
fn first_use_creates_the_volume_here_and_its_data_survives_cleanup_and_the_next_task() {
    let (cluster, nodes) = start();
    let first = container();
    let link = nodes[0].prepare(&first, "webapp-data", "data").unwrap();
    let target = fs::read_link(&link).unwrap();
    assert!(target.starts_with(&cluster.agents[0].mount_root), "{}", target.display());
    let written = random_file(&link);
    let dataset = datasets_named(&cluster, "webapp-data");
    assert_eq!(dataset.len(), 1);
    assert_eq!(cluster.client.list_leases().unwrap()[0].node_uuid, cluster.node(0));

    nodes[0].isolator.cleanup(&first).unwrap();
    assert!(fs::symlink_metadata(&link).is_err(), "the link stays after cleanup");
    assert!(cluster.client.list_leases().unwrap().is_empty(), "the lease stays after cleanup");
    assert_eq!(checkpoints(&cluster, 0), 0);
    nodes[0].isolator.cleanup(&first).unwrap(); // again: nothing to do

    let link = nodes[0].prepare(&container(), "webapp-data", "data").unwrap();
    assert_eq!(fs::read(link.join("data.bin")).unwrap(), written);
    assert_eq!(datasets_named(&cluster, "webapp-data"), dataset);
}

#[test]
fn the_next_task_on_another_node_finds_the_same_bytes() {
    the_next_task_on_another_node_finds_the_same_bytes_on(BackendKind::Loopback);
}

/// The same without shared storage: the volume is pushed from node A's own disk to node B's.
#[test]
fn the_next_task_on_another_node_finds_the_same_bytes_pushed_between_own_disks() {
    the_next_task_on_another_node_finds_the_same_bytes_on(BackendKind::Btrfs);
}

fn the_next_task_on_another_node_finds_the_same_bytes_on(backend: BackendKind) {
    let (cluster, nodes) = start_on(backend);
    let on_a = container();
    let link_a = nodes[0].prepare(&on_a, "orders", "orders").unwrap();
    let written = random_file(&link_a);
    let mount_on_a = fs::read_link(&link_a).unwrap();
    nodes[0].isolator.cleanup(&on_a).unwrap();
    let link_b = nodes[1].prepare(&container(), "orders", "orders").unwrap();
    assert_eq!(fs::read(link_b.join("data.bin")).unwrap(), written, "the bytes differ on node B");
    let dataset = datasets_named(&cluster, "orders")[0];
    assert_eq!(cluster.mounted_path(&dataset, 1), Some(fs::read_link(&link_b).unwrap()));
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&mount_on_a.display().to_string())
    );
}

#[test]
fn a_volume_in_use_on_one_node_is_refused_on_the_other_at_once_naming_the_node() {
    let (cluster, nodes) = start();
    let link_a = nodes[0].prepare(&container(), "billing", "billing").unwrap();
    let started = Instant::now();
    let refused = nodes[1].prepare(&container(), "billing", "billing").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "not fast: {:?}", started.elapsed());
    assert!(
        refused.contains(&cluster.node(0).to_string()) && refused.contains("127.0.0.1"),
        "{refused}"
    );
    assert!(refused.contains("in use on node"), "{refused}");
    assert!(fs::read_link(&link_a).is_ok(), "A's link was touched");
    let dataset = datasets_named(&cluster, "billing")[0];
    assert!(cluster.mounted_path(&dataset, 0).is_some(), "A's volume went away");
    assert!(fs::symlink_metadata(nodes[1].links.join("billing")).is_err(), "B made a link");
    assert_eq!(checkpoints(&cluster, 1), 0, "B kept a checkpoint");
    assert_eq!(
        cluster.client.list_leases().unwrap()[0].node_uuid,
        cluster.node(0),
        "A's lease was released"
    );
}

#[test]
fn a_deleted_volume_name_gets_a_fresh_dataset() {
    let (cluster, nodes) = start();
    let first = container();
    let link = nodes[0].prepare(&first, "scratch", "scratch").unwrap();
    fs::write(link.join("old"), b"old").unwrap();
    nodes[0].isolator.cleanup(&first).unwrap();
    let old = datasets_named(&cluster, "scratch")[0];
    cluster.client.delete_dataset(&old, None).unwrap();
    let link = nodes[0].prepare(&container(), "scratch", "scratch").unwrap();
    let new = datasets_named(&cluster, "scratch");
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], old);
    assert!(!link.join("old").exists(), "the deleted dataset's data came back");
}

#[test]
fn twenty_concurrent_prepares_of_one_new_volume_make_exactly_one_dataset() {
    let (cluster, nodes) = start();
    let outcomes: Vec<(usize, Result<PathBuf, String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..20)
            .map(|i| {
                let node = &nodes[i % 2];
                scope.spawn(move || {
                    (i % 2, node.prepare(&container(), "crowd", &format!("crowd-{i}")))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(datasets_named(&cluster, "crowd").len(), 1, "{outcomes:?}");
    let winners: std::collections::BTreeSet<usize> =
        outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(node, _)| *node).collect();
    assert_eq!(winners.len(), 1, "both nodes got the volume: {outcomes:?}");
    for (node, outcome) in &outcomes {
        if let Err(error) = outcome {
            assert!(!winners.contains(node) && error.contains("in use on node"), "{error}");
        }
    }
}

#[test]
fn several_volumes_are_all_or_nothing() {
    let (cluster, nodes) = start();
    nodes[1].prepare(&container(), "held", "held").unwrap();
    let both = with_variables(
        fixture("two-volumes"),
        &[
            ("FLOCKER_ID_1".into(), "free".into()),
            (
                "FLOCKER_CONTAINER_VOLUME_PATH_1".into(),
                nodes[0].links.join("free").display().to_string(),
            ),
            ("FLOCKER_ID_2".into(), "held".into()),
            (
                "FLOCKER_CONTAINER_VOLUME_PATH_2".into(),
                nodes[0].links.join("held").display().to_string(),
            ),
        ],
    );
    let error = nodes[0].isolator.prepare(&container(), &both).unwrap_err();
    assert!(flocker_isolator_core::control::error_chain(&error).contains("in use on node"));
    assert!(
        fs::symlink_metadata(nodes[0].links.join("free")).is_err(),
        "the first volume's link stays"
    );
    let leases = cluster.client.list_leases().unwrap();
    assert!(
        leases.iter().all(|l| l.node_uuid == cluster.node(1)),
        "the first volume's lease stays: {leases:?}"
    );
    assert_eq!(checkpoints(&cluster, 0), 0);
}

#[test]
fn bad_requests_get_clear_errors_and_leave_everything_untouched() {
    let (cluster, nodes) = start();
    let occupied = nodes[0].links.join("occupied");
    fs::create_dir_all(&occupied).unwrap();
    fs::write(occupied.join("theirs"), b"not ours").unwrap();
    let (x, occupied_text) =
        (nodes[0].links.join("x").display().to_string(), occupied.display().to_string());
    let cases = [
        (vec![("FLOCKER_ID", "half")], "FLOCKER_CONTAINER_VOLUME_PATH"),
        (
            vec![("FLOCKER_ID", "bad id!"), ("FLOCKER_CONTAINER_VOLUME_PATH", x.as_str())],
            "FLOCKER_ID",
        ),
        (vec![("FLOCKER_ID", "dots"), ("FLOCKER_CONTAINER_VOLUME_PATH", "/tmp/../etc")], ".."),
        (
            vec![("FLOCKER_ID", "root"), ("FLOCKER_CONTAINER_VOLUME_PATH", "/")],
            "FLOCKER_CONTAINER_VOLUME_PATH",
        ),
        (
            vec![
                ("FLOCKER_ID", "theirs"),
                ("FLOCKER_CONTAINER_VOLUME_PATH", occupied_text.as_str()),
            ],
            "not a link of ours",
        ),
    ];
    for (variables, words) in cases {
        let variables: Vec<(String, String)> =
            variables.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let config = with_variables(fixture("command-task"), &variables);
        let error = nodes[0].isolator.prepare(&container(), &config).unwrap_err();
        let message = flocker_isolator_core::control::error_chain(&error);
        assert!(message.contains(words), "{variables:?}: {message}");
    }
    assert_eq!(fs::read(occupied.join("theirs")).unwrap(), b"not ours");
    assert_eq!(cluster.client.list_datasets().unwrap().0, [], "a bad request created a dataset");
    assert_eq!(checkpoints(&cluster, 0), 0);
}

#[test]
fn without_a_control_service_a_prepare_fails_clearly_in_time_and_leaves_nothing() {
    let (mut cluster, _) = start();
    let mut parameters = cluster.isolator_parameters(0);
    parameters["mount_timeout_seconds"] = json!("3");
    parameters["request_timeout_seconds"] = json!("2");
    let node = node(&cluster, 0, parameters);
    cluster.kill_control();
    let started = Instant::now();
    let message = node.prepare(&container(), "offline", "offline").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(message.contains("control service"), "{message}");
    assert!(fs::symlink_metadata(node.links.join("offline")).is_err());
    assert_eq!(checkpoints(&cluster, 0), 0, "a checkpoint was left half-done");
}

#[test]
fn without_a_node_certificate_the_node_is_found_by_its_era() {
    require_root();
    let mut cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    cluster.agents[0].use_boot_era().unwrap();
    let boot_id: flocker_api::Era =
        fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().parse().unwrap();
    cluster.wait_for("the agent to say hello with the boot id", Duration::from_secs(30), || {
        cluster.client.node_by_era(&boot_id).unwrap() == Some(cluster.node(0))
    });
    let mut parameters = cluster.isolator_parameters(0);
    parameters["node_certificate"] = json!("/nonexistent/node.crt");
    let node = node(&cluster, 0, parameters);
    let link = node.prepare(&container(), "by-era", "by-era").unwrap();
    assert!(fs::read_link(&link).unwrap().starts_with(&cluster.agents[0].mount_root));
}

/// Mesos reports a task's end before it cleans up its container: a task started on another
/// node on that news must get the volume once the cleanup releases the lease, not a refusal.
#[test]
fn a_lease_released_while_the_prepare_waits_is_taken() {
    a_lease_released_while_the_prepare_waits_is_taken_on(BackendKind::Loopback);
}

#[test]
fn a_lease_released_while_the_prepare_waits_is_taken_and_the_volume_pushed_between_own_disks() {
    a_lease_released_while_the_prepare_waits_is_taken_on(BackendKind::Btrfs);
}

fn a_lease_released_while_the_prepare_waits_is_taken_on(backend: BackendKind) {
    let (cluster, nodes) = start_on(backend);
    let on_a = container();
    let link_a = nodes[0].prepare(&on_a, "handover", "handover").unwrap();
    fs::write(link_a.join("note"), b"from A").unwrap();
    let [node_a, node_b] = <[Node; 2]>::try_from(nodes).ok().unwrap();
    let cleanup = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        node_a.isolator.cleanup(&on_a).unwrap();
    });
    let link_b = node_b.prepare(&container(), "handover", "handover");
    cleanup.join().unwrap();
    let link_b = link_b.unwrap_or_else(|e| panic!("B was refused: {e}\n{}", cluster.logs()));
    assert_eq!(fs::read(link_b.join("note")).unwrap(), b"from A");
}

#[test]
fn with_no_lease_wait_a_volume_in_use_is_refused_at_once() {
    let (cluster, nodes) = start();
    nodes[0].prepare(&container(), "busy", "busy").unwrap();
    let mut parameters = cluster.isolator_parameters(1);
    parameters["lease_wait_seconds"] = json!("0");
    let impatient = node(&cluster, 1, parameters);
    let started = Instant::now();
    let refused = impatient.prepare(&container(), "busy", "busy").unwrap_err();
    assert!(refused.contains("in use on node"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
}
