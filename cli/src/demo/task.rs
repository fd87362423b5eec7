//! A task's process: `sh -c` with the environment Mesos gives the task (its FLOCKER variables
//! among them), in its sandbox. Its stdin is a pipe the demo holds: closing it is how the task
//! is told to end, and if the demo dies the task ends with it. Killed if dropped while running.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::demo::container::Container;
use crate::demo::process;

/// Task 1 of `/webapp`: writes a page into its volume, says what it wrote, then runs until told
/// to end (its stdin closes).
pub const WRITER: &str = r#"page="$FLOCKER_CONTAINER_VOLUME_PATH/index.html"
printf 'Hello from task 1 of %s (FLOCKER_ID=%s), written on node A at %s\n' \
    "$MARATHON_APP_ID" "$FLOCKER_ID" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" > "$page"
cat "$page"
read -r _ || true"#;

/// Task 2 of `/webapp`: shows the page it finds in its volume.
pub const READER: &str = r#"cat "$FLOCKER_CONTAINER_VOLUME_PATH/index.html""#;

pub struct Task {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its stdout, a line at a time, from a reader thread; closed at its end.
    lines: Receiver<Vec<u8>>,
}

impl Task {
    /// Starts `script` for `container`, its stderr appended to `stderr_log`.
    pub fn start(script: &str, container: &Container, stderr_log: &Path) -> anyhow::Result<Self> {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(stderr_log)
            .with_context(|| format!("cannot open {}", stderr_log.display()))?;
        let mut child = Command::new("sh")
            .args(["-c", script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .envs(container.environment())
            .current_dir(container.sandbox())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start the task's sh -c")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the task has no stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if sender.send(line).is_err() => break,
                    Ok(_) => {}
                }
            }
        });
        Ok(Self { child, stdin, lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it prints, newline included.
    pub fn next_line(&self, timeout: Duration) -> anyhow::Result<Vec<u8>> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => anyhow::bail!("the task said nothing in {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the task ended without a word"),
        }
    }

    /// Everything it prints until it ends, and how it ended.
    pub fn run_to_end(&mut self, timeout: Duration) -> anyhow::Result<(Vec<u8>, ExitStatus)> {
        let deadline = Instant::now() + timeout;
        let mut output = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => output.extend(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => anyhow::bail!("the task ran over {timeout:?}"),
            }
        }
        Ok((output, self.end(deadline.saturating_duration_since(Instant::now()))?))
    }

    /// Tells it to end (closes its stdin) and waits up to `timeout`; then kills it.
    pub fn end(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        drop(self.stdin.take());
        match process::wait_timeout(&mut self.child, timeout).context("cannot wait for the task")? {
            Some(status) => Ok(status),
            None => {
                process::kill(&mut self.child);
                anyhow::bail!("the task did not end within {timeout:?} and was killed")
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        process::kill(&mut self.child);
    }
}
