//! The ZooKeeper store beside the journal, in one run: a real 3-server ensemble on loopback, a
//! journal-backed flocker-control, and two ZooKeeper-backed ones (A and B) sharing the
//! ensemble, each store with 10,000 datasets on 100 nodes: created through the journal
//! service's API, then copied into ZooKeeper with `flocker-control migrate` (or, if the copy
//! fails, created through A's API as well). Clients over mutual TLS with keep-alive. Prints each figure for both stores, their ratio and the targets;
//! asserts nothing. Needs Debian's `zookeeper` package (scripts/bench installs it).
//! Run: `cargo bench -p flocker-control --bench zookeeper`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flocker_api::{AcquireLease, Client, ConfigurationTag, CreateDataset, DatasetId, NodeUuid};
use flocker_testkit::bench_results::{self, Baseline};
use flocker_testkit::{ClusterCertificates, ControlProcess, ZooKeeperEnsemble};

const NODES: usize = 100;
const DATASETS: usize = 10_000;
const SAMPLES: usize = 200;
const DATASETS_PATH: &str = "/v1/configuration/datasets";
const TAG_HEADER: &str = "x-configuration-tag";
/// What the ZooKeeper store's issue asks.
const CREATE_TARGET: &str = "ZooKeeper ≤ 10 ms";
const LIST_TARGET: &str = "unchanged (local view)";

fn main() {
    let certificates = ClusterCertificates::new();
    let binary: &Path = env!("CARGO_BIN_EXE_flocker-control").as_ref();
    let journal_data = certificates.root().join("journal");

    // The datasets, through the journal service's API.
    let mut journal = ControlProcess::start(binary, &certificates, &journal_data, &[])
        .expect("start the journal-backed flocker-control");
    let started = Instant::now();
    let nodes: Vec<NodeUuid> = (0..NODES).map(|_| NodeUuid::random()).collect();
    let datasets = populate(&certificates.client(journal.rest, "bench"), &nodes);
    let populated = started.elapsed().as_secs_f64();
    println!(
        "flocker-control: the ZooKeeper store (3 servers on loopback) beside the journal, \
         {DATASETS} datasets on {NODES} nodes, mutual TLS, keep-alive, {SAMPLES} samples each\n"
    );
    println!("populated the journal through its API in {populated:.1} s");
    record("populate: datasets created through the API (journal)", populated, "s", None, None);

    // The same configuration in ZooKeeper: `migrate` locks the journal, so the service stops
    // while it copies, and starts again after.
    let ensemble = ZooKeeperEnsemble::start(3);
    let url = format!("zk://{}/flocker", ensemble.connect_string());
    journal.terminate();
    drop(journal);
    let copied = migrate(binary, &journal_data, &url);
    let journal = ControlProcess::start(binary, &certificates, &journal_data, &[])
        .expect("start the journal-backed flocker-control again");
    let zookeeper = ["zk-a", "zk-b"].map(|name| {
        let data = certificates.root().join(name);
        ControlProcess::start(binary, &certificates, &data, &["--store", &url])
            .expect("start a ZooKeeper-backed flocker-control")
    });
    let clients = Clients {
        journal: certificates.client(journal.rest, "bench"),
        a: certificates.client(zookeeper[0].rest, "bench"),
        b: certificates.client(zookeeper[1].rest, "bench"),
    };
    let zookeeper_datasets = match copied {
        Ok(seconds) => {
            println!("copied into ZooKeeper by `flocker-control migrate` in {seconds:.1} s");
            record("flocker-control migrate of them into ZooKeeper", seconds, "s", None, None);
            datasets.clone()
        }
        Err(why) => {
            println!("`flocker-control migrate` into ZooKeeper failed: {why}");
            let started = Instant::now();
            let datasets = populate(&clients.a, &nodes);
            let populated = started.elapsed().as_secs_f64();
            println!("so populated ZooKeeper through A's API instead, in {populated:.1} s");
            let what = "populate: datasets created through the API (ZooKeeper)";
            record(what, populated, "s", None, None);
            datasets
        }
    };
    // The first answers of each (connections, caches) are not what is measured.
    for client in [&clients.journal, &clients.a, &clients.b] {
        for _ in 0..3 {
            send(client, "GET", DATASETS_PATH);
        }
    }
    println!();

    let mut table = Table::default();
    measure_list(&clients, &mut table);
    measure_conditional_create(&clients, &nodes, &mut table);
    let datasets = [&datasets[..], &zookeeper_datasets[..]];
    measure_move(&clients, &nodes, datasets, &mut table);
    measure_leases(&clients, &nodes, datasets, &mut table);
    measure_cross_instance(&clients, &nodes, &mut table);
    table.print();
    report_logs(&zookeeper);
}

/// `flocker-control migrate` of the stopped journal service's store into ZooKeeper: how long
/// it took, or why it failed.
fn migrate(binary: &Path, journal: &Path, url: &str) -> Result<f64, String> {
    let started = Instant::now();
    let output = Command::new(binary)
        .arg("migrate")
        .arg("--from")
        .arg(journal)
        .args(["--to", url])
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if output.status.success() {
        return Ok(started.elapsed().as_secs_f64());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let why = stderr.lines().filter(|line| !line.trim().is_empty()).take(3).collect::<Vec<_>>();
    Err(format!("{} ({})", why.join(" / "), output.status))
}

/// The journal service, and the two ZooKeeper-backed services on one ensemble.
struct Clients {
    journal: Client,
    a: Client,
    b: Client,
}

/// 10,000 datasets, dataset `i` on node `i % 100`, created by 4 clients at once. Returns each
/// dataset with its node's index.
fn populate(client: &Client, nodes: &[NodeUuid]) -> Vec<(DatasetId, usize)> {
    let creators: Vec<_> = (0..4)
        .map(|part| {
            let (client, nodes) = (client.clone(), nodes.to_vec());
            std::thread::spawn(move || {
                (part..DATASETS)
                    .step_by(4)
                    .map(|i| {
                        let request = request(nodes[i % NODES], i);
                        let dataset = client.create_dataset(&request, None).expect("create");
                        (i, dataset.dataset_id)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut created: Vec<(usize, DatasetId)> =
        creators.into_iter().flat_map(|c| c.join().expect("creator")).collect();
    created.sort_by_key(|(i, _)| *i);
    created.into_iter().map(|(i, id)| (id, i % NODES)).collect()
}

fn request(primary: NodeUuid, i: usize) -> CreateDataset {
    CreateDataset {
        primary,
        dataset_id: None,
        maximum_size: Some(1 << 30),
        metadata: [("name".to_owned(), format!("volume-{i}"))].into(),
    }
}

/// The 10,000-dataset list, nothing written meanwhile: the journal serves the answer it kept;
/// a ZooKeeper-backed service first confirms its view is current (a `sync` and a read).
fn measure_list(clients: &Clients, table: &mut Table) {
    let list = |client: &Client| {
        let client = client.clone();
        move |_| {
            let started = Instant::now();
            send(&client, "GET", DATASETS_PATH);
            [started.elapsed()]
        }
    };
    let [journal] = alternate(list(&clients.journal), list(&clients.a));
    let figure = format!("GET {DATASETS_PATH} ({DATASETS} datasets)");
    table.row(&figure, journal, LIST_TARGET);
}

/// The Flocker client's conditional create: the tag read (not timed), then the create with it.
fn measure_conditional_create(clients: &Clients, nodes: &[NodeUuid], table: &mut Table) {
    let create = |client: &Client, offset: usize| {
        let client = client.clone();
        move |i| {
            let tag = tag(&client);
            let request = request(nodes[i % NODES], offset + i);
            let started = Instant::now();
            client.create_dataset(&request, Some(&tag)).expect("conditional create");
            [started.elapsed()]
        }
    };
    let [figures] = alternate(create(&clients.journal, 100_000), create(&clients.a, 200_000));
    table.row("conditional create (X-If-Configuration-Matches)", figures, CREATE_TARGET);
}

/// Moves: each dataset to the next node. `datasets`: the journal's, then ZooKeeper's.
fn measure_move(
    clients: &Clients,
    nodes: &[NodeUuid],
    [journal, zookeeper]: [&[(DatasetId, usize)]; 2],
    table: &mut Table,
) {
    let moves = |client: &Client, datasets: &[(DatasetId, usize)]| {
        let (client, datasets) = (client.clone(), datasets.to_vec());
        move |i: usize| {
            let (dataset, node) = datasets[i];
            let started = Instant::now();
            client.move_dataset(&dataset, &nodes[(node + 1) % NODES], None).expect("move");
            [started.elapsed()]
        }
    };
    let [figures] = alternate(moves(&clients.journal, journal), moves(&clients.a, zookeeper));
    table.row("move (POST …/datasets/<id>, new primary)", figures, "");
}

/// A lease on a dataset for its node, then its release.
fn measure_leases(
    clients: &Clients,
    nodes: &[NodeUuid],
    [journal, zookeeper]: [&[(DatasetId, usize)]; 2],
    table: &mut Table,
) {
    let leases = |client: &Client, datasets: &[(DatasetId, usize)]| {
        let (client, datasets) = (client.clone(), datasets[SAMPLES..].to_vec());
        move |i: usize| {
            let (dataset_id, node) = datasets[i];
            let request = AcquireLease { dataset_id, node_uuid: nodes[node], expires: None };
            let started = Instant::now();
            client.acquire_lease(&request).expect("acquire a lease");
            let acquired = started.elapsed();
            let started = Instant::now();
            client.release_lease(&dataset_id).expect("release a lease").expect("a lease");
            [acquired, started.elapsed()]
        }
    };
    let [acquires, releases] =
        alternate(leases(&clients.journal, journal), leases(&clients.a, zookeeper));
    table.row("lease acquire (POST /v1/configuration/leases)", acquires, "");
    table.row("lease release (DELETE …/leases/<id>)", releases, "");
}

/// B right after a create on A. B's follower hears of A's write from a watch, and may or may
/// not have caught up when B's request comes. Beside each: the journal service doing the same
/// right after a create of its own (its list must be rendered again too).
fn measure_cross_instance(clients: &Clients, nodes: &[NodeUuid], table: &mut Table) {
    table.section("right after a create on another instance (journal: on itself)");
    // A Flocker client of B: the tag from B's list, then the conditional create on B.
    let conditional = |first: &Client, second: &Client, offset: usize| {
        let (first, second) = (first.clone(), second.clone());
        move |i| {
            first.create_dataset(&request(nodes[i % NODES], offset + i), None).expect("create");
            let cycle = Instant::now();
            let tag = tag(&second);
            let listed = cycle.elapsed();
            let started = Instant::now();
            let request = request(nodes[(i + 1) % NODES], offset + SAMPLES + i);
            second.create_dataset(&request, Some(&tag)).expect("conditional create");
            [listed, started.elapsed(), cycle.elapsed()]
        }
    };
    let [lists, creates, cycles] = alternate(
        conditional(&clients.journal, &clients.journal, 300_000),
        conditional(&clients.a, &clients.b, 400_000),
    );
    table.row("list on B (read-your-writes)", lists, "");
    table.row("  then conditional create on B, tag from that list", creates, "");
    table.row("  the two together", cycles, "");

    // No tag: B may decide on a view one write behind, be refused, catch up and decide again.
    let unconditional = |first: &Client, second: &Client, offset: usize| {
        let (first, second) = (first.clone(), second.clone());
        move |i| {
            first.create_dataset(&request(nodes[i % NODES], offset + i), None).expect("create");
            let request = request(nodes[(i + 1) % NODES], offset + SAMPLES + i);
            let started = Instant::now();
            second.create_dataset(&request, None).expect("create");
            [started.elapsed()]
        }
    };
    let [figures] = alternate(
        unconditional(&clients.journal, &clients.journal, 500_000),
        unconditional(&clients.a, &clients.b, 600_000),
    );
    table.row("create on B without a tag (write after write)", figures, "");
}

/// `SAMPLES` samples of each store, taken in turn (journal, ZooKeeper, journal, …) so that
/// whatever else this machine does weighs on both alike. Each sample gives `N` timings.
fn alternate<const N: usize>(
    mut journal: impl FnMut(usize) -> [Duration; N],
    mut zookeeper: impl FnMut(usize) -> [Duration; N],
) -> [Pair; N] {
    let mut timings: [(Vec<Duration>, Vec<Duration>); N] =
        std::array::from_fn(|_| Default::default());
    for i in 0..SAMPLES {
        for (timing, took) in timings.iter_mut().zip(journal(i)) {
            timing.0.push(took);
        }
        for (timing, took) in timings.iter_mut().zip(zookeeper(i)) {
            timing.1.push(took);
        }
    }
    timings.map(|(journal, zookeeper)| Pair {
        journal: Latency::of(journal),
        zookeeper: Latency::of(zookeeper),
    })
}

/// One figure for both stores.
struct Pair {
    journal: Latency,
    zookeeper: Latency,
}

/// What the ZooKeeper-backed services' logs say that bears on the figures: the snapshots they
/// wrote (every 1,000 changes, in the background: a write that waited behind one shows in the
/// p99s), and any thread that panicked (the follower's, say: without it, B hears of A's writes
/// only when a request of its own confirms its view).
fn report_logs(services: &[ControlProcess; 2]) {
    for (name, service) in ["A", "B"].iter().zip(services) {
        let log = service.log();
        let snapshots: Vec<&str> = log
            .lines()
            .filter_map(|line| line.split("wrote a snapshot of the configuration at ").nth(1))
            .collect();
        if !snapshots.is_empty() {
            println!("instance {name} wrote a snapshot at {}", snapshots.join(", "));
        }
        let lines: Vec<&str> = log.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.contains("panicked at")) {
            let why = lines.get(i + 1).copied().unwrap_or_default();
            println!("instance {name}: {} {why}", line.trim());
        }
    }
}

/// A request whose answer must be 2xx; the body is read but not decoded.
fn send(client: &Client, method: &str, path: &str) -> flocker_api::RawResponse {
    let response = client.send(method, path, &[], None).expect(path);
    assert!((200..300).contains(&response.status), "{method} {path}: {}", response.status);
    response
}

/// The current tag, from the list (read, not decoded).
fn tag(client: &Client) -> ConfigurationTag {
    let response = send(client, "GET", DATASETS_PATH);
    ConfigurationTag(response.header(TAG_HEADER).expect("the tag").to_owned())
}

/// Sorted timings.
struct Latency(Vec<Duration>);

impl Latency {
    fn of(mut timings: Vec<Duration>) -> Self {
        timings.sort();
        Self(timings)
    }

    /// In milliseconds.
    fn at(&self, quantile: f64) -> f64 {
        let index = ((self.0.len() - 1) as f64 * quantile).round() as usize;
        self.0[index].as_secs_f64() * 1e3
    }
}

/// What is printed at the end, in order.
#[derive(Default)]
struct Table {
    lines: Vec<Line>,
}

enum Line {
    Section(String),
    Row { figure: String, pair: Pair, target: &'static str },
}

impl Table {
    fn section(&mut self, title: &str) {
        self.lines.push(Line::Section(title.to_owned()));
    }

    /// A figure's median and p99 for both stores; recorded as it is added.
    fn row(&mut self, figure: &str, pair: Pair, target: &'static str) {
        let scope = self.lines.iter().rev().find_map(|line| match line {
            Line::Section(title) => Some(title.clone()),
            Line::Row { .. } => None,
        });
        let what = match &scope {
            Some(scope) => format!("{}, {scope}", figure.trim()),
            None => figure.to_owned(),
        };
        for (name, quantile) in [("median", 0.5), ("p99", 0.99)] {
            let (base, value) = (pair.journal.at(quantile), pair.zookeeper.at(quantile));
            let baseline = Baseline {
                value: base,
                name: "journal",
                ratio: value / base,
                ratio_means: "× the journal",
            };
            let target = (name == "median" && !target.is_empty()).then_some(target);
            let what = format!("ZooKeeper store: {what}, {name}");
            record(&what, value, "ms", target, Some(&baseline));
        }
        self.lines.push(Line::Row { figure: figure.to_owned(), pair, target });
    }

    fn print(&self) {
        println!(
            "{:<52}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>6}  target",
            "figure", "journal", "", "ZooKeeper", "", "ratio", ""
        );
        println!(
            "{:<52}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>6}",
            "", "median", "p99", "median", "p99", "median", "p99"
        );
        for line in &self.lines {
            match line {
                Line::Section(title) => println!("{title}:"),
                Line::Row { figure, pair, target } => {
                    let (j50, j99) = (pair.journal.at(0.5), pair.journal.at(0.99));
                    let (z50, z99) = (pair.zookeeper.at(0.5), pair.zookeeper.at(0.99));
                    println!(
                        "{figure:<52}  {j50:>6.2} ms  {j99:>6.2} ms  {z50:>6.2} ms  {z99:>6.2} ms  \
                         {:>5.2}×  {:>5.2}×  {target}",
                        z50 / j50,
                        z99 / j99
                    );
                }
            }
        }
        println!(
            "\ntargets (the ZooKeeper store's issue): create ≤ 10 ms median on this machine with a \
             local ensemble; the list unchanged (served from the local view)"
        );
    }
}

/// Records a figure of this bench for `scripts/bench`.
fn record(what: &str, value: f64, unit: &str, target: Option<&str>, baseline: Option<&Baseline>) {
    bench_results::record("control-zookeeper", what, value, unit, target, baseline);
}
