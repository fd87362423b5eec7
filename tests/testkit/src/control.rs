//! `flocker-control` as a child process, on ephemeral ports of 127.0.0.1.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::ClusterCertificates;

/// The built `flocker-control` next to the running test's target directory (for tests of
/// other packages; the control package's own tests pass `CARGO_BIN_EXE_flocker-control`).
pub fn control_binary() -> PathBuf {
    built_binary("flocker-control")
}

/// A binary (or the cdylib) of the workspace, built beside the running test
/// (`target/<profile>/<name>`). `cargo test --workspace` builds every package's before running
/// any test.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // A test runs from target/<profile>/deps, a binary (the test cluster) from target/<profile>.
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|d| d.join(name)).collect();
    match candidates.iter().find(|path| path.exists()) {
        Some(binary) => binary.clone(),
        None => {
            panic!("{} is missing: run `cargo build --workspace` first", candidates[0].display())
        }
    }
}

/// A running control service; killed when dropped.
pub struct ControlProcess {
    child: Child,
    pub rest: SocketAddr,
    pub agent: SocketAddr,
    pub data_path: PathBuf,
    log: PathBuf,
}

impl ControlProcess {
    /// Starts the service on ephemeral ports and waits for its ready line. `extra` adds
    /// options.
    pub fn start(
        binary: &Path,
        certificates: &ClusterCertificates,
        data_path: &Path,
        extra: &[&str],
    ) -> Result<Self, String> {
        let any = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
        Self::start_on(binary, certificates, data_path, (any, any), extra)
    }

    /// The same on given ports (`rest`, `agent`), to come back where agents expect it.
    pub fn start_on(
        binary: &Path,
        certificates: &ClusterCertificates,
        data_path: &Path,
        (rest, agent): (SocketAddr, SocketAddr),
        extra: &[&str],
    ) -> Result<Self, String> {
        // `<data path>.log`, appended rather than replacing an extension: instances' data paths
        // (`data-127.0.0.2`, `data-127.0.0.3`) differ only in what looks like one.
        let mut log = data_path.as_os_str().to_owned();
        log.push(".log");
        let log = PathBuf::from(log);
        let mut child = Command::new(binary)
            .arg("--certificates-directory")
            .arg(certificates.control_directory())
            .arg("--data-path")
            .arg(data_path)
            .args(["--port", &rest.to_string(), "--agent-port", &agent.to_string()])
            .args(extra)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                File::options().create(true).append(true).open(&log).map_err(|e| e.to_string())?,
            )
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        match parse_ready_line(&line) {
            Some((rest, agent)) => {
                Ok(Self { child, rest, agent, data_path: data_path.to_owned(), log })
            }
            None => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!(
                    "flocker-control did not start ({status}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        }
    }

    /// Runs the service to its end (for tests of start-up failures): its exit status and log.
    pub fn run_to_exit(
        binary: &Path,
        certificates: &ClusterCertificates,
        data_path: &Path,
    ) -> (ExitStatus, String) {
        let output = Command::new(binary)
            .arg("--certificates-directory")
            .arg(certificates.control_directory())
            .arg("--data-path")
            .arg(data_path)
            .args(["--port", "127.0.0.1:0", "--agent-port", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .expect("run flocker-control");
        (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 10 s for the log to mention `needle`; the log so far either way.
    pub fn wait_for_log(&self, needle: &str) -> (bool, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) || std::time::Instant::now() > deadline {
                return (log.contains(needle), log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address of its metrics endpoint (started with `--metrics-address`), from its log.
    pub fn metrics_address(&self) -> SocketAddr {
        crate::metrics::wait_for_metrics_address(|| self.log()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("wait")
    }

    /// The process id, to read its memory use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `flocker-control: REST API on <addr>, agent API on <addr>`
fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim().strip_prefix("flocker-control: REST API on ")?;
    let (rest, agent) = rest.split_once(", agent API on ")?;
    Some((rest.parse().ok()?, agent.parse().ok()?))
}
