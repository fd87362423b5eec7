//! The Mesos agent's side, played by the demo: the isolator library loaded with `dlopen` as the
//! agent loads the libraries of `modules.json`, one isolator per node made with the module's
//! parameters, and the calls the agent makes around a task: `prepare` before it starts,
//! `cleanup` after it ended.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use flocker_isolator_loader::{CallError, Isolator, Library};
use serde_json::{Value, json};

use crate::demo::Node;
use crate::demo::backend::Backend;
use crate::demo::certificates::Certificates;
use crate::demo::container::Container;
use crate::demo::workdir::WorkDir;

/// The isolators' `mount_timeout_seconds`: how long a prepare waits for the volume.
const MOUNT_TIMEOUT_SECONDS: u64 = 30;
/// How long the demo waits for an isolator's answer: a little longer than it may take.
const CALL_WAIT: Duration = Duration::from_secs(MOUNT_TIMEOUT_SECONDS + 15);

/// Loads the library and routes its log records into this process's logger. It is never
/// unloaded (as in a Mesos agent, an isolator's threads may outlive their handle by a moment),
/// so the handle lives as long as the process.
pub fn load(path: &Path) -> anyhow::Result<&'static Library> {
    let library = Library::open(path)?;
    library.forward_logs(library_log_level());
    Ok(Box::leak(Box::new(library)))
}

/// How much of the library's log to forward. A refused prepare is part of the story, and the
/// library logs it as a warning ("…; undoing what was prepared"), which the default filter
/// (`warn`) would print as if something had gone wrong: so without `RUST_LOG` only errors are
/// forwarded, and the demo says what the refusal means itself. With `RUST_LOG`, whatever it
/// lets through (the records arrive under the target `isolator`).
fn library_log_level() -> log::Level {
    match std::env::var_os("RUST_LOG") {
        Some(_) => log::max_level().to_level().unwrap_or(log::Level::Error),
        None => log::Level::Error,
    }
}

/// The module's parameters on a node, as its `modules.json` would give them.
pub fn module_parameters(
    work: &WorkDir,
    certificates: &Certificates,
    backend: Backend,
    rest_port: u16,
    node: Node,
) -> Value {
    json!({
        "control_service_host": "127.0.0.1",
        "control_service_port": rest_port.to_string(),
        "cluster_certificate": certificates.cluster_certificate,
        "client_certificate": certificates.plugin.certificate,
        "client_key": certificates.plugin.key,
        "node_certificate": work.node(node).join("node.crt"),
        "state_dir": work.isolator_state(node),
        // The node's own /tmp: on a host the default, /tmp, allows the app's /tmp/data.
        "host_path_roots": work.host_path_root(node),
        "mount_check": backend.mount_check(),
        "default_maximum_size": "64MiB",
        "mount_timeout_seconds": MOUNT_TIMEOUT_SECONDS.to_string(),
        // The demo calls cleanup before task 2 comes back, so it shows the refusal at once; a
        // real agent reports a task's end before its cleanup, and waits 10 s by default.
        "lease_wait_seconds": "0",
    })
}

/// A node's Mesos agent, as far as the isolator sees it.
pub struct MesosAgent {
    pub node: Node,
    isolator: Isolator<'static>,
}

impl MesosAgent {
    /// `flocker_isolator_new` with the node's module parameters.
    pub fn create(
        library: &'static Library,
        node: Node,
        parameters: &Value,
    ) -> anyhow::Result<Self> {
        let isolator = library
            .isolator(&parameters.to_string(), CALL_WAIT)
            .with_context(|| format!("the isolator of {node} could not be created"))?;
        Ok(Self { node, isolator })
    }

    /// Makes the container's sandbox, as Mesos does before it calls `prepare`, then calls it:
    /// the launch info (JSON) if any, or the isolator's refusal.
    pub fn prepare(&self, container: &Container) -> Result<Option<String>, CallError> {
        if let Err(error) = std::fs::create_dir_all(container.sandbox()) {
            log::warn!("cannot make the sandbox {}: {error}", container.sandbox());
        }
        self.isolator.prepare(&container.id_json(), &container.config.to_string())
    }

    /// `cleanup`, after the container's task ended (or its launch failed).
    pub fn cleanup(&self, container: &Container) -> anyhow::Result<()> {
        self.isolator
            .cleanup(&container.id_json())
            .with_context(|| format!("cleanup on {} failed", self.node))
    }
}
