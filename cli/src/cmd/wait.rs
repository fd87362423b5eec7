//! Waiting until a change is real (mounted on its node, or gone), saying where the volume is
//! whenever that changes, and on a timeout which state it was stuck in and where to look.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use flocker_api::{DatasetId, Node, NodeUuid};
use flocker_cli::ops::progress::{Goal, Stage, stage};
use flocker_cli::ops::view::{node_label, short};

use super::connection::Connection;

/// How often the agents' reports are read while waiting.
const POLL: Duration = Duration::from_millis(100);

#[derive(Args, Clone, Copy, Debug)]
pub struct WaitArgs {
    /// Return as soon as the control service has accepted the change
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the change to become real
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
}

/// The end of a create or a move: unless `--no-wait`, waits until `dataset` is mounted on
/// `node`, and says where and how long it took since `started`.
pub fn until_mounted(
    connection: &Connection,
    dataset: &DatasetId,
    node: &NodeUuid,
    nodes: &[Node],
    args: WaitArgs,
    started: Instant,
) -> anyhow::Result<()> {
    if args.no_wait {
        println!("not waiting: `flockerctl list` shows when it is mounted");
        return Ok(());
    }
    let path = until(connection, dataset, Goal::MountedOn(*node), nodes, args)?;
    let at = path.map(|p| format!(" at {p}")).unwrap_or_default();
    let on = node_label(node, nodes);
    println!("mounted on node {on}{at} after {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Waits until `dataset` reaches `goal`, printing progress to stderr; the mount path, if any.
pub fn until(
    connection: &Connection,
    dataset: &DatasetId,
    goal: Goal,
    nodes: &[Node],
    args: WaitArgs,
) -> anyhow::Result<Option<String>> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    let name = |node: &NodeUuid| node_label(node, nodes);
    let mut last: Option<Stage> = None;
    loop {
        let now = stage(goal, dataset, &connection.call(|c| c.dataset_states())?);
        if let Stage::Done { path } = now {
            return Ok(path);
        }
        if let Goal::MountedOn(node) = goal
            && let Some(problem) = refusal(connection, dataset, &node)?
        {
            anyhow::bail!("node {}'s agent will not mount it: {problem}", name(&node));
        }
        if last.as_ref() != Some(&now) {
            let line =
                format!("  … {} ({:.1} s)", now.describe(name), started.elapsed().as_secs_f64());
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {} s: dataset {} is {}; {}",
                args.timeout,
                short(&dataset.to_string(), false),
                now.describe(name),
                hint(&now, goal, name)
            );
        }
        last = Some(now);
        std::thread::sleep(POLL);
    }
}

/// Why `node`'s agent refuses `dataset`, if it says so (a Flocker 1.x service never does).
fn refusal(
    connection: &Connection,
    dataset: &DatasetId,
    node: &NodeUuid,
) -> anyhow::Result<Option<String>> {
    let problems = connection.call(|c| c.dataset_problems())?.unwrap_or_default();
    Ok(problems
        .into_iter()
        .find(|p| p.dataset_id == *dataset && p.node_uuid == *node)
        .map(|p| p.problem))
}

/// Where to look, for the stage a wait was stuck in.
fn hint(stuck: &Stage, goal: Goal, name: impl Fn(&NodeUuid) -> String) -> String {
    const LOG: &str = "its flocker-dataset-agent log (journalctl -u flocker-dataset-agent)";
    match (stuck, goal) {
        (Stage::OnOtherNode(node), _) => format!(
            "node {}'s agent has not let it go: a lease may hold it there (`flockerctl leases`); see {LOG}",
            name(node)
        ),
        (Stage::StillPresent(Some(node)), _) => format!(
            "node {}'s agent has not destroyed it: a lease may hold it (`flockerctl leases`); see {LOG}",
            name(node)
        ),
        (Stage::NotMounted, Goal::MountedOn(node)) => {
            format!("node {}'s agent attached it but has not mounted it; see {LOG}", name(&node))
        }
        (_, Goal::MountedOn(node)) => format!(
            "no agent reports it: is flocker-dataset-agent running on node {} (`flockerctl list-nodes`)? see {LOG}",
            name(&node)
        ),
        _ => format!("see the dataset agents' logs ({LOG})"),
    }
}
