//! The demo's temporary directory and where everything goes in it:
//!
//! ```text
//! <work>/ca/        cluster.crt/.key and the API users' certificates (plugin, demo)
//! <work>/control/   control-service.crt/.key, cluster.crt, data/ (the store), control.log
//! <work>/shared/    the volume store both agents share, as hosts share a SAN or NFS
//!                   (not with the btrfs backend: each node has a pool of its own)
//! <work>/node-a/    agent.yml, node.crt/.key, agent.log, flocker/ (mount points),
//!                   isolator-state/, sandbox/, tmp/data (where the task wants its volume);
//!                   btrfs backend: pool.img (the pool's sparse file), pool/ (where it is
//!                   mounted)
//! <work>/node-b/    the same for node B
//! ```
//!
//! Dropped without [`WorkDir::finish`] (a panic), it still lets go of mounts and loop devices
//! under it and removes itself.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::demo::{Node, machine};

pub struct WorkDir {
    /// `None` once finished.
    directory: Option<tempfile::TempDir>,
    /// Canonical, as `/proc/self/mountinfo` shows paths.
    path: PathBuf,
    keep: bool,
}

/// How [`WorkDir::finish`] left the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Removed,
    Kept,
}

impl WorkDir {
    /// A new `flocker-demo-*` directory in the system's temporary directory, with its layout
    /// (`shared/` only if the nodes `share` a store).
    pub fn create(keep: bool, share: bool) -> anyhow::Result<Self> {
        let directory = tempfile::Builder::new()
            .prefix("flocker-demo-")
            .tempdir()
            .context("cannot make a temporary directory")?;
        let path = directory.path().canonicalize().context("cannot resolve the temporary path")?;
        let work = Self { directory: Some(directory), path, keep };
        for sub in [work.ca(), work.control()] {
            make_directory(&sub)?;
        }
        if share {
            make_directory(&work.shared())?;
        }
        for node in Node::BOTH {
            make_directory(&work.node(node))?;
            make_directory(&work.sandbox(node))?;
            make_directory(&work.host_path_root(node))?;
        }
        Ok(work)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` for people: under the work directory, as `$WORK/…` (the introduction says what
    /// `$WORK` is), so that notes stay short.
    pub fn show(&self, path: &Path) -> String {
        match path.strip_prefix(&self.path) {
            Ok(inside) => format!("$WORK/{}", inside.display()),
            Err(_) => path.display().to_string(),
        }
    }

    /// Whether [`WorkDir::finish`] will keep it.
    pub fn keeps(&self) -> bool {
        self.keep
    }

    pub fn ca(&self) -> PathBuf {
        self.path.join("ca")
    }

    /// The control service's certificates directory.
    pub fn control(&self) -> PathBuf {
        self.path.join("control")
    }

    pub fn control_data(&self) -> PathBuf {
        self.control().join("data")
    }

    pub fn control_log(&self) -> PathBuf {
        self.control().join("control.log")
    }

    /// The `root_path` both agents share.
    pub fn shared(&self) -> PathBuf {
        self.path.join("shared")
    }

    /// Where the node's btrfs pool is mounted (the agent makes it).
    pub fn pool(&self, node: Node) -> PathBuf {
        self.node(node).join("pool")
    }

    /// The sparse file holding the node's btrfs pool, on a loop device (the agent makes it).
    pub fn pool_file(&self, node: Node) -> PathBuf {
        self.node(node).join("pool.img")
    }

    /// A node's directory: its `agent.yml` and certificates, as `/etc/flocker` on a host.
    pub fn node(&self, node: Node) -> PathBuf {
        self.path.join(format!("node-{}", node.lowercase()))
    }

    pub fn agent_log(&self, node: Node) -> PathBuf {
        self.node(node).join("agent.log")
    }

    /// The tasks' standard error on a node.
    pub fn task_log(&self, node: Node) -> PathBuf {
        self.node(node).join("tasks.log")
    }

    /// Where the node's agent mounts volumes (`/flocker` on a host).
    pub fn mount_root(&self, node: Node) -> PathBuf {
        self.node(node).join("flocker")
    }

    /// The isolator's `state_dir` on a node (`/var/lib/mesos/flocker` on a host).
    pub fn isolator_state(&self, node: Node) -> PathBuf {
        self.node(node).join("isolator-state")
    }

    /// Where the node's Mesos agent keeps task sandboxes.
    pub fn sandbox(&self, node: Node) -> PathBuf {
        self.node(node).join("sandbox")
    }

    /// Where the task wants its volume: the app's `/tmp/data`, one per node here since both
    /// nodes are one machine.
    pub fn task_path(&self, node: Node) -> PathBuf {
        self.host_path_root(node).join("data")
    }

    /// The node's `host_path_roots`: its `/tmp`, the module's default on a host.
    pub fn host_path_root(&self, node: Node) -> PathBuf {
        self.node(node).join("tmp")
    }

    /// Lets go of any mount or loop device still under the directory, then removes it (or
    /// keeps it, as asked).
    pub fn finish(mut self) -> anyhow::Result<Finished> {
        machine::release(&self.path);
        let Some(directory) = self.directory.take() else { return Ok(Finished::Removed) };
        if self.keep {
            let _kept = directory.keep();
            return Ok(Finished::Kept);
        }
        directory.close().with_context(|| format!("cannot remove {}", self.path.display()))?;
        Ok(Finished::Removed)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(directory) = self.directory.take() {
            machine::release(&self.path);
            if self.keep {
                let _kept = directory.keep();
            } // else the TempDir removes itself as it drops
        }
    }
}

fn make_directory(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}
