//! A `btrfs` process whose stdin or stdout is a stream: unlike [`crate::command::run`], the
//! caller pumps the bytes while it runs. Like it, the tool dies with the agent and its stderr
//! becomes the error.

use std::io::Read;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::command::CommandError;

pub struct Child {
    command: String,
    process: std::process::Child,
    stderr: Option<JoinHandle<String>>,
}

impl Child {
    /// Starts `btrfs arguments…` with the given stdin and stdout; stderr is collected.
    pub fn spawn(arguments: &[&str], stdin: Stdio, stdout: Stdio) -> Result<Self, CommandError> {
        let command = format!("btrfs {}", arguments.join(" "));
        let mut process = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "btrfs"])
            .args(arguments)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CommandError::Spawn { program: "setpriv btrfs".into(), source })?;
        // Read apart, so that a tool with much to say never blocks on a full pipe.
        let stderr = process.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        Ok(Self { command, process, stderr })
    }

    /// Its stdin, once, if it was spawned with a pipe there.
    pub fn stdin(&mut self) -> Result<ChildStdin, CommandError> {
        self.process.stdin.take().ok_or_else(|| self.no_pipe("stdin"))
    }

    /// Its stdout, once, if it was spawned with a pipe there.
    pub fn stdout(&mut self) -> Result<ChildStdout, CommandError> {
        self.process.stdout.take().ok_or_else(|| self.no_pipe("stdout"))
    }

    fn no_pipe(&self, which: &str) -> CommandError {
        let source = std::io::Error::other(format!("no pipe to its {which}"));
        CommandError::Spawn { program: self.command.clone(), source }
    }

    /// Waits for the end; an error with the tool's own words unless it succeeded.
    pub fn finish(mut self) -> Result<(), CommandError> {
        let status = self
            .process
            .wait()
            .map_err(|source| CommandError::Spawn { program: self.command.clone(), source })?;
        let stderr = self.stderr.take().and_then(|thread| thread.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(CommandError::Failed {
            command: self.command.clone(),
            status: status.to_string(),
            stderr: stderr.trim().to_owned(),
            code: status.code(),
        })
    }

    /// Stops it and reaps it.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Child {
    /// A child given up on (an error on our side) is killed, never left running unreaped.
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
