//! A `flocker-dataset-agent` for one node: its `agent.yml` written in Flocker's format, then
//! the process. Both agents share `root_path`, as hosts share storage, and each has its own
//! `compute_instance_id`, `mount_root` and a random era (one machine has one boot id, and
//! the era tells nodes apart). With the btrfs backend nothing is shared: each has a pool of its
//! own (a sparse file the agent puts on a loop device, formats and mounts) and takes the pushes
//! of the other on a port of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use flocker_api::Era;
use serde::Serialize;

use crate::demo::Node;
use crate::demo::backend::Backend;
use crate::demo::control::child_log_level;
use crate::demo::process::Service;
use crate::demo::workdir::WorkDir;

#[derive(Serialize)]
struct AgentYml {
    version: u32,
    #[serde(rename = "control-service")]
    control_service: ControlService,
    dataset: Dataset,
    agent: AgentSection,
}

#[derive(Serialize)]
struct ControlService {
    hostname: String,
    port: u16,
}

/// The `dataset` section: `root_path` and `compute_instance_id` for the backends on shared
/// storage, `pool` and the rest for btrfs.
#[derive(Serialize)]
struct Dataset {
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compute_instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_port: Option<u16>,
    mount_root: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_mode: Option<&'static str>,
}

/// The size of each node's btrfs pool file: sparse, so it takes only what is written.
pub const POOL_SIZE: u64 = 1024 * 1024 * 1024;

impl Dataset {
    fn of(backend: Backend, work: &WorkDir, node: Node) -> Self {
        let shared = Self {
            backend: backend.agent_backend(),
            root_path: Some(work.shared()),
            compute_instance_id: Some(format!("node-{}", node.lowercase())),
            pool: None,
            pool_file: None,
            pool_size: None,
            transfer_port: None,
            mount_root: work.mount_root(node),
            mount_mode: backend.mount_mode(),
        };
        match backend {
            Backend::Directory | Backend::Loopback => shared,
            Backend::Btrfs => Self {
                root_path: None,
                compute_instance_id: None,
                pool: Some(work.pool(node)),
                pool_file: Some(work.pool_file(node)),
                pool_size: Some(POOL_SIZE),
                // Any free port: the agent tells the control service which in its hello.
                transfer_port: Some(0),
                ..shared
            },
        }
    }
}

#[derive(Serialize)]
struct AgentSection {
    era: Era,
}

/// Writes `<node>/agent.yml` (control service's agent API on 127.0.0.1:`agent_port`) and starts
/// the agent.
pub fn start(
    binary: &Path,
    work: &WorkDir,
    backend: Backend,
    node: Node,
    agent_port: u16,
) -> anyhow::Result<Service> {
    let configuration = work.node(node).join("agent.yml");
    let yml = AgentYml {
        version: 1,
        control_service: ControlService { hostname: "127.0.0.1".to_owned(), port: agent_port },
        dataset: Dataset::of(backend, work, node),
        agent: AgentSection { era: Era::random() },
    };
    let text = serde_yaml_ng::to_string(&yml).context("cannot write agent.yml")?;
    std::fs::write(&configuration, text)
        .with_context(|| format!("cannot write {}", configuration.display()))?;
    let mut command = Command::new(binary);
    command
        .arg("--agent-config")
        .arg(&configuration)
        .env("RUST_LOG", child_log_level())
        .stdout(Stdio::null());
    Service::start(&format!("the agent of {node}"), &mut command, &work.agent_log(node))
}
