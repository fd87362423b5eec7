//! One Mesos node: a `mesos-local` process (a real master and one real agent, Mesos 1.11.0)
//! whose agent loads our module through `modules.json` with the node's own parameters. Two
//! nodes with different node certificates need two processes: all agents of one `mesos-local`
//! share its flags.
//!
//! Dropping it leaves nothing behind: the process, the executors and tasks it started (they
//! outlive a killed agent by design), their cgroups and mounts.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http;
use crate::runtime::{MODULE_NAME, Runtime};

/// How the agent starts a container's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// Plain child processes: no namespaces, so no bind mounts.
    Posix,
    /// Namespaces and a freezer cgroup under a root of the node's own (cgroups v1).
    Linux,
}

pub struct MesosNode {
    pub port: u16,
    /// `MESOS_WORK_DIR`: the master's registry, the agent's sandboxes and checkpoints.
    pub work_dir: PathBuf,
    /// The node's `cgroups_root` under every hierarchy, with [`Launcher::Linux`].
    pub cgroups_root: Option<String>,
    environment: Vec<(String, String)>,
    runtime: Runtime,
    log: PathBuf,
    child: Option<Child>,
    _directory: tempfile::TempDir,
}

impl MesosNode {
    /// Starts `mesos-local` with the module's `parameters` and waits until its agent has
    /// registered with its master.
    pub fn start(runtime: &Runtime, parameters: &Value, launcher: Launcher) -> Self {
        let mut node = Self::spawn(runtime, parameters, launcher, &[]);
        node.wait_registered();
        node
    }

    /// The same agent without our module: `filesystem/posix` alone (the benchmark's baseline).
    pub fn start_without_module(runtime: &Runtime) -> Self {
        let mut node = Self::spawn_with(runtime, None, Launcher::Posix, &[]);
        node.wait_registered();
        node
    }

    /// Starts `mesos-local` and returns at once (for an agent expected not to start).
    pub fn spawn(
        runtime: &Runtime,
        parameters: &Value,
        launcher: Launcher,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::spawn_with(runtime, Some(parameters), launcher, extra)
    }

    fn spawn_with(
        runtime: &Runtime,
        parameters: Option<&Value>,
        launcher: Launcher,
        extra: &[(&str, &str)],
    ) -> Self {
        let directory = tempfile::Builder::new()
            .prefix("flocker-mesos-")
            // Traversable: a task may run as another user, and its sandbox is in here.
            .permissions(std::fs::Permissions::from_mode(0o711))
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary directory: {e}"));
        let work_dir = directory.path().join("work");
        let port = free_port();
        let cgroups_root = (launcher == Launcher::Linux)
            .then(|| format!("flocker-tests-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let mut environment: Vec<(String, String)> = [
            ("MESOS_WORK_DIR", work_dir.display().to_string()),
            ("MESOS_LAUNCHER_DIR", runtime.launcher_dir().display().to_string()),
            ("MESOS_SYSTEMD_ENABLE_SUPPORT", "false".to_owned()),
            ("MESOS_HOSTNAME", "localhost".to_owned()),
            ("MESOS_RESOURCES", "cpus:4;mem:4096;disk:4096;ports:[31000-31100]".to_owned()),
            // Offers come back fast after each launch, and an HTTP executor that reconnects
            // after an agent restart (1.6 s for the default executor) is waited for.
            ("MESOS_ALLOCATION_INTERVAL", "50ms".to_owned()),
            ("MESOS_EXECUTOR_REREGISTRATION_TIMEOUT", "10secs".to_owned()),
            ("MESOS_LOGBUFSECS", "0".to_owned()),
            ("GLOG_logbufsecs", "0".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        match parameters {
            Some(parameters) => {
                let modules = directory.path().join("modules.json");
                write_modules_json(&modules, &runtime.module, parameters);
                environment
                    .push(("MESOS_MODULES".to_owned(), format!("file://{}", modules.display())));
                environment.push((
                    "MESOS_ISOLATION".to_owned(),
                    format!("filesystem/posix,{MODULE_NAME}"),
                ));
            }
            None => environment.push(("MESOS_ISOLATION".to_owned(), "filesystem/posix".to_owned())),
        }
        match &cgroups_root {
            Some(root) => {
                environment.push(("MESOS_LAUNCHER".to_owned(), "linux".to_owned()));
                environment.push(("MESOS_CGROUPS_ROOT".to_owned(), root.clone()));
            }
            None => environment.push(("MESOS_LAUNCHER".to_owned(), "posix".to_owned())),
        }
        environment.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        let mut node = Self {
            port,
            log: directory.path().join("mesos-local.log"),
            work_dir,
            cgroups_root,
            environment,
            runtime: runtime.clone(),
            child: None,
            _directory: directory,
        };
        node.launch();
        node
    }

    fn launch(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        let log_too = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new(self.runtime.mesos_local());
        command
            .arg("--ip=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg("--num_slaves=1")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.environment.iter().map(|(n, v)| (n, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.runtime.mesos_local().display()));
        self.child = Some(child);
    }

    /// The master's address (the framework's side of this node).
    pub fn master(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process's `/metrics/snapshot`: the agent's metrics (ours among them, under
    /// `flocker/`) and, `mesos-local` being one process, the master's.
    pub fn metrics(&self) -> Result<BTreeMap<String, f64>, String> {
        let answer = http::get(self.master(), "/metrics/snapshot")?;
        if answer.status != 200 {
            return Err(format!("/metrics/snapshot: HTTP {}: {}", answer.status, answer.body));
        }
        serde_json::from_str(&answer.body)
            .map_err(|e| format!("/metrics/snapshot is not a JSON map of numbers: {e}"))
    }

    /// Waits until the master counts one active agent.
    pub fn wait_registered(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "mesos-local exited ({status}) before its agent registered:\n{}",
                    self.log()
                );
            }
            let state = http::get(self.master(), "/master/state")
                .ok()
                .and_then(|answer| serde_json::from_str::<Value>(&answer.body).ok());
            if state.is_some_and(|s| s["activated_slaves"].as_f64() == Some(1.0)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent did not register within 60 s:\n{}", self.log());
    }

    /// Waits for the process to exit by itself (an agent that must refuse to start).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `kill -9` of the whole `mesos-local` (master and agent); executors and tasks go on.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `mesos-local` again on the same work directory, port and flags, and waits until
    /// the agent has re-registered.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
        self.wait_registered();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `needle` (glog may lag a little behind the event).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The processes this node started that still run: every process whose working directory
    /// is under the work directory (executors and tasks run in their sandboxes).
    pub fn processes(&self) -> Vec<i32> {
        processes_under(&self.work_dir)
    }
}

impl Drop for MesosNode {
    fn drop(&mut self) {
        self.kill9();
        for _ in 0..50 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            left.into_iter().for_each(kill9);
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(root) = &self.cgroups_root {
            remove_cgroups(root);
        }
        flocker_testkit::release_mounts_and_loop_devices(&self.work_dir);
    }
}

fn write_modules_json(path: &Path, library: &Path, parameters: &Value) {
    let parameters: Vec<Value> = parameters
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            json!({"key": key, "value": value})
        })
        .collect();
    let manifest = json!({
        "libraries": [{
            "file": library,
            "modules": [{"name": MODULE_NAME, "parameters": parameters}],
        }],
    });
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("a free port: {e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

fn processes_under(directory: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.starts_with(directory))
        })
        .collect()
}

/// `kill -9`; a process already gone is what was wanted.
fn kill9(pid: i32) {
    let _ =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}

/// Kills what is left in the node's cgroups and removes them, deepest first, in every
/// hierarchy that has them.
fn remove_cgroups(root: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for hierarchy in hierarchies.filter_map(Result::ok) {
        let top = hierarchy.path().join(root);
        if !top.exists() {
            continue;
        }
        let mut groups = Vec::new();
        collect_groups(&top, &mut groups);
        groups.sort_by_key(|g| std::cmp::Reverse(g.components().count()));
        for group in &groups {
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
            procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()).for_each(kill9);
            thaw(group);
        }
        for group in &groups {
            for _ in 0..20 {
                if std::fs::remove_dir(group).is_ok() || !group.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A frozen process cannot die: thaw the freezer cgroup first.
fn thaw(group: &Path) {
    let state = group.join("freezer.state");
    if state.exists() {
        let _ = std::fs::write(state, "THAWED");
    }
}

fn collect_groups(directory: &Path, into: &mut Vec<PathBuf>) {
    into.push(directory.to_owned());
    let Ok(entries) = std::fs::read_dir(directory) else { return };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_groups(&entry.path(), into);
        }
    }
}
