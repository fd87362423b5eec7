//! An isolator's call under a connection flood: the latency of listing the datasets, over a
//! kept-alive connection and over a new one per call, with no flood, while 2,000 plain TCP
//! connections that never start TLS are held open, and while handshakes are also started and
//! abandoned in a loop. Prints each beside the figure without the flood; asserts nothing.
//! Run: `cargo bench -p flocker-control --bench flood`.

#[path = "../tests/support/flood.rs"]
mod flood;

use std::time::{Duration, Instant};

use flocker_api::{Client, ClientConfig, CreateDataset, NodeUuid};
use flocker_testkit::bench_results::{self, Baseline};
use flocker_testkit::{ClusterCertificates, ControlProcess};

use self::flood::{AbandonedHandshakes, HeldFlood, loopback_sources};

const SAMPLES: usize = 200;
const DATASETS: usize = 5;
const FLOOD: usize = 2_000;
const FLOOD_SOURCES: u8 = 40;

fn main() {
    let certificates = ClusterCertificates::new();
    let data = certificates.root().join("data");
    let binary = env!("CARGO_BIN_EXE_flocker-control").as_ref();
    let control =
        ControlProcess::start(binary, &certificates, &data, &[]).expect("start flocker-control");
    let kept_alive = client(&certificates, &control);
    for i in 0..DATASETS {
        kept_alive.create_dataset(&dataset(i), None).expect("create");
    }
    println!(
        "flocker-control under a connection flood: GET /v1/configuration/datasets ({DATASETS} \
         datasets), {SAMPLES} calls each, default limits\n"
    );
    println!("{:<58}  {:<40}  new connection per call", "", "kept-alive connection");
    println!("{:<58}  {:<40}  the same", "", "median / p99 (× without the flood)");

    let calm = measure(&certificates, &control, &kept_alive);
    report("no flood", &calm, None);

    let held = HeldFlood::start(control.rest, FLOOD, &loopback_sources(FLOOD_SOURCES));
    std::thread::sleep(Duration::from_millis(500));
    let flooded = measure(&certificates, &control, &kept_alive);
    let what = format!("{FLOOD} TCP connections held, never starting TLS");
    report(&what, &flooded, Some(&calm));
    println!("{:>58}  ({} opened again after the service closed them)", "", held.renewed());

    let abandoned = AbandonedHandshakes::start(control.rest, loopback_sources(FLOOD_SOURCES));
    let started = Instant::now();
    let stormed = measure(&certificates, &control, &kept_alive);
    let rate = abandoned.started() as f64 / started.elapsed().as_secs_f64();
    report("  and TLS handshakes started and abandoned in a loop", &stormed, Some(&calm));
    println!("{:>58}  ({rate:.0} handshakes abandoned per second)", "");
    record("handshakes abandoned per second during that", rate, "1/s", None);
}

/// A client as an isolator makes one, whose calls fail after 5 s.
fn client(certificates: &ClusterCertificates, control: &ControlProcess) -> Client {
    certificates.user("bench");
    let mut config = ClientConfig::from_directory(
        &certificates.authority(),
        "bench",
        "127.0.0.1",
        control.rest.port(),
    );
    config.timeout = Duration::from_secs(5);
    Client::new(&config).expect("client")
}

fn dataset(i: usize) -> CreateDataset {
    CreateDataset {
        primary: NodeUuid::random(),
        dataset_id: None,
        maximum_size: Some(1 << 30),
        metadata: [("name".to_owned(), format!("volume-{i}"))].into(),
    }
}

/// One scenario's figures: latencies of the calls that were answered, and how many were not.
struct Figures {
    kept_alive: Latency,
    new_connection: Latency,
}

struct Latency {
    timings: Vec<Duration>,
    failed: usize,
}

impl Latency {
    fn at(&self, quantile: f64) -> f64 {
        if self.timings.is_empty() {
            return f64::NAN;
        }
        let index = ((self.timings.len() - 1) as f64 * quantile).round() as usize;
        self.timings[index].as_secs_f64() * 1e3
    }
}

fn measure(
    certificates: &ClusterCertificates,
    control: &ControlProcess,
    kept_alive: &Client,
) -> Figures {
    let kept_alive = time_calls(|| kept_alive.clone());
    let new_connection = time_calls(|| client(certificates, control));
    Figures { kept_alive, new_connection }
}

/// `SAMPLES` lists, each by a client `make` gives (made before the clock starts).
fn time_calls(make: impl Fn() -> Client) -> Latency {
    let (mut timings, mut failed) = (Vec::new(), 0);
    for _ in 0..SAMPLES {
        let client = make();
        let started = Instant::now();
        match client.list_datasets() {
            Ok(_) => timings.push(started.elapsed()),
            Err(_) => failed += 1,
        }
    }
    timings.sort();
    Latency { timings, failed }
}

/// Prints a scenario's line; records its medians and p99s, beside `calm`'s if given.
fn report(what: &str, figures: &Figures, calm: Option<&Figures>) {
    let column = |latency: &Latency, calm: Option<&Latency>| {
        let ratio = calm.map_or(String::new(), |calm| {
            let (median, p99) = (latency.at(0.5) / calm.at(0.5), latency.at(0.99) / calm.at(0.99));
            format!(" ({median:.2}× / {p99:.2}×)")
        });
        let failed =
            if latency.failed > 0 { format!(", {} FAILED", latency.failed) } else { String::new() };
        format!("{:.2} / {:.2} ms{ratio}{failed}", latency.at(0.5), latency.at(0.99))
    };
    println!(
        "{what:<58}  {:<40}  {}",
        column(&figures.kept_alive, calm.map(|c| &c.kept_alive)),
        column(&figures.new_connection, calm.map(|c| &c.new_connection))
    );
    let scenario = what.trim();
    for (kind, latency, calm) in [
        ("kept-alive connection", &figures.kept_alive, calm.map(|c| &c.kept_alive)),
        ("new connection per call", &figures.new_connection, calm.map(|c| &c.new_connection)),
    ] {
        for (name, quantile) in [("median", 0.5), ("p99", 0.99)] {
            let what = format!("list of {DATASETS} datasets, {kind}, {scenario}, {name}");
            let baseline = calm.map(|calm| Baseline {
                value: calm.at(quantile),
                name: "no flood",
                ratio: latency.at(quantile) / calm.at(quantile),
                ratio_means: "× without the flood",
            });
            record(&what, latency.at(quantile), "ms", baseline.as_ref());
        }
        if latency.failed > 0 {
            let what = format!("list of {DATASETS} datasets, {kind}, {scenario}, calls failed");
            record(&what, latency.failed as f64, &format!("of {SAMPLES}"), None);
        }
    }
}

/// Records a figure of this bench for `scripts/bench`.
fn record(what: &str, value: f64, unit: &str, baseline: Option<&Baseline>) {
    bench_results::record("control-flood", what, value, unit, None, baseline);
}
