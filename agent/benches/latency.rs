//! How long a volume takes to be usable: from the REST call until `/v1/state/datasets` shows
//! its path, with the loopback backend and 64 MiB volumes, two agents sharing one `root_path`.
//! Beside each figure, the floor: the same system steps run by a plain shell script, and the
//! ratio. Then the agents' CPU time while idle. Prints; asserts nothing.
//!
//! Needs root and release binaries: `cargo build --release --bins && cargo bench -p flocker-dataset-agent`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flocker_api::DatasetId;
use flocker_testkit::bench_results::{self, Baseline};
use flocker_testkit::{BackendKind, LocalCluster, require_root};

const SAMPLES: usize = 30;

fn main() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &[]);
    let (mut creates, mut moves) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let dataset = cluster.create_dataset(0).dataset_id;
        wait_shown(&cluster, &dataset, 0);
        creates.push(started.elapsed());
        let started = Instant::now();
        cluster.client.move_dataset(&dataset, &cluster.node(1), None).expect("move");
        wait_shown(&cluster, &dataset, 1);
        moves.push(started.elapsed());
    }
    let scratch = cluster.certificates.root().join("floor");
    let (floor_creates, floor_moves) = floor(&scratch);
    println!(
        "flocker-dataset-agent latency, loopback backend, 64 MiB volumes, {SAMPLES} samples each\n"
    );
    println!(
        "{:<40} {:>10} {:>10} {:>8}   target",
        "from the REST call to the path in state", "agent", "floor", "ratio"
    );
    row("create on A", "create on node A", &mut creates, &mut floor_creates.clone(), "≤ 250 ms");
    row(
        "move A → B",
        "move from node A to node B",
        &mut moves,
        &mut floor_moves.clone(),
        "≤ 400 ms",
    );
    println!(
        "{:<40} floor: truncate + losetup + mkfs.ext4 + mount; umount + losetup -d + losetup + mount",
        ""
    );
    idle_cpu(&cluster);
}

/// Polls the state every millisecond until node `index` shows the dataset's path.
fn wait_shown(cluster: &LocalCluster, dataset: &DatasetId, index: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.mounted_path(dataset, index).is_none() {
        assert!(Instant::now() < deadline, "not mounted in time\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The same system steps from a plain shell script, timed the same way.
fn floor(scratch: &Path) -> (Vec<Duration>, Vec<Duration>) {
    std::fs::create_dir_all(scratch).expect("scratch");
    let script = |text: &str| {
        let started = Instant::now();
        let status =
            Command::new("bash").arg("-ec").arg(text).current_dir(scratch).status().expect("bash");
        assert!(status.success(), "the floor script failed: {text}");
        started.elapsed()
    };
    let (mut creates, mut moves) = (Vec::new(), Vec::new());
    for i in 0..SAMPLES {
        creates.push(script(&format!(
            "truncate -s 64M v{i}; d=$(losetup --find --show v{i}); mkfs.ext4 -q -m 0 $d; mkdir a{i}; mount $d a{i}; echo $d > d{i}"
        )));
        moves.push(script(&format!(
            "umount a{i}; losetup -d $(cat d{i}); d=$(losetup --find --show v{i}); mkdir b{i}; mount $d b{i}; echo $d > d{i}"
        )));
        script(&format!("umount b{i}; losetup -d $(cat d{i}); rm v{i}"));
    }
    (creates, moves)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Prints the medians of the agent and the floor as `what`, and records them as `figure`.
fn row(what: &str, figure: &str, ours: &mut [Duration], floor: &mut [Duration], target: &str) {
    let (ours, floor) = (median(ours).as_secs_f64() * 1e3, median(floor).as_secs_f64() * 1e3);
    let ratio = ours / floor;
    println!("{what:<40} {ours:>7.1} ms {floor:>7.1} ms {ratio:>7.2}×   {target} (medians)");
    let baseline =
        Baseline { value: floor, name: "shell-script floor", ratio, ratio_means: "× the floor" };
    let figure = format!("{figure}, until shown in state, median");
    bench_results::record("agent", &figure, ours, "ms", Some(target), Some(&baseline));
}

/// CPU time the agents use in 10 s with nothing to do.
fn idle_cpu(cluster: &LocalCluster) {
    let pids: Vec<u32> = cluster.agents.iter().filter_map(|a| a.pid()).collect();
    let ticks = || -> u64 { pids.iter().map(|pid| cpu_ticks(*pid)).sum() };
    std::thread::sleep(Duration::from_secs(2));
    let before = ticks();
    std::thread::sleep(Duration::from_secs(10));
    let used = ticks() - before;
    let (per_tick_ms, agents) = (1000 / clock_ticks_per_second(), pids.len());
    let cpu_ms = used * per_tick_ms;
    println!(
        "{:<40} {cpu_ms} ms of CPU for {agents} agents in 10 s (measured in {per_tick_ms} ms ticks)",
        "idle"
    );
    let what = format!("idle: CPU of {agents} agents in 10 s ({per_tick_ms} ms ticks)");
    bench_results::record("agent", &what, cpu_ms as f64, "ms", None, None);
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14 and stime 15.
    fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0)
}

fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().ok();
    output.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100)
}
