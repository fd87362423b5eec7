//! `flocker-control` on ephemeral ports of 127.0.0.1: started, and known ready by the one line
//! it prints to stdout once both ports listen.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

use crate::demo::process::Service;
use crate::demo::workdir::WorkDir;

/// How long the service may take to open its ports.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Control {
    pub service: Service,
    /// The v1 REST API (users, the isolators).
    pub rest: SocketAddr,
    /// The agent API (the dataset agents).
    pub agent: SocketAddr,
}

/// Starts the service with the work directory's certificates and store, and waits for its
/// ready line.
pub fn start(binary: &Path, work: &WorkDir) -> anyhow::Result<Control> {
    let mut command = Command::new(binary);
    command
        .arg("--certificates-directory")
        .arg(work.control())
        .arg("--data-path")
        .arg(work.control_data())
        .args(["--port", "127.0.0.1:0", "--agent-port", "127.0.0.1:0"])
        .env("RUST_LOG", child_log_level())
        .stdout(Stdio::piped());
    let mut service = Service::start("flocker-control", &mut command, &work.control_log())?;
    let stdout = service.take_stdout().context("flocker-control has no stdout")?;
    let (sender, receiver) = mpsc::channel();
    // A thread, so that the wait for the line has a timeout; it ends with the line or EOF.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(READY_TIMEOUT).unwrap_or_default();
    let Some((rest, agent)) = parse_ready_line(&line) else {
        let how = match service.exited() {
            Some(status) => format!("it ended ({status})"),
            None => format!("no ready line within {READY_TIMEOUT:?}"),
        };
        anyhow::bail!("flocker-control did not start: {how}");
    };
    Ok(Control { service, rest, agent })
}

/// The children log at `RUST_LOG` if set, else `info`: to their own files, so a failure can
/// show what they did.
pub fn child_log_level() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned())
}

/// `flocker-control: REST API on <addr>, agent API on <addr>`
fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim().strip_prefix("flocker-control: REST API on ")?;
    let (rest, agent) = rest.split_once(", agent API on ")?;
    Some((rest.parse().ok()?, agent.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_both_addresses() {
        let line = "flocker-control: REST API on 127.0.0.1:40001, agent API on 127.0.0.1:40002\n";
        let (rest, agent) = parse_ready_line(line).unwrap();
        assert_eq!((rest.port(), agent.port()), (40001, 40002));
        assert_eq!(parse_ready_line(""), None);
        assert_eq!(parse_ready_line("flocker-control: REST API on nowhere"), None);
    }
}
