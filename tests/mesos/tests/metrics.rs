//! The isolator's metrics in the agent's own `/metrics/snapshot` (libprocess metrics that the
//! shim adds under `flocker/`): after real tasks on real Mesos agents, every counter says exactly
//! what happened, on the node where it happened; the prepare latency lies between what the core
//! measured and what the framework saw; `volumes_in_use` follows the task that holds a volume.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flocker_isolator_core::error::CAUSES;
use flocker_mesos_tests::suite::Suite;
use flocker_mesos_tests::{Launcher, Status, Task};

const LATENCY: &str = "flocker/prepare_latency_ms";

/// What one node's isolator should have counted.
#[derive(Default)]
struct Expected {
    prepares: u32,
    prepares_without_volume: u32,
    /// Failed prepares by cause; every other cause must be 0.
    failures: &'static [(&'static str, u32)],
    cleanups: u32,
    volumes_in_use: u32,
}

impl Expected {
    fn values(&self) -> BTreeMap<String, f64> {
        let mut values: BTreeMap<String, f64> = [
            ("flocker/prepares", self.prepares),
            ("flocker/prepares_without_volume", self.prepares_without_volume),
            ("flocker/prepare_failures", self.failures.iter().map(|(_, n)| n).sum()),
            ("flocker/cleanups", self.cleanups),
            ("flocker/cleanup_failures", 0),
            ("flocker/volumes_in_use", self.volumes_in_use),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), f64::from(value)))
        .collect();
        for cause in CAUSES {
            let count = self.failures.iter().find(|(c, _)| c == cause).map_or(0, |(_, n)| *n);
            values.insert(format!("flocker/prepare_failures/{cause}"), f64::from(count));
        }
        values
    }
}

/// Waits until node `index`'s snapshot shows `expected` (a cleanup is counted a moment after
/// its task's last update); fails with our part of the last snapshot if it never does.
fn wait_for_metrics(suite: &Suite, index: usize, expected: &Expected) -> BTreeMap<String, f64> {
    let wanted = expected.values();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snapshot = suite.nodes[index].metrics().unwrap_or_else(|e| suite.fail(&e));
        if wanted.iter().all(|(name, value)| snapshot.get(name) == Some(value)) {
            return snapshot;
        }
        if Instant::now() > deadline {
            let ours: BTreeMap<_, _> =
                snapshot.iter().filter(|(name, _)| name.starts_with("flocker/")).collect();
            suite.fail(&format!("node {index}: wanted {wanted:#?}\nthe agent says {ours:#?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Launches `task` on node `index` and waits until it reaches one of `states`. Returns that
/// update and the time from the ACCEPT to the task's first update, which holds its prepare.
fn launch(suite: &Suite, index: usize, task: &Task, states: &[&str]) -> (Status, Duration) {
    let framework = &suite.frameworks[index];
    let launched = framework.launch(task).unwrap_or_else(|e| suite.fail(&e));
    let status = framework
        .wait_for_state(&task.id, states, flocker_mesos_tests::suite::TASK_TIMEOUT)
        .unwrap_or_else(|e| suite.fail(&e));
    let first = framework.statuses(&task.id)[0].received;
    (status, first.duration_since(launched.accepted))
}

/// How long each prepare took by the core's own clock, from its log lines
/// (`container <id>: 1 volume(s) ready in 41.5ms`), in milliseconds.
fn core_prepare_times(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|line| line.split_once("volume(s) ready in ")?.1.split_whitespace().next())
        .map(|text| milliseconds(text).unwrap_or_else(|| panic!("not a duration: {text}")))
        .collect()
}

/// A `Duration`'s `Debug` text (`41.5ms`, `1.2s`, `980µs`) in milliseconds.
fn milliseconds(text: &str) -> Option<f64> {
    let units = [("ns", 1e-6), ("µs", 1e-3), ("ms", 1.0), ("s", 1e3)];
    let (number, scale) = units.iter().find_map(|(unit, scale)| {
        text.strip_suffix(unit).and_then(|n| n.parse::<f64>().ok()).map(|n| (n, *scale))
    })?;
    Some(number * scale)
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// Node A runs a writer, a task without a volume, a task with a bad FLOCKER_ID, then a holder
/// that keeps the volume; node B's task for that volume is refused. Each node's snapshot
/// counts exactly its own. A's agent restarts: its counters start again from 0, but it still
/// holds the volume; when the holder is killed, A counts its cleanup and holds nothing.
#[test]
fn the_agents_metrics_snapshot_counts_prepares_failures_by_cause_cleanups_and_volumes() {
    let mut suite = Suite::start(2, Launcher::Posix);
    let volume = suite.volume("metrics");
    let on_a = suite.path_on(0, &volume);
    let writer = Task::new("writer", "echo -n kept > \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"")
        .volume(&volume, &on_a);
    let (end, writer_wall) = launch(&suite, 0, &writer, &["TASK_FINISHED"]);
    suite.assert_state(&end, "TASK_FINISHED");
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    suite.wait_lease_released(&dataset);
    suite.assert_state(&suite.run_to_end(0, &Task::new("plain", "true")), "TASK_FINISHED");
    let bad = Task::new("bad", "true").volume("not a valid id!", &suite.path_on(0, "bad"));
    let refused_here = suite.run_to_end(0, &bad);
    suite.assert_state(&refused_here, "TASK_FAILED");
    let holder = Task::new("holder", "exec sleep 600").volume(&volume, &on_a);
    let (_, holder_wall) = launch(&suite, 0, &holder, &["TASK_RUNNING"]);

    let intruder = Task::new("intruder", "true").volume(&volume, &suite.path_on(1, &volume));
    let refused_there = suite.run_to_end(1, &intruder);
    suite.assert_state(&refused_there, "TASK_FAILED");
    let message = refused_there.message.unwrap_or_default();
    assert!(message.contains("in use"), "refused for the lease: {message}");

    let a = wait_for_metrics(
        &suite,
        0,
        &Expected {
            prepares: 2,
            prepares_without_volume: 1,
            failures: &[("invalid_request", 1)],
            cleanups: 1,
            volumes_in_use: 1,
        },
    );
    let b = wait_for_metrics(
        &suite,
        1,
        &Expected { failures: &[("leased_elsewhere", 1)], ..Expected::default() },
    );

    // The latency: A's two prepares with a volume, none of B's (its only one failed).
    let stat = |name: &str| a.get(&format!("{LATENCY}/{name}")).copied().unwrap_or(f64::NAN);
    assert_eq!(stat("count"), 2.0, "two samples: {a:#?}");
    let (low, high) = (stat("min"), stat("max"));
    let core = core_prepare_times(&suite.nodes[0].log());
    assert_eq!(core.len(), 2, "the core logged two prepares with a volume");
    let (core_low, core_high) = min_max(&core);
    let (wall_low, wall_high) = min_max(&[writer_wall, holder_wall].map(|d| d.as_secs_f64() * 1e3));
    // Each sample lies between the core's own time for it and the framework's wait for it.
    assert!(core_low <= low && core_high <= high, "{low}..{high} ms vs the core's {core:?}");
    assert!(low <= wall_low && high <= wall_high, "{low}..{high} ms vs {wall_low}..{wall_high}");
    assert!((low..=high).contains(&stat("p50")), "{a:#?}");
    let last = a.get(LATENCY).copied().unwrap_or(f64::NAN);
    assert!((low..=high).contains(&last), "the last sample, {last}, is one of the two");
    assert!(!b.keys().any(|k| k.starts_with(LATENCY)), "node B timed no prepare: {b:#?}");

    // A restarted agent counts from 0 (metrics live in its process), but the volume its
    // recovered task holds is still counted: that figure comes from the core's checkpoints.
    let recovered = suite.restart_node(0, &holder.id);
    assert_eq!(recovered.state, "TASK_RUNNING", "{}", recovered.describe());
    wait_for_metrics(&suite, 0, &Expected { volumes_in_use: 1, ..Expected::default() });

    // Killing the holder: A counts its cleanup and holds no volume any more.
    let agent = suite.frameworks[0].statuses(&holder.id)[0].agent_id.clone();
    suite.frameworks[0]
        .kill(&holder.id, agent.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| suite.fail(&e));
    let killed = suite.frameworks[0]
        .wait_for_end(&holder.id, Duration::from_secs(60))
        .unwrap_or_else(|e| suite.fail(&e));
    suite.assert_state(&killed, "TASK_KILLED");
    suite.wait_lease_released(&dataset);
    wait_for_metrics(
        &suite,
        0,
        &Expected { cleanups: 1, volumes_in_use: 0, ..Expected::default() },
    );
}

#[test]
fn durations_as_rust_prints_them_read_as_milliseconds() {
    assert_eq!(milliseconds("41.5ms"), Some(41.5));
    assert_eq!(milliseconds("1.25s"), Some(1250.0));
    assert_eq!(milliseconds("500µs"), Some(0.5));
    assert_eq!(milliseconds("soon"), None);
    let log = "I0101 container c1: 1 volume(s) ready in 52.5ms\nother\n… ready in 1.5s\n";
    assert_eq!(core_prepare_times(log), [52.5]);
}
