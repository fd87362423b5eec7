//! How long a crowd of new volumes takes: `CROWD` (default 50) datasets created at once through
//! the REST API on one node, until `/v1/state/datasets` shows every one mounted — beside one
//! create alone, and the ratio. Also when the first and the median dataset of the crowd showed,
//! which says whether the agent reports each volume as it is ready or only the whole crowd at
//! the end; and how long the crowd's deletion takes until the state shows none of it.
//! Loopback backend, 64 MiB volumes. Prints; asserts nothing.
//!
//! Needs root and release binaries: `cargo build --release -p flocker-dataset-agent -p
//! flocker-control && cargo bench -p flocker-dataset-agent --bench crowd`. `CROWD=n` sets the
//! crowd's size; `CROWD_LOG=file` keeps the agent's log there (with `RUST_LOG=debug`, each
//! step's duration).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flocker_api::DatasetId;
use flocker_testkit::bench_results::{self, Baseline};
use flocker_testkit::{BackendKind, LocalCluster, require_root};

const ONE_SAMPLES: usize = 15;
const ROUNDS: usize = 5;

fn crowd_size() -> usize {
    std::env::var("CROWD").ok().and_then(|n| n.parse().ok()).unwrap_or(50)
}

fn main() {
    require_root();
    let crowd = crowd_size();
    let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let mut one: Vec<Duration> = (0..ONE_SAMPLES)
        .map(|_| {
            let started = Instant::now();
            let dataset = cluster.create_dataset(0).dataset_id;
            let shown = shown_times(&cluster, &[dataset], started);
            shown[0]
        })
        .collect();
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let (created, acknowledged, mut shown) = create_crowd(&cluster, crowd);
        let deleted = delete_crowd(&cluster, &created);
        shown.sort();
        rounds.push(Round {
            acknowledged,
            first: shown[0],
            middle: shown[shown.len() / 2],
            last: shown[shown.len() - 1],
            deleted,
        });
    }
    let one = ms(median(&mut one));
    let pick =
        |f: fn(&Round) -> Duration| ms(median(&mut rounds.iter().map(f).collect::<Vec<_>>()));
    let (first, middle, last, deleted) =
        (pick(|r| r.first), pick(|r| r.middle), pick(|r| r.last), pick(|r| r.deleted));
    let acknowledged = pick(|r| r.acknowledged);
    println!(
        "flocker-dataset-agent, a crowd of {crowd} new datasets at once on one node, loopback \
         backend, 64 MiB volumes; medians of {ROUNDS} rounds ({ONE_SAMPLES} samples for one)\n"
    );
    println!("{:<52} {one:>8.1} ms", "one create, until shown mounted in state");
    let ratio = last / one;
    println!(
        "{:<52} {last:>8.1} ms = {ratio:.1}× one   target ≤ 10× one",
        format!("{crowd} creates at once, until all are shown")
    );
    println!("{:<52} {first:>8.1} ms", "  … until the first is shown");
    println!("{:<52} {middle:>8.1} ms", "  … until half are shown");
    println!("{:<52} {acknowledged:>8.1} ms", "  … until the service acknowledged the last create");
    println!("{:<52} {deleted:>8.1} ms", format!("{crowd} deletes at once, until none is shown"));
    record(crowd, one, first, middle, last, deleted);
    if let Some(path) = std::env::var_os("CROWD_LOG") {
        std::fs::write(path, cluster.agents[0].log()).expect("CROWD_LOG");
    }
}

struct Round {
    /// Until the control service had acknowledged every create.
    acknowledged: Duration,
    first: Duration,
    middle: Duration,
    last: Duration,
    deleted: Duration,
}

/// Creates `crowd` datasets at once (a thread each, as many isolators would); their ids, when
/// the last create was acknowledged, and when each was first shown mounted, from the start.
fn create_crowd(cluster: &LocalCluster, crowd: usize) -> (Vec<DatasetId>, Duration, Vec<Duration>) {
    let started = Instant::now();
    let created: Vec<DatasetId> = std::thread::scope(|scope| {
        let creates: Vec<_> =
            (0..crowd).map(|_| scope.spawn(|| cluster.create_dataset(0).dataset_id)).collect();
        creates.into_iter().map(|c| c.join().expect("a create")).collect()
    });
    let acknowledged = started.elapsed();
    let shown = shown_times(cluster, &created, started);
    (created, acknowledged, shown)
}

/// Polls the state every millisecond until every dataset shows a path; when each first did,
/// from `started`.
fn shown_times(cluster: &LocalCluster, datasets: &[DatasetId], started: Instant) -> Vec<Duration> {
    let deadline = started + Duration::from_secs(120);
    let mut shown: BTreeMap<DatasetId, Duration> = BTreeMap::new();
    while shown.len() < datasets.len() {
        assert!(Instant::now() < deadline, "not all mounted in time\n{}", cluster.logs());
        let states = cluster.client.dataset_states().expect("the state");
        let at = started.elapsed();
        for state in states.iter().filter(|s| s.path.is_some()) {
            if datasets.contains(&state.dataset_id) {
                shown.entry(state.dataset_id).or_insert(at);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    shown.into_values().collect()
}

/// Deletes the datasets at once and waits until the state shows none of them; how long that
/// took.
fn delete_crowd(cluster: &LocalCluster, datasets: &[DatasetId]) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for dataset in datasets {
            scope.spawn(|| cluster.client.delete_dataset(dataset, None).expect("a delete"));
        }
    });
    let doomed: BTreeSet<&DatasetId> = datasets.iter().collect();
    let deadline = started + Duration::from_secs(120);
    loop {
        let states = cluster.client.dataset_states().expect("the state");
        if !states.iter().any(|s| doomed.contains(&s.dataset_id)) {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "not all deleted in time\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn record(crowd: usize, one: f64, first: f64, middle: f64, last: f64, deleted: f64) {
    let record = |what: &str, value: f64, target, baseline: Option<&Baseline>| {
        bench_results::record("agent", what, value, "ms", target, baseline);
    };
    let against_one = |value: f64| Baseline {
        value: one,
        name: "one create",
        ratio: value / one,
        ratio_means: "× one",
    };
    record("one create on a node alone, until shown in state, median", one, None, None);
    let all = format!("{crowd} creates at once on one node, until all are shown in state, median");
    record(&all, last, Some("≤ 10× one"), Some(&against_one(last)));
    let first_what = format!("{crowd} creates at once: until the first is shown, median");
    record(&first_what, first, None, Some(&against_one(first)));
    let half = format!("{crowd} creates at once: until half are shown, median");
    record(&half, middle, None, Some(&against_one(middle)));
    let gone = format!("{crowd} deletes at once, until none is shown in state, median");
    record(&gone, deleted, None, None);
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
