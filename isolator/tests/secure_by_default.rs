//! The isolator runs as root and the task chooses its path and volume name: each attack here
//! is refused before anything is done, through the Rust API, against a real control service
//! and a real dataset agent (loopback volumes). Host paths are a scratch tree that stands in
//! for `/` (the operator's roots are set to it), so a failure never touches the host's files.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flocker_api::types::CreateDataset;
use flocker_isolator_core::Isolator;
use flocker_isolator_core::container::ContainerId;
use flocker_isolator_core::control::error_chain;
use flocker_isolator_core::params::Parameters;
use flocker_testkit::task::{command_task, with_variables};
use flocker_testkit::{BackendKind, LocalCluster, Storage, require_root};
use serde_json::{Value, json};

/// A one-node cluster, a scratch "host" with `/allowed` as the only root, and its isolator.
struct Host {
    cluster: LocalCluster,
    isolator: Isolator,
    /// Stands in for `/`.
    scratch: PathBuf,
}

impl Host {
    fn start(extra: Value) -> Self {
        require_root();
        let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
        let scratch = cluster.certificates.root().join("host");
        for directory in ["allowed", "etc/cron.d", "root/.ssh", "sandbox"] {
            fs::create_dir_all(scratch.join(directory)).unwrap();
        }
        let mut parameters = cluster.isolator_parameters(0);
        parameters["host_path_roots"] = json!(scratch.join("allowed"));
        for (key, value) in extra.as_object().into_iter().flatten() {
            parameters[key] = value.clone();
        }
        let isolator = Isolator::new(Parameters::parse(&parameters.to_string()).unwrap()).unwrap();
        Self { cluster, isolator, scratch }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.scratch.join(relative)
    }

    fn prepare(&self, container: &ContainerId, config: &Value) -> Result<Option<Value>, String> {
        match self.isolator.prepare(container, config) {
            Ok(launch) => Ok(launch.map(|l| serde_json::to_value(l).unwrap())),
            Err(error) => Err(error_chain(&error)),
        }
    }

    /// A prepare that must be refused before any side effect: no dataset, no lease, no
    /// checkpoint, nothing new on disk.
    fn refused(&self, config: &Value) -> String {
        let before = tree(&self.scratch);
        let message = self.prepare(&container(), config).unwrap_err();
        assert!(self.cluster.client.list_datasets().unwrap().0.is_empty(), "{message}");
        assert!(self.cluster.client.list_leases().unwrap().is_empty(), "{message}");
        assert_eq!(checkpoints(&self.cluster), 0, "{message}");
        assert_eq!(tree(&self.scratch), before, "something was made: {message}");
        message
    }
}

fn container() -> ContainerId {
    ContainerId { value: uuid::Uuid::new_v4().to_string(), parent: None }
}

fn checkpoints(cluster: &LocalCluster) -> usize {
    let state = cluster.agents[0].directory.join("isolator-state");
    flocker_isolator_core::checkpoint::peek(&state).unwrap().len()
}

/// Every path under `root`, links not followed.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory).unwrap().map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
            found.push(entry.path());
        }
    }
    found.sort();
    found
}

fn task(id: &str, path: &Path) -> Value {
    command_task(&[(id, path.to_str().unwrap())])
}

#[test]
fn a_host_link_goes_only_beneath_the_roots_and_never_through_a_symbolic_link() {
    let host = Host::start(json!({}));
    for outside in ["etc/cron.d/x", "root/.ssh", "etc/sudoers.d/z", "usr/local/bin/x", "allowed"] {
        let message = host.refused(&task("attack", &host.path(outside)));
        assert!(
            message.contains(&format!("\"{}\"", host.path(outside).display()))
                && message.contains("host_path_roots"),
            "{outside}: {message}"
        );
    }
    std::os::unix::fs::symlink(host.path("etc"), host.path("allowed/evil")).unwrap();
    let message = host.refused(&task("attack", &host.path("allowed/evil/cron.d/x")));
    assert!(message.contains("is a symbolic link; refusing to follow it"), "{message}");
    fs::write(host.path("allowed/file"), b"theirs").unwrap();
    let message = host.refused(&task("attack", &host.path("allowed/file/x")));
    assert!(message.contains("is not a directory"), "{message}");
}

#[test]
fn no_roots_means_no_host_links_and_relative_paths_still_work() {
    let host = Host::start(json!({"host_path_roots": ""}));
    let message = host.refused(&task("x", Path::new("/tmp/data")));
    assert!(message.contains("host_path_roots (none: host links are off)"), "{message}");
    let mut config = task("x", Path::new("data"));
    config["directory"] = json!(host.path("sandbox"));
    let launch = host.prepare(&container(), &config).unwrap().unwrap();
    assert_eq!(launch["mounts"][0]["target"], json!(host.path("sandbox/data")));
}

#[test]
fn directories_made_for_a_link_go_at_cleanup_and_after_a_failed_prepare() {
    let host = Host::start(json!({}));
    let first = container();
    let link = host.path("allowed/a/b/data");
    host.prepare(&first, &task("made", &link)).unwrap();
    assert!(fs::read_link(&link).is_ok());
    fs::create_dir(host.path("allowed/a/theirs")).unwrap();
    host.isolator.cleanup(&first).unwrap();
    assert_eq!(
        tree(&host.path("allowed")),
        [host.path("allowed/a"), host.path("allowed/a/theirs")]
    );
    fs::remove_dir_all(host.path("allowed/a")).unwrap();

    // The second volume names two datasets: the prepare fails after the first was linked.
    for _ in 0..2 {
        let metadata = [("name".to_owned(), "twice".to_owned())].into();
        let request = CreateDataset {
            primary: host.cluster.node(0),
            dataset_id: None,
            maximum_size: Some(64 << 20),
            metadata,
        };
        host.cluster.client.create_dataset(&request, None).unwrap();
    }
    let config = command_task(&[
        ("once", host.path("allowed/c/d/one").to_str().unwrap()),
        ("twice", host.path("allowed/e/two").to_str().unwrap()),
    ]);
    let message = host.prepare(&container(), &config).unwrap_err();
    assert!(message.contains("names several datasets"), "{message}");
    assert!(tree(&host.path("allowed")).is_empty(), "{:?}", tree(&host.path("allowed")));
    assert_eq!(checkpoints(&host.cluster), 0);
}

#[test]
fn a_new_volume_goes_to_the_tasks_user_mode_0755_and_keeps_its_owner() {
    let host = Host::start(json!({}));
    let link = host.path("allowed/data");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a user 'nobody'");
    let mut config = task("owned", &link);
    config["user"] = json!("nobody");
    let first = container();
    host.prepare(&first, &config).unwrap();
    let root = fs::metadata(&link).unwrap();
    assert_eq!((root.uid(), root.gid()), (nobody.uid.as_raw(), nobody.gid.as_raw()));
    assert_eq!(root.permissions().mode() & 0o7777, 0o755, "never 0777");
    fs::write(link.join("written"), b"x").unwrap();
    host.isolator.cleanup(&first).unwrap();
    config["user"] = json!("daemon");
    let second = container();
    host.prepare(&second, &config).unwrap();
    assert_eq!(fs::metadata(&link).unwrap().uid(), nobody.uid.as_raw(), "it keeps its owner");
    host.isolator.cleanup(&second).unwrap();

    let mut as_root = task("root-owned", &link);
    as_root["user"] = json!("root");
    host.prepare(&container(), &as_root).unwrap();
    let root = fs::metadata(&link).unwrap();
    assert_eq!((root.uid(), root.permissions().mode() & 0o7777), (0, 0o755));
}

#[test]
fn a_read_only_volume_is_a_read_only_bind_mount_and_never_a_host_link() {
    let host = Host::start(json!({}));
    let variables = |path: &str| {
        vec![
            ("FLOCKER_ID".to_owned(), "reports".to_owned()),
            ("FLOCKER_CONTAINER_VOLUME_PATH".to_owned(), path.to_owned()),
            ("FLOCKER_CONTAINER_VOLUME_MODE".to_owned(), "ro".to_owned()),
        ]
    };
    let link = host.path("allowed/reports");
    let message =
        host.refused(&with_variables(command_task(&[]), &variables(link.to_str().unwrap())));
    assert!(
        message
            .contains("a link cannot be read-only: give a relative FLOCKER_CONTAINER_VOLUME_PATH"),
        "{message}"
    );
    let mut config = with_variables(command_task(&[]), &variables("reports"));
    config["directory"] = json!(host.path("sandbox"));
    let launch = host.prepare(&container(), &config).unwrap().unwrap();
    let flags = launch["mounts"][0]["flags"].as_u64().unwrap();
    assert_eq!(flags & 1, 1, "MS_RDONLY: {launch}");
}

#[test]
fn a_role_uses_only_the_volume_names_the_operator_gives_it() {
    let host = Host::start(json!({"volume_prefixes_by_role": "*=web-;billing=billing-"}));
    let message = host.refused(&task("billing-ledger", &host.path("allowed/x")));
    assert!(
        message.contains("FLOCKER_ID is \"billing-ledger\": role '*' may only use volumes whose name begins with web-"),
        "{message}"
    );
    host.prepare(&container(), &task("web-cache", &host.path("allowed/x"))).unwrap();
}

/// A task moved to a node that cannot see its volume's storage fails with the agent's reason
/// (not "was not mounted within 30 s", which waiting out the mount timeout would say), rather
/// than starting on a new, empty volume.
fn a_task_on_a_node_that_cannot_see_its_volume_fails_with_the_agents_reason(backend: BackendKind) {
    require_root();
    let cluster = LocalCluster::start_on_storage(backend, 2, Storage::PerNode);
    let isolator = |index: usize| {
        let parameters = cluster.isolator_parameters(index);
        Isolator::new(Parameters::parse(&parameters.to_string()).unwrap()).unwrap()
    };
    let (a, b) = (isolator(0), isolator(1));
    let link = cluster.certificates.root().join("links/data");
    let config = task("orders", &link);
    let first = container();
    a.prepare(&first, &config).unwrap();
    fs::write(link.join("order-1"), b"paid").unwrap();
    a.cleanup(&first).unwrap();
    let message = error_chain(&b.prepare(&container(), &config).unwrap_err());
    assert!(
        message.contains("will not be mounted here: this node's agent says the volume of dataset")
            && message.contains("is not visible on this node"),
        "{message}\n{}",
        cluster.logs()
    );
    assert!(fs::symlink_metadata(&link).is_err(), "no link to an empty volume");
    let (datasets, _) = cluster.client.list_datasets().unwrap();
    assert_eq!(datasets.len(), 1);
    cluster.client.move_dataset(&datasets[0].dataset_id, &cluster.node(0), None).unwrap();
    a.prepare(&container(), &config).unwrap();
    assert_eq!(fs::read(link.join("order-1")).unwrap(), b"paid", "the data is whole on A");
}

#[test]
fn a_task_on_a_node_that_cannot_see_its_loopback_volume_fails_with_the_agents_reason() {
    a_task_on_a_node_that_cannot_see_its_volume_fails_with_the_agents_reason(BackendKind::Loopback);
}

#[test]
fn a_task_on_a_node_that_cannot_see_its_directory_volume_fails_with_the_agents_reason() {
    a_task_on_a_node_that_cannot_see_its_volume_fails_with_the_agents_reason(
        BackendKind::Directory,
    );
}
