//! Running the system's tools (`mkfs.ext4`, `blkid`) with a deadline, keeping what they said on
//! failure: a failed command is reported with its own words. A tool dies with the agent: one
//! that outlives a killed agent works behind its successor's back.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A command that did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String, code: Option<i32> },
    #[error("`{command}` did not finish within {seconds} s and was killed")]
    TimedOut { command: String, seconds: u64 },
}

/// Runs `program arguments…`, waiting at most `timeout`; its stdout on success.
pub fn run(program: &str, arguments: &[&str], timeout: Duration) -> Result<String, CommandError> {
    let command = format!("{program} {}", arguments.join(" "));
    // util-linux's setpriv sets the parent-death signal, then runs the tool.
    let child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", program])
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn { program: format!("setpriv {program}"), source })?;
    let pid = Pid::from_raw(child.id() as i32);
    // A thread reads both pipes to the end while the process runs, so a chatty command
    // cannot fill a pipe and hang; this thread only keeps the time.
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    let output = match receiver.recv_timeout(timeout) {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => return Err(CommandError::Spawn { program: program.to_owned(), source }),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = receiver.recv(); // reaped by the waiting thread
            return Err(CommandError::TimedOut { command, seconds: timeout.as_secs() });
        }
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(CommandError::Failed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            code: output.status.code(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_comes_back_and_failures_keep_their_words() {
        assert_eq!(run("echo", &["hello"], Duration::from_secs(5)).unwrap(), "hello\n");
        let error = run("ls", &["/nonexistent-path"], Duration::from_secs(5)).unwrap_err();
        assert!(error.to_string().contains("/nonexistent-path"), "{error}");
        assert!(matches!(error, CommandError::Failed { code: Some(2), .. }));
    }

    #[test]
    fn a_command_dies_with_the_agent() {
        let dump = run("setpriv", &["--dump"], Duration::from_secs(5)).unwrap();
        assert!(dump.contains("Parent death signal: KILL"), "{dump}");
    }

    #[test]
    fn a_command_that_hangs_is_killed() {
        let error = run("sleep", &["10"], Duration::from_millis(100)).unwrap_err();
        assert!(matches!(error, CommandError::TimedOut { .. }));
    }
}
