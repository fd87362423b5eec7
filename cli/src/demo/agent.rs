//! A `flocker-dataset-agent` for one node: its `agent.yml` written in Flocker's format, then
//! the process. Both agents share `root_path`, as hosts share storage, and each has its own
//! `compute_instance_id`, `mount_root` and a random era (one machine has one boot id, and
//! the era tells nodes apart).

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

#[derive(Serialize)]
struct Dataset {
    backend: &'static str,
    root_path: PathBuf,
    compute_instance_id: String,
    mount_root: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_mode: Option<&'static str>,
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
        dataset: Dataset {
            backend: backend.agent_backend(),
            root_path: work.shared(),
            compute_instance_id: format!("node-{}", node.lowercase()),
            mount_root: work.mount_root(node),
            mount_mode: backend.mount_mode(),
        },
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
