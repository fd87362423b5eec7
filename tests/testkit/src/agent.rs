//! `flocker-dataset-agent` as a child process, with its own `agent.yml`, certificates and mount
//! root under the test cluster's directory; several can run on one machine, sharing a
//! `root_path` as nodes share storage.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{ClusterCertificates, NodeCertificate};

/// The built `flocker-dataset-agent` beside the running test (see [`crate::control_binary`]).
pub fn agent_binary() -> PathBuf {
    crate::control::built_binary("flocker-dataset-agent")
}

/// Runs the agent on `agent.yml` in `directory`, which must make it exit (a configuration it
/// refuses); its stderr.
pub fn run_agent_to_exit(directory: &std::path::Path) -> String {
    let output = std::process::Command::new(agent_binary())
        .arg("--agent-config")
        .arg(directory.join("agent.yml"))
        .output()
        .unwrap_or_else(|e| panic!("run the agent: {e}"));
    assert!(!output.status.success(), "the agent started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What an agent stores its volumes in, as `agent.yml`'s `dataset` section says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Loopback,
    /// The directory backend with bind mounts (root).
    Directory,
    /// The directory backend with symbolic links (no root needed).
    DirectorySymlink,
    /// The btrfs backend, each node with a pool of its own: a 512 MiB file
    /// `<root_path>/<instance>/pool.img` on a loop device, mounted at `<root_path>/<instance>/pool`.
    Btrfs,
}

/// The size of each node's btrfs pool file (sparse).
pub const BTRFS_POOL_SIZE: u64 = 512 * 1024 * 1024;

impl BackendKind {
    /// `agent.yml`'s `dataset` section; a btrfs pool file has `pool_size` bytes.
    fn yaml(self, root_path: &Path, instance: &str, mount_root: &Path, pool_size: u64) -> String {
        let (backend, mode) = match self {
            Self::Loopback => ("loopback", ""),
            Self::Directory => ("directory", ", mount_mode: bind"),
            Self::DirectorySymlink => ("directory", ", mount_mode: symlink"),
            Self::Btrfs => {
                let node = root_path.join(instance);
                return format!(
                    "{{backend: btrfs, pool: {}, pool_file: {}, pool_size: {pool_size}, transfer_port: 0, mount_root: {}}}",
                    node.join("pool").display(),
                    node.join("pool.img").display(),
                    mount_root.display()
                );
            }
        };
        format!(
            "{{backend: {backend}, root_path: {}, compute_instance_id: {instance}, mount_root: {}{mode}}}",
            root_path.display(),
            mount_root.display()
        )
    }

    /// The volume file or directory of a dataset, attached to `instance` or (None) to no one.
    /// A btrfs volume is the subvolume in `instance`'s pool, and is never unattached (the path
    /// given for None never exists).
    pub fn volume_path(
        self,
        root_path: &Path,
        instance: Option<&str>,
        dataset: &str,
        size: u64,
    ) -> PathBuf {
        if let (Self::Btrfs, Some(instance)) = (self, instance) {
            let volumes = root_path.join(instance).join("pool").join("volumes");
            return volumes.join(format!("{dataset}_{size}"));
        }
        let prefix = if self == Self::Loopback { "block-" } else { "dataset-" };
        let directory = match instance {
            Some(instance) => root_path.join("attached").join(instance),
            None => root_path.join("unattached"),
        };
        directory.join(format!("{prefix}{dataset}_{size}"))
    }
}

/// A running agent; killed when dropped.
pub struct AgentProcess {
    child: Option<Child>,
    /// The network namespace it runs in, if not the test's.
    pub netns: Option<PathBuf>,
    binary: PathBuf,
    pub name: String,
    pub node: NodeCertificate,
    /// Holds `agent.yml` and the certificates.
    pub directory: PathBuf,
    pub mount_root: PathBuf,
    /// Given to the agent after `--agent-config` at its next (re)start.
    pub extra_args: Vec<String>,
    log: PathBuf,
}

impl AgentProcess {
    /// Writes `<cluster root>/<name>/agent.yml` (control service at `agent_port`, `backend` in
    /// `root_path`, compute instance `name`, a random era) and starts the agent.
    pub fn start(
        binary: &Path,
        certificates: &ClusterCertificates,
        name: &str,
        agent_port: u16,
        backend: BackendKind,
        root_path: &Path,
    ) -> Result<Self, String> {
        Self::start_reaching(
            binary,
            certificates,
            name,
            ("127.0.0.1", agent_port),
            None,
            backend,
            root_path,
        )
    }

    /// The same, reaching the control service at `control` (host, agent port), and run inside
    /// the network namespace `netns` (only that: it mounts where every other process sees it).
    pub fn start_reaching(
        binary: &Path,
        certificates: &ClusterCertificates,
        name: &str,
        control: (&str, u16),
        netns: Option<&Path>,
        backend: BackendKind,
        root_path: &Path,
    ) -> Result<Self, String> {
        let dataset =
            |mount_root: &Path| backend.yaml(root_path, name, mount_root, BTRFS_POOL_SIZE);
        Self::launch(binary, certificates, name, control, netns, &dataset)
    }

    /// [`AgentProcess::start_reaching`] with the btrfs backend ([`BackendKind::Btrfs`]) and a
    /// pool file of `pool_size` bytes (sparse) instead of [`BTRFS_POOL_SIZE`]: room for
    /// larger volumes.
    pub fn start_btrfs_reaching(
        binary: &Path,
        certificates: &ClusterCertificates,
        name: &str,
        control: (&str, u16),
        netns: Option<&Path>,
        root_path: &Path,
        pool_size: u64,
    ) -> Result<Self, String> {
        let dataset =
            |mount_root: &Path| BackendKind::Btrfs.yaml(root_path, name, mount_root, pool_size);
        Self::launch(binary, certificates, name, control, netns, &dataset)
    }

    /// Writes `agent.yml` with the `dataset` section `dataset` makes of the mount root, and
    /// starts the agent.
    fn launch(
        binary: &Path,
        certificates: &ClusterCertificates,
        name: &str,
        (control_host, agent_port): (&str, u16),
        netns: Option<&Path>,
        dataset: &dyn Fn(&Path) -> String,
    ) -> Result<Self, String> {
        let directory = certificates.root().join(name);
        let mount_root = directory.join("flocker");
        std::fs::create_dir_all(&directory).map_err(|e| e.to_string())?;
        let node = certificates.node();
        let copy = |from: &Path, to: &str| {
            std::fs::copy(from, directory.join(to)).map_err(|e| e.to_string())
        };
        copy(&certificates.cluster_certificate(), "cluster.crt")?;
        copy(&node.certificate, "node.crt")?;
        copy(&node.key, "node.key")?;
        let yaml = format!(
            "version: 1\ncontrol-service: {{hostname: {control_host}, port: {agent_port}}}\ndataset: {}\n\
             agent: {{era: {}, max_backoff_seconds: 2}}\n",
            dataset(&mount_root),
            flocker_api::Era::random()
        );
        std::fs::write(directory.join("agent.yml"), yaml).map_err(|e| e.to_string())?;
        let mut agent = Self {
            child: None,
            netns: netns.map(Path::to_owned),
            binary: binary.to_owned(),
            name: name.to_owned(),
            node,
            log: directory.join("agent.log"),
            directory,
            mount_root,
            extra_args: Vec::new(),
        };
        agent.restart()?;
        Ok(agent)
    }

    /// Starts the agent again with the same configuration (after [`AgentProcess::kill`]).
    pub fn restart(&mut self) -> Result<(), String> {
        let log =
            File::options().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let mut command = match &self.netns {
            None => Command::new(&self.binary),
            Some(netns) => {
                let mut nsenter = Command::new("nsenter");
                nsenter.arg(format!("--net={}", netns.display())).arg(&self.binary);
                nsenter
            }
        };
        let child = command
            .arg("--agent-config")
            .arg(self.directory.join("agent.yml"))
            .args(&self.extra_args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the agent with the kernel's boot id as its era, as a real node has it (only one
    /// agent on a machine can), instead of the random era tests give agents.
    pub fn use_boot_era(&mut self) -> Result<(), String> {
        let path = self.directory.join("agent.yml");
        let yaml = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let yaml: String =
            yaml.lines()
                .map(|line| {
                    if line.starts_with("agent:") {
                        "agent: {max_backoff_seconds: 2}"
                    } else {
                        line
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        std::fs::write(&path, yaml + "\n").map_err(|e| e.to_string())?;
        self.kill();
        self.restart()
    }

    /// Restarts the agent serving metrics on a free port of 127.0.0.1 (`metrics_address` in
    /// `agent.yml`); the endpoint's address, from its log.
    pub fn serve_metrics(&mut self) -> Result<std::net::SocketAddr, String> {
        let path = self.directory.join("agent.yml");
        let yaml = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let with_metrics = yaml.replace("agent: {", "agent: {metrics_address: \"127.0.0.1:0\", ");
        if with_metrics == yaml {
            return Err(format!("{} has no agent section", path.display()));
        }
        std::fs::write(&path, with_metrics).map_err(|e| e.to_string())?;
        self.restart_for_metrics()
    }

    /// Restarts the agent, which serves metrics (by its `agent.yml` or [`Self::extra_args`]);
    /// the endpoint's address, from what it logs after the restart.
    pub fn restart_for_metrics(&mut self) -> Result<std::net::SocketAddr, String> {
        self.kill();
        let logged_before = self.log().len();
        self.restart()?;
        crate::metrics::wait_for_metrics_address(|| {
            self.log().get(logged_before..).unwrap_or_default().to_owned()
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where this agent mounts a dataset.
    pub fn mount_point(&self, dataset: &str) -> PathBuf {
        self.mount_root.join(dataset)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
