//! Child processes that cannot outlive the demo: a service ([`Service`]) logs to a file in the
//! work directory and is stopped with SIGTERM, then killed if it does not end in time; any
//! child still running when its handle drops is killed and reaped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How often a wait for a process looks again.
const POLL: Duration = Duration::from_millis(5);

/// A long-running program of the cluster (`flocker-control`, an agent).
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `command` with no stdin and its stderr appended to `log`; stdout is as the
    /// command says (the caller may pipe it).
    pub fn start(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self { name: name.to_owned(), child, log: log.to_owned() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its exit status if it has ended already.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then up to `grace` for it to end, then SIGKILL. How it ended, in words.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<String> {
        terminate(&mut self.child, grace).with_context(|| format!("cannot stop {}", self.name))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Waits up to `timeout` for `child` to end: its status, or `None` if it still runs.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// SIGTERM, then SIGKILL after `grace`. The child is not reaped before this, so its pid cannot
/// have been reused.
pub fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<String> {
    if let Some(status) = child.try_wait()? {
        return Ok(format!("had already ended ({status})"));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    if let Err(error) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
        child.kill()?;
        return Ok(format!("killed, as SIGTERM could not be sent ({error}; {})", child.wait()?));
    }
    if let Some(status) = wait_timeout(child, grace)? {
        return Ok(format!("ended on SIGTERM ({status})"));
    }
    child.kill()?;
    Ok(format!("killed: it did not end within {grace:?} of SIGTERM ({})", child.wait()?))
}

/// SIGKILL and reap, if it still runs: for drops, where nothing can be reported.
pub fn kill(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The last `lines` lines of a log file, or why there are none.
pub fn tail(path: &Path, lines: usize) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => vec!["(empty)".to_owned()],
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].iter().map(|l| (*l).to_owned()).collect()
        }
        Err(error) => vec![format!("(cannot read it: {error})")],
    }
}
