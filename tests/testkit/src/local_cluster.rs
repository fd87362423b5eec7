//! A whole cluster on this machine: fresh certificates, a control service, and dataset agents
//! whose backends share one `root_path`, as nodes share storage (or, to test nodes that do not,
//! each with its own). Everything it mounted or attached is let go when it is dropped, even
//! after a failed assertion.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flocker_api::{Client, CreateDataset, Dataset, DatasetId, DatasetState, NodeUuid};

use crate::netns::NetworkNamespace;
use crate::{
    AgentProcess, BackendKind, ClusterCertificates, ControlProcess, agent_binary, control_binary,
    release_mounts_and_loop_devices, start_instances,
};

/// The size of the test volumes: the smallest the API allows.
pub const SMALL: u64 = 64 * 1024 * 1024;

pub struct LocalCluster {
    /// The control service; with [`LocalCluster::start_with_instances`], its first instance.
    pub control: ControlProcess,
    /// With [`LocalCluster::start_with_instances`], the control service's other instances, in
    /// order after `control`; none otherwise.
    pub other_instances: Vec<ControlProcess>,
    /// A client of every instance of the control service, failing over between them.
    pub client: Client,
    /// Node `i` is `agents[i]`, compute instance `node-<i>`.
    pub agents: Vec<AgentProcess>,
    pub backend: BackendKind,
    /// The `root_path` all agents share; with [`Storage::PerNode`], the directory holding each
    /// node's own (see [`LocalCluster::root_path`]).
    pub shared_root: PathBuf,
    /// What the agents keep their volumes on.
    pub storage: Storage,
    /// With `start_in_namespaces`, node `i`'s network namespace; none otherwise.
    pub namespaces: Vec<NetworkNamespace>,
    /// Dropped last: every file of the cluster lives in it.
    pub certificates: ClusterCertificates,
}

/// Whether the nodes' backends can see each other's volumes, and on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Shared,
    /// Shared, on a file system that cannot rename without replacing (`RENAME_NOREPLACE`), as
    /// NFS cannot: a `bindfs` mount (FUSE) of a local directory. Needs root and `bindfs`.
    SharedWithoutNoReplace,
    /// Each node has a `root_path` of its own: a volume cannot move between them.
    PerNode,
}

impl LocalCluster {
    /// Starts a control service (with `control_options`) and `nodes` agents, and waits until
    /// every agent has said hello.
    pub fn start(backend: BackendKind, nodes: usize, control_options: &[&str]) -> Self {
        Self::start_with(backend, nodes, control_options, &[], false, Storage::Shared, None)
    }

    /// The same with a control service of several instances, one on each of `ips` (loopback
    /// addresses; the same ports), all with `control_options`: a shared `--store zk://…`, as
    /// on Mesos masters. The agents (in `agent.yml`), [`LocalCluster::client`] and
    /// [`LocalCluster::isolator_parameters`] are given every instance, in this order.
    pub fn start_with_instances(
        backend: BackendKind,
        nodes: usize,
        ips: &[&str],
        control_options: &[&str],
    ) -> Self {
        assert!(!ips.is_empty(), "a control service needs at least one instance");
        Self::start_with(backend, nodes, control_options, ips, false, Storage::Shared, None)
    }

    /// The same, each node in a network namespace of its own, reaching the control service over
    /// a veth link as a separate host would (needs root).
    pub fn start_in_namespaces(backend: BackendKind, nodes: usize) -> Self {
        Self::start_with(backend, nodes, &[], &[], true, Storage::Shared, None)
    }

    /// The same as [`LocalCluster::start`], on the storage given.
    pub fn start_on_storage(backend: BackendKind, nodes: usize, storage: Storage) -> Self {
        Self::start_with(backend, nodes, &[], &[], false, storage, None)
    }

    /// The same as [`LocalCluster::start`] with the btrfs backend ([`BackendKind::Btrfs`]),
    /// each node's pool a sparse file of `pool_size` bytes instead of
    /// [`crate::BTRFS_POOL_SIZE`]: room for larger volumes.
    pub fn start_btrfs(nodes: usize, pool_size: u64, control_options: &[&str]) -> Self {
        let (backend, storage) = (BackendKind::Btrfs, Storage::Shared);
        Self::start_with(backend, nodes, control_options, &[], false, storage, Some(pool_size))
    }

    /// With no `instance_ips`, one control service instance on 127.0.0.1 (on every address if
    /// `separate`); otherwise one on each. `btrfs_pool_size`, with the btrfs backend: each
    /// node's pool file's size, if not the default.
    fn start_with(
        backend: BackendKind,
        nodes: usize,
        control_options: &[&str],
        instance_ips: &[&str],
        separate: bool,
        storage: Storage,
        btrfs_pool_size: Option<u64>,
    ) -> Self {
        let certificates = ClusterCertificates::new();
        let mut instances = if instance_ips.is_empty() {
            let data = certificates.root().join("control-data");
            let anywhere = if separate { "0.0.0.0:0" } else { "127.0.0.1:0" };
            let anywhere = anywhere.parse().unwrap_or_else(|e| panic!("{e}"));
            let control = ControlProcess::start_on(
                &control_binary(),
                &certificates,
                &data,
                (anywhere, anywhere),
                control_options,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            vec![control]
        } else {
            start_instances(&control_binary(), &certificates, instance_ips, control_options)
        };
        let control = instances.remove(0);
        let other_instances = instances;
        let hosts = instance_hosts(&control, &other_instances);
        let client = if other_instances.is_empty() {
            certificates.client(control.rest, "tests")
        } else {
            certificates.client_of_instances(&hosts.join(","), control.rest.port(), "tests")
        };
        let shared_root = certificates.root().join("shared");
        if storage == Storage::SharedWithoutNoReplace {
            mount_bindfs(&certificates.root().join("shared-below"), &shared_root);
        }
        let tag: String = uuid::Uuid::new_v4().simple().to_string()[..4].to_owned();
        let subnet = 100 + (uuid::Uuid::new_v4().as_bytes()[0] % 150);
        let namespaces: Vec<NetworkNamespace> = if separate {
            (0..nodes)
                .map(|i| {
                    NetworkNamespace::create(&tag, subnet, i as u8)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect()
        } else {
            Vec::new()
        };
        let agents = (0..nodes)
            .map(|i| {
                let root_path = match storage {
                    Storage::PerNode => shared_root.join(format!("node-{i}")),
                    _ => shared_root.clone(),
                };
                let namespace = namespaces.get(i);
                let host = match namespace {
                    Some(namespace) => namespace.host_address.to_string(),
                    None if hosts.len() == 1 => hosts[0].clone(),
                    None => format!("[{}]", hosts.join(", ")),
                };
                let (name, netns) = (format!("node-{i}"), namespace.map(NetworkNamespace::path));
                let control = (host.as_str(), control.agent.port());
                let started = match btrfs_pool_size {
                    Some(size) => {
                        assert_eq!(backend, BackendKind::Btrfs, "a pool size is for btrfs");
                        AgentProcess::start_btrfs_reaching(
                            &agent_binary(),
                            &certificates,
                            &name,
                            control,
                            netns.as_deref(),
                            &root_path,
                            size,
                        )
                    }
                    None => AgentProcess::start_reaching(
                        &agent_binary(),
                        &certificates,
                        &name,
                        control,
                        netns.as_deref(),
                        backend,
                        &root_path,
                    ),
                };
                started.unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let cluster = Self {
            control,
            other_instances,
            client,
            agents,
            backend,
            shared_root,
            storage,
            namespaces,
            certificates,
        };
        cluster.wait_for("every agent to say hello", Duration::from_secs(30), || {
            cluster.client.list_nodes().is_ok_and(|listed| listed.len() == nodes)
        });
        cluster
    }

    /// Kills the control service (`kill -9`); the agents lose it.
    pub fn kill_control(&mut self) {
        self.control.kill();
    }

    /// Starts the control service again on the same ports and data.
    pub fn restart_control(&mut self) {
        let (ports, data) =
            ((self.control.rest, self.control.agent), self.control.data_path.clone());
        self.control.kill();
        self.control =
            ControlProcess::start_on(&control_binary(), &self.certificates, &data, ports, &[])
                .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Instance `i` of the control service: 0 is [`LocalCluster::control`], the others
    /// [`LocalCluster::other_instances`].
    pub fn control_instance(&self, i: usize) -> &ControlProcess {
        match i {
            0 => &self.control,
            i => &self.other_instances[i - 1],
        }
    }

    /// `kill -9` of instance `i` of the control service; the agents go on with the others.
    pub fn kill_control_instance(&mut self, i: usize) {
        self.control_instance_mut(i).kill();
    }

    /// Starts instance `i` of the control service again on its address, ports and data, with
    /// `control_options` (a shared store's `--store` again).
    pub fn restart_control_instance(&mut self, i: usize, control_options: &[&str]) {
        let instance = self.control_instance(i);
        let (ports, data) = ((instance.rest, instance.agent), instance.data_path.clone());
        self.kill_control_instance(i);
        let restarted = ControlProcess::start_on(
            &control_binary(),
            &self.certificates,
            &data,
            ports,
            control_options,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        *self.control_instance_mut(i) = restarted;
    }

    fn control_instance_mut(&mut self, i: usize) -> &mut ControlProcess {
        match i {
            0 => &mut self.control,
            i => &mut self.other_instances[i - 1],
        }
    }

    /// The control service's hosts as its clients take them: one, or every instance's,
    /// comma-separated (for nodes in namespaces, see [`LocalCluster::isolator_parameters`]).
    pub fn control_hosts(&self) -> String {
        instance_hosts(&self.control, &self.other_instances).join(",")
    }

    pub fn node(&self, index: usize) -> NodeUuid {
        self.agents[index].node.uuid
    }

    /// A new 64 MiB dataset whose primary is node `index`.
    pub fn create_dataset(&self, index: usize) -> Dataset {
        self.create_dataset_with_id(index, None).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn create_dataset_with_id(
        &self,
        index: usize,
        id: Option<DatasetId>,
    ) -> Result<Dataset, flocker_api::ClientError> {
        let request = CreateDataset {
            primary: self.node(index),
            dataset_id: id,
            maximum_size: Some(SMALL),
            metadata: [("name".to_owned(), "test".to_owned())].into(),
        };
        self.client.create_dataset(&request, None)
    }

    /// The entries of `/v1/state/datasets` for `dataset`.
    pub fn states(&self, dataset: &DatasetId) -> Vec<DatasetState> {
        let states = self.client.dataset_states().unwrap_or_else(|e| panic!("{e}"));
        states.into_iter().filter(|s| s.dataset_id == *dataset).collect()
    }

    /// Where `/v1/state/datasets` says node `index` has `dataset` mounted.
    pub fn mounted_path(&self, dataset: &DatasetId, index: usize) -> Option<PathBuf> {
        let node = self.node(index);
        self.states(dataset)
            .into_iter()
            .find(|s| s.primary == Some(node))
            .and_then(|s| s.path.map(PathBuf::from))
    }

    /// Waits until node `index` reports `dataset` mounted; its path.
    pub fn wait_mounted(&self, dataset: &DatasetId, index: usize) -> PathBuf {
        let mut path = None;
        self.wait_for(
            &format!("dataset {dataset} to be mounted on node-{index}"),
            Duration::from_secs(60),
            || {
                path = self.mounted_path(dataset, index);
                path.is_some()
            },
        );
        path.unwrap_or_default()
    }

    /// Polls `condition` every 10 ms; fails the test with every log if it is not met in time.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `root_path` of node `index`.
    pub fn root_path(&self, index: usize) -> PathBuf {
        match self.storage {
            Storage::PerNode => self.shared_root.join(&self.agents[index].name),
            _ => self.shared_root.clone(),
        }
    }

    /// The volume of `dataset` attached to node `index`, or (None) unattached, in the shared
    /// `root_path`.
    pub fn volume_path(&self, dataset: &DatasetId, index: Option<usize>) -> PathBuf {
        let instance = index.map(|i| self.agents[i].name.clone());
        // With storage of its own (Storage::PerNode), a node's volumes are under its root_path.
        let root = index.map_or_else(|| self.shared_root.clone(), |i| self.root_path(i));
        self.backend.volume_path(&root, instance.as_deref(), &dataset.to_string(), SMALL)
    }

    /// The isolator's module parameters on node `index`, as `modules.json` would give them:
    /// the control service's address, the `plugin` API user, the node's own `node.crt`, and a
    /// state directory of the node's.
    pub fn isolator_parameters(&self, index: usize) -> serde_json::Value {
        let (certificate, key) = self.certificates.user("plugin");
        let agent = &self.agents[index];
        serde_json::json!({
            "control_service_host": self.namespaces.get(index).map_or_else(|| self.control_hosts(), |n| n.host_address.to_string()),
            "control_service_port": self.control.rest.port().to_string(),
            "cluster_certificate": self.certificates.cluster_certificate(),
            "client_certificate": certificate,
            "client_key": key,
            "node_certificate": agent.directory.join("node.crt"),
            "state_dir": agent.directory.join("isolator-state"),
            "mount_timeout_seconds": "30",
            // A refusal after 2 s rather than the default 10: these tests call cleanup before
            // the next prepare, as a Mesos agent does not quite (see the real-Mesos suite).
            "lease_wait_seconds": "2",
            "default_maximum_size": "64MiB",
            "mount_check": if self.backend == BackendKind::DirectorySymlink { "directory" } else { "mountpoint" },
        })
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        if self.other_instances.is_empty() {
            logs += &format!("--- control service\n{}", self.control.log());
        } else {
            for instance in std::iter::once(&self.control).chain(&self.other_instances) {
                logs += &format!("--- control service at {}\n{}", instance.rest, instance.log());
            }
        }
        for agent in &self.agents {
            logs += &format!("--- agent {} ({})\n{}", agent.name, agent.node.uuid, agent.log());
        }
        logs
    }
}

/// The address of each instance, as a host: 127.0.0.1 for one listening on every address.
fn instance_hosts(control: &ControlProcess, others: &[ControlProcess]) -> Vec<String> {
    let host = |instance: &ControlProcess| match instance.rest.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    std::iter::once(control).chain(others).map(host).collect()
}

/// Shows `below` at `at` through bindfs, which answers `RENAME_NOREPLACE` with EINVAL, as NFS
/// does. [`release_mounts_and_loop_devices`] unmounts it with the rest.
fn mount_bindfs(below: &std::path::Path, at: &std::path::Path) {
    for directory in [below, at] {
        std::fs::create_dir_all(directory)
            .unwrap_or_else(|e| panic!("{}: {e}", directory.display()));
    }
    let mounted = std::process::Command::new("bindfs")
        .arg(below)
        .arg(at)
        .status()
        .unwrap_or_else(|e| panic!("cannot run bindfs (Debian's bindfs package): {e}"));
    assert!(mounted.success(), "bindfs {} {} failed: {mounted}", below.display(), at.display());
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.kill();
        }
        release_mounts_and_loop_devices(self.certificates.root());
    }
}

impl LocalCluster {
    /// The entries of `/v1/state/problems` for `dataset`: why its node's agent leaves it as it
    /// is. Fails the test if the service lacks the endpoint.
    pub fn problems(&self, dataset: &DatasetId) -> Vec<flocker_api::DatasetProblem> {
        let problems = self.client.dataset_problems().unwrap_or_else(|e| panic!("{e}"));
        let problems = problems.expect("the control service serves /v1/state/problems");
        problems.into_iter().filter(|p| p.dataset_id == *dataset).collect()
    }

    /// Where `dataset`'s volume lies unattached in node `index`'s own `root_path` (with
    /// [`Storage::PerNode`], each node has one).
    pub fn volume_path_in(&self, dataset: &DatasetId, index: usize) -> PathBuf {
        let root = self.root_path(index);
        self.backend.volume_path(&root, None, &dataset.to_string(), SMALL)
    }
}
