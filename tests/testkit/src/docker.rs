//! Real Docker daemons for tests (Debian's `docker.io`, as root): several on one machine, each
//! with its own data root, exec root (its own managed containerd), API socket and configuration
//! file, no bridge and no iptables (containers run with `--network none`), and an image made
//! with `docker import` from a root file system holding `busybox` (Debian's `busybox-static`).
//! A daemon is stopped when dropped, after its containers are removed, and nothing it mounted
//! under its directory stays mounted.
//!
//! Docker finds volume plugins by name in the fixed directory [`PLUGIN_DIRECTORY`], shared by
//! every daemon on the machine: a test giving each node its own plugin names them apart (see
//! [`unique_plugin_name`]).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::LocalCluster;
use crate::cleanup::unmount_everything_under;

/// The Docker client and daemon of Debian's `docker.io` (not whatever else `PATH` may offer
/// first: the client must speak the daemon's API).
pub const DOCKER: &str = "/usr/bin/docker";
pub const DOCKERD: &str = "/usr/sbin/dockerd";
/// Debian's `busybox-static`: one static binary, so an image needs nothing else.
pub const BUSYBOX: &str = "/bin/busybox";
/// Where every Docker daemon looks for a plugin's socket, `<name>.sock`.
pub const PLUGIN_DIRECTORY: &str = "/run/docker/plugins";
/// The image [`DockerDaemon::import_busybox`] makes.
pub const BUSYBOX_IMAGE: &str = "flocker-test-busybox:latest";

/// Fails the test, loudly, unless Docker and busybox are installed (`scripts/test` installs
/// `docker.io` and `busybox-static`).
pub fn require_docker() {
    for (path, package) in
        [(DOCKER, "docker.io"), (DOCKERD, "docker.io"), (BUSYBOX, "busybox-static")]
    {
        assert!(
            Path::new(path).is_file(),
            "this test needs {path}: install {package} (apt-get install docker.io busybox-static; \
             scripts/test does)"
        );
    }
}

/// A plugin name no other test run uses: `<prefix>-<8 hex digits>`.
pub fn unique_plugin_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Where Docker looks for the plugin called `name`.
pub fn plugin_socket(name: &str) -> PathBuf {
    Path::new(PLUGIN_DIRECTORY).join(format!("{name}.sock"))
}

/// A `dockerd` process; stopped, and its mounts let go, when dropped.
pub struct DockerDaemon {
    /// Holds everything of the daemon's: data, exec root, socket, log.
    pub directory: PathBuf,
    /// The daemon's API socket (`docker -H unix://…`).
    pub socket: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl DockerDaemon {
    /// Starts a daemon keeping everything in `directory` (created) and waits until it answers.
    pub fn start(directory: &Path) -> Self {
        require_docker();
        fs::create_dir_all(directory).unwrap_or_else(|e| panic!("{}: {e}", directory.display()));
        let at = |name: &str| directory.join(name);
        // Our own (empty) configuration: not the machine's /etc/docker/daemon.json.
        fs::write(at("daemon.json"), "{}\n").unwrap_or_else(|e| panic!("daemon.json: {e}"));
        fs::create_dir_all(at("client")).unwrap_or_else(|e| panic!("client: {e}"));
        let log = at("dockerd.log");
        let output = fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let socket = at("docker.sock");
        let child = Command::new(DOCKERD)
            .arg(format!("--config-file={}", at("daemon.json").display()))
            .arg(format!("--data-root={}", at("data").display()))
            .arg(format!("--exec-root={}", at("exec").display()))
            .arg(format!("--pidfile={}", at("docker.pid").display()))
            .arg(format!("--host=unix://{}", socket.display()))
            // One machine, several daemons: no bridge, no firewall rules, no networks at all.
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--shutdown-timeout=2")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DOCKERD}: {e}"));
        let mut daemon = Self { directory: directory.to_owned(), socket, child: Some(child), log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if daemon.docker(&["info", "--format", "{{.ServerVersion}}"]).status.success() {
                break;
            }
            if let Some(Ok(Some(status))) = daemon.child.as_mut().map(Child::try_wait) {
                panic!("dockerd exited ({status}) at start:\n{}", daemon.log());
            }
            assert!(Instant::now() < deadline, "dockerd did not answer in time:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `docker -H <this daemon> <arguments>`, with a client configuration of its own.
    pub fn docker(&self, arguments: &[&str]) -> Output {
        self.command(arguments)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}"))
    }

    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(DOCKER);
        command
            .env("DOCKER_CONFIG", self.directory.join("client"))
            .arg(format!("--host=unix://{}", self.socket.display()))
            .args(arguments);
        command
    }

    /// `docker …` that must succeed; its standard output.
    pub fn ok(&self, arguments: &[&str]) -> String {
        let output = self.docker(arguments);
        assert!(
            output.status.success(),
            "docker {arguments:?} failed ({}):\n{}\n--- dockerd:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `docker …` that must fail; its standard error.
    pub fn fails(&self, arguments: &[&str]) -> String {
        let output = self.docker(arguments);
        assert!(
            !output.status.success(),
            "docker {arguments:?} succeeded:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// The storage driver the daemon chose (overlay2 where it can, else vfs, …).
    pub fn storage_driver(&self) -> String {
        self.ok(&["info", "--format", "{{.Driver}}"]).trim().to_owned()
    }

    /// Imports [`BUSYBOX_IMAGE`]: a root file system of `/bin/busybox` and links to it.
    pub fn import_busybox(&self) {
        let rootfs = self.directory.join("busybox-rootfs");
        let bin = rootfs.join("bin");
        fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        fs::copy(BUSYBOX, bin.join("busybox")).unwrap_or_else(|e| panic!("{BUSYBOX}: {e}"));
        for applet in ["sh", "cat", "echo", "sleep", "ls", "test", "true"] {
            let link = bin.join(applet);
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink("busybox", &link).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        for directory in ["tmp", "proc", "sys", "dev", "etc"] {
            fs::create_dir_all(rootfs.join(directory)).unwrap_or_else(|e| panic!("{e}"));
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .output()
            .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
        assert!(tar.status.success(), "tar: {}", String::from_utf8_lossy(&tar.stderr));
        let mut import = self
            .command(&["import", "-", BUSYBOX_IMAGE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}"));
        let mut stdin = import.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin.write_all(&tar.stdout).unwrap_or_else(|e| panic!("docker import: {e}"));
        drop(stdin);
        let output = import.wait_with_output().unwrap_or_else(|e| panic!("docker import: {e}"));
        assert!(
            output.status.success(),
            "docker import failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Removes every container (killing those that run: Docker unmounts their volumes, so
    /// their plugins see the unmounts), then stops the daemon: SIGTERM, SIGKILL after 20 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if matches!(child.try_wait(), Ok(None)) {
            let listed = self.docker(&["ps", "--all", "--quiet"]);
            let containers = String::from_utf8_lossy(&listed.stdout).into_owned();
            let ids: Vec<&str> = containers.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.docker(&[&["rm", "--force"][..], &ids].concat());
            }
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
        self.kill_orphaned_containerd();
        unmount_everything_under(&self.directory);
    }

    /// The containerd this daemon started, if it outlived the daemon (after a SIGKILL).
    fn kill_orphaned_containerd(&self) {
        let exec = self.directory.join("exec");
        let pidfile = exec.join("containerd/containerd.pid");
        let Ok(text) = fs::read_to_string(&pidfile) else { return };
        let Ok(pid) = text.trim().parse::<i32>() else { return };
        // Only if that pid is still our containerd (its command line names our exec root).
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&*exec.to_string_lossy()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Our `flocker-docker-plugin` for node `index` of a test cluster, called as Docker's daemon
/// calls it (HTTP/1.1 POSTs of JSON on its Unix socket); killed, its socket removed, when dropped.
pub struct DockerPlugin {
    child: Option<Child>,
    arguments: Vec<String>,
    pub socket: PathBuf,
    log: PathBuf,
}

impl DockerPlugin {
    /// Node `index`'s plugin on `socket` (its own directory's when None).
    pub fn start(cluster: &LocalCluster, index: usize, socket: Option<PathBuf>) -> Self {
        let directory = cluster.agents[index].directory.join("docker-plugin");
        let certificates = directory.join("certificates");
        fs::create_dir_all(&certificates).unwrap();
        let parameters = cluster.isolator_parameters(index);
        let text = |key: &str| parameters[key].as_str().unwrap().to_owned();
        for (from, to) in [
            ("cluster_certificate", "cluster.crt"),
            ("client_certificate", "plugin.crt"),
            ("client_key", "plugin.key"),
            ("node_certificate", "node.crt"),
        ] {
            fs::copy(text(from), certificates.join(to)).unwrap();
        }
        let socket = socket.unwrap_or_else(|| directory.join("flocker.sock"));
        let arguments = vec![
            format!("--control-service={}", text("control_service_host")),
            format!("--rest-api-port={}", text("control_service_port")),
            format!("--certificates-directory={}", certificates.display()),
            format!("--socket={}", socket.display()),
            format!("--state-dir={}", directory.join("state").display()),
            "--mount-timeout=30".to_owned(),
        ];
        let mut plugin = Self { child: None, arguments, socket, log: directory.join("plugin.log") };
        plugin.restart();
        plugin
    }

    pub fn restart(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(crate::control::built_binary("flocker-docker-plugin"))
            .args(&self.arguments)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_call("/Plugin.Activate", "{}").is_err() {
            assert!(Instant::now() < deadline, "the plugin did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A POST as Docker sends it; the status and the JSON answer.
    pub fn try_call(&self, call: &str, body: &str) -> std::io::Result<(u16, Value)> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "POST {call} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
    }

    /// A call that must answer 200; its JSON.
    pub fn call(&self, call: &str, body: Value) -> Value {
        let (status, answer) = self.try_call(call, &body.to_string()).unwrap();
        assert_eq!(status, 200, "{call} {body}: {answer}\n{}", self.log());
        answer
    }

    /// A call that must succeed (`Err` empty).
    pub fn ok(&self, call: &str, body: Value) -> Value {
        let answer = self.call(call, body.clone());
        assert_eq!(answer["Err"], "", "{call} {body}: {answer}\n{}", self.log());
        answer
    }

    /// A call that must fail; its `Err`.
    pub fn refused(&self, call: &str, body: Value) -> String {
        let answer = self.call(call, body.clone());
        let error = answer["Err"].as_str().unwrap_or_default().to_owned();
        assert!(!error.is_empty(), "{call} {body} succeeded: {answer}");
        error
    }
}

impl Drop for DockerPlugin {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.socket);
    }
}
