//! Issue 17's figures through the real system: a volume moving between two nodes' own disks.
//! A real control service and two real agents (LocalCluster), each node's pool a btrfs on a
//! sparse file of its own (3 GiB, loop device, quotas on), the volume pushed from one agent to
//! the other over mutual TLS, as in production. `transfer.rs` measures the same with the
//! transfer primitives alone; this adds what the agents do around them: the control service's
//! word, the unmount, the set-aside, the promotion, the mount and the state report.
//!
//! Each round, on a fresh cluster, for a volume of S bytes (S + 64 MiB its maximum size):
//! - pre-copy: volume A on node 0 filled with S random bytes (synced), a lease on it for node 0,
//!   and "the task" writing on (1% of S, in 64 KiB blocks at random offsets, synced, from
//!   another thread) while A is moved to node 1: from the move until node 1's pool holds a
//!   received snapshot of A marked complete (read-only), and until node 0's agent logs the
//!   pre-copy sent (node 1 answered, after syncing what it received: `btrfs receive` marks the
//!   snapshot read-only before that sync, which takes seconds for 1 GiB);
//! - handoff downtime: once the pre-copy was sent and the writer stopped, from the lease's
//!   release until the control service's `/v1/state/datasets` shows A mounted on node 1
//!   (polled every 5 ms);
//! - naive: volume B on node 0 with the same bytes, no lease, no writer, moved to node 1: from
//!   the move until B is shown mounted there (a full copy and the handoff, back to back), as a
//!   move that copies everything after the task stops would.
//!
//! The moved volumes' files are checked against node 0's (SHA-256) outside the timed parts.
//! Prints the figures and their medians; asserts none. Needs root and the release binaries:
//! `cargo build --release --workspace && cargo bench -p flocker-dataset-agent --bench move_between_nodes`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod workload;

use flocker_api::{AcquireLease, CreateDataset, DatasetId};
use flocker_testkit::bench_results::{self, Baseline};
use flocker_testkit::{LocalCluster, require_root};
use rand::RngCore;
use workload::{GIB, MIB, TARGET, digests, median, overwrite, size_text};

/// Each node's pool (a sparse file): room for two 1 GiB volumes, their snapshots and changes.
const POOL: u64 = 3 * GIB;
const SIZES: [u64; 2] = [256 * MIB, GIB];
/// A volume's maximum size beyond the bytes written into it.
const HEADROOM: u64 = 64 * MIB;
const ROUNDS: usize = 3;
/// Rounds stop early once the whole bench would pass this (the machine may be slow).
const BUDGET: Duration = Duration::from_secs(360);
/// How often the control service's state is asked while a move's end is timed.
const MOUNTED_POLL: Duration = Duration::from_millis(5);
/// How often node 1's pool is looked at for a complete pre-copy (each look runs `btrfs`).
const SNAPSHOT_POLL: Duration = Duration::from_millis(10);
/// The longest any step may take before the bench gives up, with every log.
const TIMEOUT: Duration = Duration::from_secs(180);

/// One round's figures.
#[derive(Debug, Clone)]
struct Round {
    /// From the move until node 1 holds the pre-copy's snapshot marked complete (read-only).
    pre_copy: Duration,
    /// From the move until node 0's agent logs the pre-copy sent: node 1 answered, after its
    /// sync.
    pre_copy_sent: Duration,
    /// From the pre-copy sent to the release (stopping the writer, hashing node 0's files).
    gap: Duration,
    downtime: Duration,
    naive: Duration,
    /// What node 0's agent says it sent of the leased volume, and of the naive one.
    sent: Vec<String>,
    naive_sent: Vec<String>,
}

fn main() {
    require_root();
    let started = Instant::now();
    let mut results = Vec::new();
    let mut notes = Vec::new();
    for size in SIZES {
        let mut rounds: Vec<Round> = Vec::new();
        let mut longest = Duration::ZERO;
        for index in 0..ROUNDS {
            if index > 0 && started.elapsed() + longest > BUDGET {
                notes.push(format!(
                    "{}: {index} round(s) instead of {ROUNDS}, to stay within {} s",
                    size_text(size),
                    BUDGET.as_secs()
                ));
                break;
            }
            let began = Instant::now();
            let round = round(size);
            longest = longest.max(began.elapsed());
            println!(
                "{} round {}: pre-copy {:.2} s (sent {:.2} s), handoff downtime {:.3} s, naive \
                 {:.2} s ({:.1}%; released {:.2} s after the pre-copy was sent; round {:.0} s)\n    \
                 node 0 sent, leased: {}\n    node 0 sent, naive: {}",
                size_text(size),
                index + 1,
                round.pre_copy.as_secs_f64(),
                round.pre_copy_sent.as_secs_f64(),
                round.downtime.as_secs_f64(),
                round.naive.as_secs_f64(),
                100.0 * round.downtime.as_secs_f64() / round.naive.as_secs_f64(),
                round.gap.as_secs_f64(),
                began.elapsed().as_secs_f64(),
                round.sent.join("; "),
                round.naive_sent.join("; "),
            );
            rounds.push(round);
        }
        results.push((size, rounds));
    }
    print_table(&results, &notes);
    println!("(whole bench {:.0} s)", started.elapsed().as_secs_f64());
}

/// One round on a fresh two-node cluster: the leased move of a volume of `size` bytes, then
/// the naive move of another.
fn round(size: u64) -> Round {
    let cluster = LocalCluster::start_btrfs(2, POOL, &[]);
    let mut bytes = vec![0u8; size as usize];
    rand::rng().fill_bytes(&mut bytes);

    // The task runs on node 0 under its lease, and writes on while the move's pre-copy runs.
    let dataset = create(&cluster, size);
    let path = cluster.wait_mounted(&dataset, 0);
    fill(&path.join("data"), &bytes);
    let lease = AcquireLease { dataset_id: dataset, node_uuid: cluster.node(0), expires: None };
    cluster.client.acquire_lease(&lease).expect("acquire the lease");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = thread::spawn({
        let (file, stop) = (path.join("data"), Arc::clone(&stop));
        move || overwrite(&file, size, &stop)
    });
    let received = pool(&cluster, 1).join("snapshots").join(dataset.to_string());
    let began = Instant::now();
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).expect("move");
    wait(&cluster, "node 1 to hold a complete pre-copy", SNAPSHOT_POLL, || {
        has_complete_snapshot(&received)
    });
    let pre_copy = began.elapsed();
    wait(&cluster, "node 0 to have sent the pre-copy", SNAPSHOT_POLL, || {
        sends(&cluster, &dataset).iter().any(|sent| sent.starts_with("pre-copy"))
    });
    let pre_copy_sent = began.elapsed();

    // The task stops: the writer finishes its share and syncs, and the lease is released.
    let complete = Instant::now();
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer panicked");
    let before = digests(&path);
    let gap = complete.elapsed();
    let released = Instant::now();
    cluster.client.release_lease(&dataset).expect("release the lease");
    let moved = wait_mounted(&cluster, &dataset, 1);
    let downtime = released.elapsed();
    assert_eq!(digests(&moved), before, "the handed-off volume differs from node 0's");
    let sent = sends(&cluster, &dataset);
    settle(&cluster, &dataset);

    // Naive: the same bytes, nothing running, moved whole.
    let naive_dataset = create(&cluster, size);
    let path = cluster.wait_mounted(&naive_dataset, 0);
    fill(&path.join("data"), &bytes);
    drop(bytes);
    let before = digests(&path);
    let began = Instant::now();
    cluster.client.move_dataset(&naive_dataset, &cluster.node(1), None).expect("move");
    let moved = wait_mounted(&cluster, &naive_dataset, 1);
    let naive = began.elapsed();
    assert_eq!(digests(&moved), before, "the naively moved volume differs from node 0's");
    let naive_sent = sends(&cluster, &naive_dataset);
    Round { pre_copy, pre_copy_sent, gap, downtime, naive, sent, naive_sent }
}

/// A new volume on node 0 with room for `size` bytes.
fn create(cluster: &LocalCluster, size: u64) -> DatasetId {
    let request = CreateDataset {
        primary: cluster.node(0),
        dataset_id: None,
        maximum_size: Some(size + HEADROOM),
        metadata: Default::default(),
    };
    cluster.client.create_dataset(&request, None).expect("create a dataset").dataset_id
}

/// Node `index`'s btrfs pool.
fn pool(cluster: &LocalCluster, index: usize) -> PathBuf {
    cluster.shared_root.join(&cluster.agents[index].name).join("pool")
}

/// Polls `condition` every `every`; gives up with every log after [`TIMEOUT`].
fn wait(cluster: &LocalCluster, what: &str, every: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", cluster.logs());
        thread::sleep(every);
    }
}

/// Waits until the control service's state shows `dataset` mounted on node `index`, asking
/// every [`MOUNTED_POLL`]; its path.
fn wait_mounted(cluster: &LocalCluster, dataset: &DatasetId, index: usize) -> PathBuf {
    let mut path = None;
    wait(cluster, &format!("{dataset} to be mounted on node {index}"), MOUNTED_POLL, || {
        path = cluster.mounted_path(dataset, index);
        path.is_some()
    });
    path.unwrap_or_default()
}

/// Whether `directory` holds a complete received snapshot (read-only: `btrfs receive` sets it
/// at the very end), not merely one arriving.
fn has_complete_snapshot(directory: &Path) -> bool {
    let Ok(entries) = fs::read_dir(directory) else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        let output = Command::new("btrfs")
            .args(["property", "get", "-ts"])
            .arg(entry.path())
            .arg("ro")
            .output();
        output.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "ro=true")
    })
}

/// Waits (untimed) until the move of `dataset` is over on both sides: nothing of it left on
/// node 0, and node 1 holding its volume and no snapshot, so that the next move runs alone.
fn settle(cluster: &LocalCluster, dataset: &DatasetId) {
    let name = dataset.to_string();
    let nothing_of = |index: usize| {
        let pool = pool(cluster, index);
        let volume = fs::read_dir(pool.join("volumes")).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&name))
        });
        let snapshots = fs::read_dir(pool.join("snapshots").join(&name))
            .is_ok_and(|mut entries| entries.next().is_some());
        let aside = fs::read_dir(pool.join("handoff")).is_ok_and(|nodes| {
            nodes.filter_map(Result::ok).any(|node| {
                fs::read_dir(node.path()).is_ok_and(|entries| {
                    let mut names = entries.filter_map(Result::ok).map(|e| e.file_name());
                    names.any(|n| n.to_string_lossy().starts_with(&name))
                })
            })
        });
        (volume, snapshots, aside)
    };
    cluster.wait_for("node 0 to let go of the moved volume", TIMEOUT, || {
        nothing_of(0) == (false, false, false)
    });
    cluster.wait_for("node 1 to delete the moved volume's snapshots", TIMEOUT, || {
        nothing_of(1) == (true, false, false)
    });
    let transfers = || cluster.client.dataset_transfers().ok().flatten().unwrap_or_default();
    cluster.wait_for("no push under way", TIMEOUT, || transfers().is_empty());
}

/// What node 0's agent logged it sent of `dataset`: "pre-copy, 256 MiB in 1.02 s", …
fn sends(cluster: &LocalCluster, dataset: &DatasetId) -> Vec<String> {
    let marker = format!("dataset {dataset}: sent snapshot ");
    let log = cluster.agents[0].log();
    let lines = log.lines().filter_map(|line| line.split_once(&marker).map(|(_, rest)| rest));
    lines
        .filter_map(|rest| Some(rest.rsplit_once('(')?.1.trim_end_matches(')').to_owned()))
        .collect()
}

/// Writes `bytes` to `file` in 1 MiB pieces, then syncs it.
fn fill(file: &Path, bytes: &[u8]) {
    let mut out = fs::File::create(file).expect("create the data file");
    for piece in bytes.chunks(MIB as usize) {
        out.write_all(piece).expect("write the data file");
    }
    out.sync_all().expect("sync the data file");
}

fn print_table(results: &[(u64, Vec<Round>)], notes: &[String]) {
    println!(
        "\nflocker-dataset-agent move between nodes: 2-phase push between two real agents \
         (btrfs pools on loop devices, mutual TLS, a real control service), medians of the rounds\n"
    );
    println!(
        "{:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>14}  target",
        "size", "rounds", "pre-copy", "pre-copy", "handoff", "naive", "downtime/naive"
    );
    println!(
        "{:>8} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "", "", "received", "sent", "downtime", "full move"
    );
    let part = "agent-move-between-nodes";
    let mut verdict = None;
    for (size, rounds) in results {
        let seconds = |pick: fn(&Round) -> Duration| {
            median(rounds.iter().map(|r| pick(r).as_secs_f64()), |x, y| (x + y) / 2.0)
        };
        let pre_copy = seconds(|r| r.pre_copy);
        let pre_copy_sent = seconds(|r| r.pre_copy_sent);
        let downtime = seconds(|r| r.downtime);
        let naive = seconds(|r| r.naive);
        let percent = 100.0 * downtime / naive;
        let target = (*size == GIB).then_some("≤ 10% of the naive move");
        let met = target.map(|_| percent <= 10.0);
        if met.is_some() {
            verdict = met;
        }
        let shown = match met {
            Some(true) => "≤ 10%: met",
            Some(false) => "≤ 10%: NOT met",
            None => "",
        };
        println!(
            "{:>8} {:>6} {:>8.2} s {:>8.2} s {:>8.3} s {:>8.2} s {:>13.1}%  {shown}",
            size_text(*size),
            rounds.len(),
            pre_copy,
            pre_copy_sent,
            downtime,
            naive,
            percent,
        );

        let of = |what: &str| {
            format!("{what}, {} volume, median of {} rounds", size_text(*size), rounds.len())
        };
        let record = |what: &str, value: f64, target, baseline| {
            bench_results::record(part, &of(what), value, "s", target, baseline);
        };
        record(
            "pre-copy through real agents (move to a complete snapshot on B)",
            pre_copy,
            None,
            None,
        );
        record(
            "pre-copy through real agents (move to B's answer, after its sync)",
            pre_copy_sent,
            None,
            None,
        );
        record(
            "naive move through real agents (move to mounted on B, no lease)",
            naive,
            None,
            None,
        );
        let baseline = Baseline {
            value: naive,
            name: "naive move",
            ratio: percent,
            ratio_means: "% of the naive move",
        };
        record(
            "handoff downtime through real agents (lease released to mounted on B)",
            downtime,
            target,
            Some(&baseline),
        );
    }
    let verdict = match verdict {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    println!("\ntarget: {TARGET}: {verdict}");
    println!(
        "pre-copy: from the move (REST), while a writer overwrites 1% of the volume in 64 KiB \
         blocks under a lease, until node 1's pool holds the received snapshot marked complete \
         (read-only: received), and until node 0's agent logs it sent (node 1 answered, after \
         syncing it: sent)"
    );
    println!(
        "handoff downtime: from the lease's release (REST; after the pre-copy was sent, the \
         writer stopped and synced) until /v1/state/datasets shows the volume mounted on node 1 \
         (polled every 5 ms)"
    );
    println!(
        "naive move: another volume with the same bytes, no lease: from the move until it is \
         shown mounted on node 1 (full copy + handoff); every moved volume's SHA-256 matched \
         node 0's (checked untimed)"
    );
    for note in notes {
        println!("note: {note}");
    }
}
