//! Flocker's 2-phase push with the real transfer primitives, between local btrfs pools (each a
//! sparse file on a loop device, quotas on): how long a volume cannot be used when it moves.
//!
//! Each round, on fresh pools A, B and C and a volume filled with random bytes:
//! - pre-copy: snapshot 1 of the volume while "the task" still writes (1% of the volume, in
//!   64 KiB blocks at random offsets, from another thread), sent whole through an OS pipe into
//!   `btrfs receive` on B;
//! - handoff: once the writer stopped (the lease is released), snapshot 2, its difference from
//!   1 sent to B, received and promoted into a volume there: the downtime;
//! - naive: snapshot 2 sent whole to C, received and promoted, as a move that copies everything
//!   after the task stops would.
//!
//! The promoted volumes' files are checked against A's (SHA-256) outside the timed parts. Prints
//! medians; asserts no figure. Needs root: `cargo bench -p flocker-dataset-agent --bench transfer`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod workload;

use flocker_api::DatasetId;
use flocker_dataset_agent::transfer::plan::{Phase, Send, push_step};
use flocker_dataset_agent::transfer::{Pool, Snapshot, promote, receive, send, take_snapshot};
use flocker_testkit::bench_results::{self, Baseline};
use flocker_testkit::btrfs::BtrfsPool;
use flocker_testkit::require_root;
use rand::RngCore;
use workload::{GIB, MIB, TARGET, digests, median, overwrite, size_text};

/// Each pool's sparse file: room for a 1 GiB volume, its snapshots and what changed.
const POOL: u64 = 3 * GIB;
const SIZES: [u64; 2] = [256 * MIB, GIB];
const ROUNDS: usize = 3;
/// Rounds stop early once the whole bench would pass this (the machine may be slow).
const BUDGET: Duration = Duration::from_secs(330);

/// A node's pool.
struct Node {
    _disk: BtrfsPool,
    pool: Pool,
}

impl Node {
    fn new() -> Self {
        let disk = BtrfsPool::new(POOL);
        let pool = Pool::new(disk.path());
        Self { _disk: disk, pool }
    }

    /// A new, empty volume subvolume, as the btrfs backend makes one.
    fn volume(&self, name: &str) -> PathBuf {
        let volume = self.pool.volumes().join(name);
        fs::create_dir_all(self.pool.volumes()).expect("create volumes/");
        let output = Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&volume)
            .output()
            .expect("run btrfs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        volume
    }
}

/// One round's figures.
#[derive(Debug, Clone, Copy)]
struct Round {
    pre_copy: Duration,
    pre_copy_bytes: u64,
    downtime: Duration,
    delta_bytes: u64,
    naive: Duration,
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
                "{} round {}: pre-copy {:.2} s ({}), handoff {:.3} s ({}), naive {:.2} s \
                 (round {:.0} s)",
                size_text(size),
                index + 1,
                round.pre_copy.as_secs_f64(),
                mib_text(round.pre_copy_bytes),
                round.downtime.as_secs_f64(),
                mib_text(round.delta_bytes),
                round.naive.as_secs_f64(),
                began.elapsed().as_secs_f64()
            );
            rounds.push(round);
        }
        results.push((size, rounds));
    }
    print_table(&results, &notes);
}

/// One push of a fresh volume of `size` bytes from A to B, and the same volume copied whole to C.
fn round(size: u64) -> Round {
    let (a, b, c) = (Node::new(), Node::new(), Node::new());
    let dataset = DatasetId::random();
    let name = format!("{dataset}_{}", 2 * size);
    let volume = a.volume(&name);
    fill(&volume.join("data"), size);

    // Pre-copy: the task runs, and writes on while its first snapshot goes to B.
    let began = Instant::now();
    let step = push_step(Phase::PreCopy, &[], &[]);
    let first = take_snapshot(&a.pool, &volume, &dataset, step.take).expect("snapshot 1");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = thread::spawn({
        let (file, stop) = (volume.join("data"), Arc::clone(&stop));
        move || overwrite(&file, size, &stop)
    });
    let received = push(&first, None, &b.pool, &dataset);
    let pre_copy = began.elapsed();
    let pre_copy_bytes = received.1;

    // The task stops: the writer finishes its share and syncs, and the lease is released.
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer panicked");
    let began = Instant::now();
    let step = push_step(Phase::Final, &[first.held()], &[received.0.held()]);
    assert_eq!(step.send, Send::Incremental { parent: first.generation, snapshot: step.take });
    let second = take_snapshot(&a.pool, &volume, &dataset, step.take).expect("snapshot 2");
    let (latest, delta_bytes) = push(&second, Some(&first), &b.pool, &dataset);
    let on_b = promote(&b.pool, &latest, &name, Some(2 * size)).expect("promote on B");
    let downtime = began.elapsed();

    // Naive: the same final snapshot, copied whole after the task stopped.
    let began = Instant::now();
    let (whole, _) = push(&second, None, &c.pool, &dataset);
    let on_c = promote(&c.pool, &whole, &name, Some(2 * size)).expect("promote on C");
    let naive = began.elapsed();

    let expected = digests(&volume);
    assert_eq!(digests(&on_b), expected, "the handed-off volume differs from A's");
    assert_eq!(digests(&on_c), expected, "the naively copied volume differs from A's");
    Round { pre_copy, pre_copy_bytes, downtime, delta_bytes, naive }
}

/// Sends `snapshot` (its difference from `parent`) through an OS pipe into `btrfs receive` on
/// `pool`; the received snapshot and the stream's length.
fn push(
    snapshot: &Snapshot,
    parent: Option<&Snapshot>,
    pool: &Pool,
    dataset: &DatasetId,
) -> (Snapshot, u64) {
    let (reader, writer) = io::pipe().expect("pipe");
    let sender = thread::spawn({
        let (snapshot, parent) = (snapshot.clone(), parent.cloned());
        move || send(&snapshot, parent.as_ref(), writer, |_| {})
    });
    let received = receive(pool, dataset, reader, None).expect("receive");
    let sent = sender.join().expect("the sender panicked").expect("send");
    assert_eq!((received.bytes, received.digest), (sent.bytes, sent.digest));
    (received.snapshot, sent.bytes)
}

/// Writes `size` random (incompressible) bytes to `file` in 1 MiB chunks, then syncs it.
fn fill(file: &Path, size: u64) {
    let mut out = fs::File::create(file).expect("create the data file");
    let (mut rng, mut chunk) = (rand::rng(), vec![0u8; MIB as usize]);
    for _ in 0..size / MIB {
        rng.fill_bytes(&mut chunk);
        out.write_all(&chunk).expect("write the data file");
    }
    out.sync_all().expect("sync the data file");
}

fn print_table(results: &[(u64, Vec<Round>)], notes: &[String]) {
    println!(
        "\nflocker-dataset-agent transfer: 2-phase push between local btrfs pools (loop devices, \
         quotas on), medians of the rounds\n"
    );
    println!(
        "{:>8} {:>6} {:>10} {:>12} {:>10} {:>12} {:>10} {:>14}",
        "size", "rounds", "pre-copy", "pre-copy", "handoff", "delta", "naive", "downtime/naive"
    );
    let second = format!(
        "{:>8} {:>6} {:>10} {:>12} {:>10} {:>12} {:>10}",
        "", "", "time", "stream", "downtime", "stream", "full move"
    );
    println!("{}", second.trim_end());
    let part = "agent-transfer";
    for (size, rounds) in results {
        let seconds = |pick: fn(&Round) -> Duration| {
            median(rounds.iter().map(|r| pick(r).as_secs_f64()), |x, y| (x + y) / 2.0)
        };
        let bytes = |pick: fn(&Round) -> u64| median(rounds.iter().map(pick), |x, y| (x + y) / 2);
        let pre_copy = seconds(|r| r.pre_copy);
        let pre_copy_bytes = bytes(|r| r.pre_copy_bytes);
        let downtime = seconds(|r| r.downtime);
        let delta_bytes = bytes(|r| r.delta_bytes);
        let naive = seconds(|r| r.naive);
        let percent = 100.0 * downtime / naive;
        println!(
            "{:>8} {:>6} {:>8.2} s {:>12} {:>8.3} s {:>12} {:>8.2} s {:>13.1}%",
            size_text(*size),
            rounds.len(),
            pre_copy,
            mib_text(pre_copy_bytes),
            downtime,
            mib_text(delta_bytes),
            naive,
            percent
        );

        let of = |what: &str| {
            format!("{what}, {} volume, median of {} rounds", size_text(*size), rounds.len())
        };
        let record = |what: &str, value: f64, unit: &str, target, baseline| {
            bench_results::record(part, &of(what), value, unit, target, baseline);
        };
        record("pre-copy (snapshot, full send, receive)", pre_copy, "s", None, None);
        record("pre-copy stream", pre_copy_bytes as f64 / MIB as f64, "MiB", None, None);
        record("naive full move after the task stops", naive, "s", None, None);
        record("handoff delta stream", delta_bytes as f64 / MIB as f64, "MiB", None, None);
        let baseline = Baseline {
            value: naive,
            name: "naive full move",
            ratio: percent,
            ratio_means: "% of the naive move",
        };
        let target = (*size == GIB).then_some("≤ 10% of the naive move");
        record(
            "handoff downtime (writer stop to promoted volume)",
            downtime,
            "s",
            target,
            Some(&baseline),
        );
    }
    println!("\ntarget: {TARGET}");
    println!(
        "pre-copy: snapshot 1 + full send through a pipe + receive (synced), while a writer \
         overwrites 1% of the volume in 64 KiB blocks"
    );
    println!(
        "handoff downtime: from the writer's stop (after its fsync) to the promoted volume on B: \
         snapshot 2 + incremental send + receive + promote"
    );
    println!(
        "naive full move: full send of snapshot 2 to a fresh pool + receive + promote; every \
         promoted volume's SHA-256 matched A's (checked untimed)"
    );
    for note in notes {
        println!("note: {note}");
    }
}

/// A stream's length in MiB with a decimal, so that its overhead shows: "1025.1 MiB".
fn mib_text(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}
