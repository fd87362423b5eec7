//! What a user feels: the time from a framework's ACCEPT to TASK_RUNNING for a command task on
//! a real Mesos 1.11.0 agent, with our isolator (the volume already on this node, and created
//! for the task) and without it (the same agent, `filesystem/posix` only). Medians of
//! `FLOCKER_BENCH_ROUNDS` (default 21) launches each, printed as a table with the ratio.
//!
//! Run by `scripts/bench` (as root, with the runtime of `scripts/mesos-runtime`).

use std::time::Duration;

use flocker_mesos_tests::suite::Suite;
use flocker_mesos_tests::{Framework, Launcher, MesosNode, Runtime, Task};
use flocker_testkit::bench_results::{Baseline, record};

const BENCH: &str = "mesos";

fn main() {
    let rounds: usize =
        std::env::var("FLOCKER_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(21);
    let runtime = Runtime::from_env();
    let plain_node = MesosNode::start_without_module(&runtime);
    let plain = Framework::subscribe(plain_node.master(), "bench-baseline")
        .unwrap_or_else(|e| panic!("{e}"));
    let suite = Suite::start(1, Launcher::Posix);
    let ours = &suite.frameworks[0];
    let volume = suite.volume("warm");
    let path = suite.path_on(0, &volume);
    // One launch each first: the first executor of an agent pays for cold caches.
    launch(&plain, Task::new("first", "true"));
    launch(ours, Task::new("first", "true").volume(&volume, &path));
    let dataset = suite.dataset(&volume).unwrap_or_else(|| panic!("no dataset for {volume}"));

    // The four kinds take turns, so that whatever else the machine does falls on all of them.
    let mut times = [(); 4].map(|()| Vec::with_capacity(rounds));
    for round in 0..rounds {
        times[0].push(launch(&plain, Task::new("plain", "sleep 0.2")));
        times[1].push(launch(ours, Task::new("plain", "sleep 0.2")));
        suite.wait_lease_released(&dataset);
        times[2].push(launch(ours, Task::new("warm", "sleep 0.2").volume(&volume, &path)));
        let cold = format!("{}-{round}", suite.volume("cold"));
        let cold_path = suite.path_on(0, &cold);
        times[3].push(launch(ours, Task::new("cold", "sleep 0.2").volume(&cold, &cold_path)));
    }
    let [baseline, no_volume, warm, cold] = times.map(median);

    println!();
    println!("ACCEPT → TASK_RUNNING, command task, real Mesos 1.11.0 agent, median of {rounds}");
    println!("  {:<44} {:>9}  {:>9}", "", "median", "vs plain");
    let rows = [
        ("no isolator (filesystem/posix only)", baseline),
        ("with our module, task without a volume", no_volume),
        ("with our module, volume already here (warm)", warm),
        ("with our module, volume created (cold)", cold),
    ];
    for (what, took) in rows {
        let ratio = ms(took) / ms(baseline);
        println!("  {what:<44} {:>6.1} ms  {ratio:>8.2}×", ms(took));
        let compared = Baseline {
            value: ms(baseline),
            name: "no isolator",
            ratio,
            ratio_means: "× no isolator",
        };
        record(
            BENCH,
            &format!("ACCEPT → TASK_RUNNING, {what}"),
            ms(took),
            "ms",
            None,
            Some(&compared),
        );
    }
}

/// Launches the task on the next offer and waits for it to run, then for it to end; returns
/// the time from ACCEPT to the TASK_RUNNING update.
fn launch(framework: &Framework, task: Task) -> Duration {
    let launched = framework.launch(&task).unwrap_or_else(|e| panic!("{e}"));
    let running = framework
        .wait_for_state(&task.id, &["TASK_RUNNING"], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    framework.wait_for_end(&task.id, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    running.received - launched.accepted
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
