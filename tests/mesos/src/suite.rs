//! A whole deployment for one scenario: a control service and dataset agents on loop devices
//! (the test kit's [`LocalCluster`]), a Mesos node per dataset agent loading our module with
//! that node's certificate, and a framework subscribed to each node's master. Tasks leave what
//! they saw in files under [`Suite::scratch`]: in local mode their output is not in a sandbox.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flocker_api::{Dataset, Lease};
use flocker_testkit::{BackendKind, LocalCluster, require_root};
use serde_json::Value;

use crate::{Framework, Launcher, MesosNode, Runtime, Status, Task};

/// Long enough for a cold prepare on a loaded CI machine, short enough to fail a hung test.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Suite {
    /// Framework `i` is subscribed to node `i`'s master. Dropped first.
    pub frameworks: Vec<Framework>,
    pub nodes: Vec<MesosNode>,
    pub cluster: LocalCluster,
    pub runtime: Runtime,
    /// Where tasks write what they saw, and where volume links go.
    pub scratch: tempfile::TempDir,
}

impl Suite {
    /// `nodes` Mesos nodes on a cluster of as many dataset agents sharing storage.
    pub fn start(nodes: usize, launcher: Launcher) -> Self {
        require_root();
        let runtime = Runtime::from_env();
        let cluster = LocalCluster::start(BackendKind::Loopback, nodes, &[]);
        let nodes: Vec<MesosNode> = (0..nodes)
            .map(|i| MesosNode::start(&runtime, &module_parameters(&cluster, i), launcher.clone()))
            .collect();
        let frameworks = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                Framework::subscribe(node.master(), &format!("flocker-tests-node-{i}"))
                    .unwrap_or_else(|e| panic!("node {i}: {e}"))
            })
            .collect();
        let scratch = tempfile::Builder::new()
            .prefix("flocker-mesos-scratch-")
            .tempdir()
            .unwrap_or_else(|e| panic!("{e}"));
        Self { frameworks, nodes, cluster, runtime, scratch }
    }

    /// A fresh volume name, unique to this test.
    pub fn volume(&self, name: &str) -> String {
        format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    }

    /// Where node `index`'s tasks want `volume` (`FLOCKER_CONTAINER_VOLUME_PATH`). On real
    /// machines every node would use the same path; these nodes share one host, so each has
    /// its own directory for the links.
    pub fn path_on(&self, index: usize, volume: &str) -> String {
        self.scratch.path().join(format!("node-{index}")).join(volume).display().to_string()
    }

    /// The file a task writes what it saw into (`> $(suite.seen("x"))`).
    pub fn seen_path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(format!("seen-{name}"))
    }

    pub fn seen(&self, name: &str) -> String {
        let path = self.seen_path(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the task wrote nothing to {}: {e}", path.display()))
    }

    /// A file a waiting task polls for; [`Suite::go`] creates it.
    pub fn go_path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(format!("go-{name}"))
    }

    pub fn go(&self, name: &str) {
        let path = self.go_path(name);
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Launches `task` on node `index` and waits for its terminal update.
    pub fn run_to_end(&self, index: usize, task: &Task) -> Status {
        let framework = &self.frameworks[index];
        framework.launch(task).unwrap_or_else(|e| self.fail(&e));
        framework.wait_for_end(&task.id, TASK_TIMEOUT).unwrap_or_else(|e| self.fail(&e))
    }

    /// Launches `task` on node `index` and waits until it runs.
    pub fn run_until_running(&self, index: usize, task: &Task) -> Status {
        let framework = &self.frameworks[index];
        framework.launch(task).unwrap_or_else(|e| self.fail(&e));
        framework
            .wait_for_state(&task.id, &["TASK_RUNNING"], TASK_TIMEOUT)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// `kill -9` of node `index`'s `mesos-local` and a start on the same work directory; the
    /// framework subscribes again and asks until the master knows `task_id` again (the master
    /// drops reconciliation until the agent has re-registered). Returns that task's state.
    pub fn restart_node(&mut self, index: usize, task_id: &str) -> Status {
        let agent_id = self.frameworks[index].statuses(task_id)[0].agent_id.clone();
        let agent_id = agent_id.unwrap_or_else(|| self.fail("an update without an agent id"));
        self.nodes[index].restart();
        let framework = &mut self.frameworks[index];
        framework.resubscribe().unwrap_or_else(|e| panic!("re-subscribe: {e}"));
        let asked = Instant::now();
        let deadline = asked + Duration::from_secs(60);
        while Instant::now() < deadline {
            let framework = &self.frameworks[index];
            framework.reconcile(task_id, &agent_id).unwrap_or_else(|e| self.fail(&e));
            std::thread::sleep(Duration::from_millis(500));
            let fresh = framework.statuses(task_id).into_iter().rfind(|s| s.received > asked);
            if let Some(status) =
                fresh.filter(|s| s.state != "TASK_LOST" && s.state != "TASK_UNREACHABLE")
            {
                return status;
            }
        }
        self.fail(&format!("the master did not know {task_id} again within 60 s"))
    }

    /// Asserts the task ended as `state`, with every log in the message if not.
    pub fn assert_state(&self, status: &Status, state: &str) {
        if status.state != state {
            self.fail(&format!("{} ended {}, not {state}", status.task_id, status.describe()));
        }
    }

    /// The dataset the control service has for volume `flocker_id`.
    pub fn dataset(&self, flocker_id: &str) -> Option<Dataset> {
        let (datasets, _) = self.cluster.client.list_datasets().unwrap_or_else(|e| panic!("{e}"));
        datasets
            .into_iter()
            .find(|d| !d.deleted && d.metadata.get("name").map(String::as_str) == Some(flocker_id))
    }

    pub fn leases(&self, dataset: &Dataset) -> Vec<Lease> {
        let leases = self.cluster.client.list_leases().unwrap_or_else(|e| panic!("{e}"));
        leases.into_iter().filter(|l| l.dataset_id == dataset.dataset_id).collect()
    }

    /// Waits until nothing holds a lease on the dataset.
    pub fn wait_lease_released(&self, dataset: &Dataset) {
        self.wait_until("the lease to be released", Duration::from_secs(30), || {
            self.leases(dataset).is_empty()
        });
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            if Instant::now() > deadline {
                self.fail(&format!("waited {timeout:?} for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test with every process's log.
    pub fn fail(&self, problem: &str) -> ! {
        let mut logs = self.cluster.logs();
        for (i, node) in self.nodes.iter().enumerate() {
            logs += &format!("--- mesos-local of node {i}\n{}", tail(&node.log(), 300));
        }
        panic!("{problem}\n{logs}");
    }
}

/// The module's parameters on node `index`: the test kit's, with the defaults a user gets for
/// how long to wait for a volume.
pub fn module_parameters(cluster: &LocalCluster, index: usize) -> Value {
    let mut parameters = cluster.isolator_parameters(index);
    if let Some(object) = parameters.as_object_mut() {
        object.remove("lease_wait_seconds");
        object.remove("mount_timeout_seconds");
    }
    parameters
}

/// The last `lines` lines of a log.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The container ids our module logged a prepare for (`container <id>: N volume(s) ready`).
pub fn prepared_containers(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("container ")?;
            let (id, rest) = rest.split_once(": ")?;
            rest.contains("volume(s) ready").then(|| id.to_owned())
        })
        .collect()
}
