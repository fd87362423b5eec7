//! The plugin under a REAL Docker daemon (Debian's docker.io, as root): a real cluster (a
//! control service and two dataset agents, loopback backend, one shared root_path) and, on each
//! node, a `dockerd` of its own and our plugin. `docker run -v web:/data --volume-driver …` on
//! node A writes, the same on node B reads; while A's container runs, B's is refused naming
//! node A; `docker volume ls/inspect/rm` behave; and a Mesos task (the isolator's core) and a
//! Docker container use one volume one after the other.
//!
//! Two daemons on one machine: each has its own data root, exec root (and so its own
//! containerd) and API socket, no bridge and no iptables; containers run with `--network none`
//! from an image imported from a root file system holding busybox-static.
//!
//! Docker finds a plugin by name in the one directory /run/docker/plugins, the same for every
//! daemon on the machine. So that each daemon ("node") talks to its own node's plugin, the two
//! plugins have different names, `flocker-<unique>-a` and `-b`, and each daemon is given its own
//! as `--volume-driver`; unique per run, so that parallel tests and leftovers never clash.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use flocker_isolator_core::Isolator;
use flocker_isolator_core::container::ContainerId;
use flocker_isolator_core::params::Parameters;
use flocker_testkit::docker::{
    BUSYBOX_IMAGE, DockerDaemon, DockerPlugin, plugin_socket, unique_plugin_name,
};
use flocker_testkit::task::command_task;
use flocker_testkit::{BackendKind, LocalCluster, require_root};
use serde_json::Value;

/// A node as Docker sees it: a daemon and our plugin under a name of this node's own.
/// The daemon is declared first, so it is stopped (its containers removed, their volumes
/// unmounted through the plugin) before the plugin goes.
struct DockerNode {
    docker: DockerDaemon,
    plugin: DockerPlugin,
    /// The plugin's name: this node's `--volume-driver`.
    driver: String,
}

impl DockerNode {
    fn start(cluster: &LocalCluster, index: usize, driver: String) -> Self {
        let plugin = DockerPlugin::start(cluster, index, Some(plugin_socket(&driver)));
        let directory = cluster.certificates.root().join(format!("docker-{index}"));
        let docker = DockerDaemon::start(&directory);
        docker.import_busybox();
        Self { docker, plugin, driver }
    }

    /// `docker run` arguments: `volume` at /data through this node's plugin, then `rest`.
    fn run_arguments<'a>(&'a self, volume: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut arguments = vec!["run", "--network", "none", "--volume", volume];
        arguments.extend(["--volume-driver", &self.driver]);
        arguments.extend(rest);
        arguments
    }

    /// `docker run --rm` of `script` in busybox with `volume` at /data; its standard output.
    fn run(&self, volume: &str, script: &str) -> String {
        let arguments = self.run_arguments(volume, &["--rm", BUSYBOX_IMAGE, "sh", "-c", script]);
        self.ok(&arguments)
    }

    /// The same, which must fail; its standard error.
    fn refused(&self, volume: &str, script: &str) -> String {
        let arguments = self.run_arguments(volume, &["--rm", BUSYBOX_IMAGE, "sh", "-c", script]);
        self.docker.fails(&arguments)
    }

    /// A container called `name` that keeps `volume` mounted until it is removed.
    fn hold(&self, volume: &str, name: &str) {
        let rest = ["--detach", "--name", name, BUSYBOX_IMAGE, "sleep", "300"];
        self.ok(&self.run_arguments(volume, &rest));
    }

    fn ok(&self, arguments: &[&str]) -> String {
        let output = self.docker.docker(arguments);
        assert!(
            output.status.success(),
            "docker {arguments:?} failed:\n{}\n--- plugin:\n{}\n--- dockerd:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.plugin.log(),
            self.docker.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn start_cluster() -> LocalCluster {
    require_root();
    LocalCluster::start(BackendKind::Loopback, 2, &[])
}

fn datasets_named(cluster: &LocalCluster, name: &str) -> Vec<flocker_api::Dataset> {
    let (datasets, _) = cluster.client.list_datasets().unwrap();
    datasets
        .into_iter()
        .filter(|d| !d.deleted && d.metadata.get("name").map(String::as_str) == Some(name))
        .collect()
}

fn leased(cluster: &LocalCluster) -> bool {
    !cluster.client.list_leases().unwrap().is_empty()
}

#[test]
fn docker_containers_on_two_nodes_share_a_volume_one_at_a_time_and_docker_volume_commands_work() {
    let cluster = start_cluster();
    let name = unique_plugin_name("flocker");
    let a = DockerNode::start(&cluster, 0, format!("{name}-a"));
    let b = DockerNode::start(&cluster, 1, format!("{name}-b"));
    eprintln!("storage driver: {}", a.docker.storage_driver());

    // Node A writes; the volume is made there, and let go when the container ends.
    a.run("web:/data", "echo hello from A > /data/index.html");
    let web = datasets_named(&cluster, "web");
    assert_eq!(web.len(), 1, "{web:?}");
    let dataset = web[0].dataset_id;
    assert!(!leased(&cluster), "the lease outlived the container");

    // Node B reads what A wrote: the volume moved to B.
    assert_eq!(b.run("web:/data", "cat /data/index.html"), "hello from A\n");
    assert!(cluster.mounted_path(&dataset, 1).is_some(), "not mounted on node B");

    // While a container on A uses it, B's is refused at once, naming node A.
    a.hold("web:/data", "holder");
    let started = Instant::now();
    let refused = b.refused("web:/data", "cat /data/index.html");
    assert!(refused.contains(&cluster.node(0).to_string()), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(10), "not at once: {:?}", started.elapsed());

    // docker volume ls and inspect on A.
    let listed = a.ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    assert!(listed.lines().any(|l| l == format!("{} web", a.driver)), "{listed}");
    let inspected: Value = serde_json::from_str(&a.ok(&["volume", "inspect", "web"])).unwrap();
    let volume = &inspected[0];
    assert_eq!(volume["Name"], "web", "{inspected}");
    assert_eq!(volume["Driver"], a.driver.as_str(), "{inspected}");
    assert_eq!(volume["Scope"], "global", "{inspected}");
    assert_eq!(volume["Status"]["dataset_id"], dataset.to_string(), "{inspected}");
    let mountpoint = volume["Mountpoint"].as_str().unwrap_or_default();
    assert_eq!(cluster.mounted_path(&dataset, 0).as_deref(), Some(Path::new(mountpoint)));
    // Docker itself refuses to remove a volume its container uses.
    a.docker.fails(&["volume", "rm", "web"]);

    // A's container ends: Docker unmounts, the plugin releases the lease, B may have it.
    a.ok(&["rm", "--force", "holder"]);
    b.hold("web:/data", "holder");
    assert_eq!(b.ok(&["exec", "holder", "cat", "/data/index.html"]), "hello from A\n");

    // Removing it on A while B's container uses it is refused; once that ends, it goes.
    let refused = a.docker.fails(&["volume", "rm", "web"]);
    assert!(refused.contains(&cluster.node(1).to_string()), "{refused}");
    assert_eq!(datasets_named(&cluster, "web").len(), 1, "removed while in use on node B");
    b.ok(&["rm", "--force", "holder"]);
    a.ok(&["volume", "rm", "web"]);
    assert!(datasets_named(&cluster, "web").is_empty(), "the dataset is still there");
    let listed = a.ok(&["volume", "ls", "--quiet"]);
    assert!(!listed.lines().any(|l| l == "web"), "{listed}");
}

#[test]
fn a_mesos_task_and_a_docker_container_use_one_volume_one_after_the_other() {
    let cluster = start_cluster();
    let b = DockerNode::start(&cluster, 1, unique_plugin_name("flocker"));
    // Node A runs Mesos tasks: the isolator's core, as the Mesos agent's module calls it.
    let parameters = cluster.isolator_parameters(0).to_string();
    let mesos = Isolator::new(Parameters::parse(&parameters).unwrap()).unwrap();
    let link = cluster.certificates.root().join("mesos-task").join("shared");
    let task = |n: u32| ContainerId { value: format!("task-{n}"), parent: None };
    let prepare = |container: &ContainerId| {
        mesos
            .prepare(container, &command_task(&[("shared", link.to_str().unwrap())]))
            .map_err(|e| flocker_isolator_core::control::error_chain(&e))
    };

    // A Mesos task on A writes through its link.
    let first = task(1);
    assert!(prepare(&first).unwrap().is_none(), "a link was expected");
    fs::write(link.join("from-mesos.txt"), "written by a Mesos task\n").unwrap();
    // While it runs, a Docker container on B is refused, naming node A.
    let refused = b.refused("shared:/data", "true");
    assert!(refused.contains(&cluster.node(0).to_string()), "{refused}");
    mesos.cleanup(&first).unwrap();

    // A Docker container on B reads it, and writes.
    let read = b.run(
        "shared:/data",
        "cat /data/from-mesos.txt && echo written by a Docker container > /data/from-docker.txt",
    );
    assert_eq!(read, "written by a Mesos task\n");

    // While a container on B holds it, the Mesos task on A is refused, naming node B.
    b.hold("shared:/data", "holder");
    let refused = prepare(&task(2)).unwrap_err();
    assert!(refused.contains(&cluster.node(1).to_string()), "{refused}");
    mesos.cleanup(&task(2)).unwrap();
    b.ok(&["rm", "--force", "holder"]);

    // The next Mesos task on A sees what the container wrote.
    let third = task(3);
    assert!(prepare(&third).unwrap().is_none(), "a link was expected");
    let written = fs::read_to_string(link.join("from-docker.txt")).unwrap();
    assert_eq!(written, "written by a Docker container\n");
    mesos.cleanup(&third).unwrap();
    assert_eq!(datasets_named(&cluster, "shared").len(), 1);
    assert!(!leased(&cluster), "a lease outlived the last task");
}
