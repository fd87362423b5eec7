//! The control service under load: a store of 10,000 datasets on 100 nodes (each node's agent
//! reporting its 100 datasets mounted), clients over mutual TLS with keep-alive. Prints each
//! figure beside its target; it asserts nothing. Run: `cargo bench -p flocker-control`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{HELLO_PATH, STATE_PATH};
use flocker_api::{Client, CreateDataset, DatasetId, Era, NodeUuid};
use flocker_testkit::{ClusterCertificates, ControlProcess, bench_results};
use serde_json::json;

const NODES: usize = 100;
const DATASETS_PER_NODE: usize = 100;
const SAMPLES: usize = 200;
const MIXED_CLIENTS: usize = 4;
const MIXED_SECONDS: u64 = 10;

fn main() {
    let certificates = ClusterCertificates::new();
    let data = certificates.root().join("data");
    let binary = env!("CARGO_BIN_EXE_flocker-control").as_ref();
    let control =
        ControlProcess::start(binary, &certificates, &data, &[]).expect("start flocker-control");
    let client = certificates.client(control.rest, "bench");

    let started = Instant::now();
    let nodes = populate(&certificates, &control, &client);
    let populated = started.elapsed().as_secs_f64();
    println!(
        "flocker-control load benchmark: {} datasets on {NODES} nodes, mutual TLS, keep-alive \
         (populated through the API in {populated:.1} s)\n",
        NODES * DATASETS_PER_NODE
    );
    let what = format!("populate: {} datasets created by 4 clients", NODES * DATASETS_PER_NODE);
    record(&what, populated, "s", "");
    report_list(&client);
    report_conditional_create(&client, &nodes);
    report_mixed_reads(&certificates, &control, &nodes);
    report_memory(&control);
}

/// 100 agents say hello; 10,000 datasets are created, 100 on each node, by 4 clients at once;
/// each agent reports its datasets mounted.
fn populate(
    certificates: &ClusterCertificates,
    control: &ControlProcess,
    client: &Client,
) -> Vec<(NodeUuid, Era)> {
    let agents: Vec<_> = (0..NODES)
        .map(|_| {
            let node = certificates.node();
            let agent = certificates.client_with(control.agent, &node.certificate, &node.key);
            let era = Era::random();
            let hello = json!({"era": era}).to_string();
            let answer =
                agent.send("POST", HELLO_PATH, &[], Some(hello.as_bytes())).expect("hello");
            assert_eq!(answer.status, 200);
            (node.uuid, era, agent)
        })
        .collect();
    let creators: Vec<_> = (0..4)
        .map(|part| {
            let client = client.clone();
            let nodes: Vec<NodeUuid> = agents.iter().map(|(uuid, _, _)| *uuid).collect();
            std::thread::spawn(move || {
                let mut created = Vec::new();
                for i in (part..NODES * DATASETS_PER_NODE).step_by(4) {
                    let node = nodes[i % NODES];
                    let dataset = client.create_dataset(&request(node, i), None).expect("create");
                    created.push((node, dataset.dataset_id));
                }
                created
            })
        })
        .collect();
    let created: Vec<(NodeUuid, DatasetId)> =
        creators.into_iter().flat_map(|c| c.join().expect("creator")).collect();
    for (uuid, era, agent) in &agents {
        let datasets: Vec<_> = created
            .iter()
            .filter(|(node, _)| node == uuid)
            .map(|(_, id)| json!({"dataset_id": id, "path": format!("/flocker/{id}"), "maximum_size": 1u64 << 30}))
            .collect();
        let report = json!({"era": era, "datasets": datasets}).to_string();
        let answer = agent.send("PUT", STATE_PATH, &[], Some(report.as_bytes())).expect("report");
        assert_eq!(answer.status, 204);
    }
    agents.into_iter().map(|(uuid, era, _)| (uuid, era)).collect()
}

fn request(primary: NodeUuid, i: usize) -> CreateDataset {
    CreateDataset {
        primary,
        dataset_id: None,
        maximum_size: Some(1 << 30),
        metadata: [("name".to_owned(), format!("volume-{i}"))].into(),
    }
}

fn report_list(client: &Client) {
    let mut timings = Vec::new();
    let mut size = 0;
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let response = client.send("GET", "/v1/configuration/datasets", &[], None).expect("list");
        timings.push(started.elapsed());
        size = response.body.len();
    }
    let listed = format!("GET /v1/configuration/datasets ({} datasets)", NODES * DATASETS_PER_NODE);
    print_latency("GET /v1/configuration/datasets", &listed, &mut timings, "≤ 20 ms");
    let megabytes = size as f64 / 1e6;
    println!("{:>36}  {megabytes:.1} MB per answer, read but not decoded", "");
    record(&format!("{listed}, size of the answer"), megabytes, "MB", "");
}

/// The Flocker client's conditional create: read the tag, then create with it. The create is
/// acknowledged only once it is durable (journal fsync).
fn report_conditional_create(client: &Client, nodes: &[(NodeUuid, Era)]) {
    let (mut creates, mut cycles) = (Vec::new(), Vec::new());
    for i in 0..SAMPLES {
        let cycle = Instant::now();
        let (_, tag) = client.list_datasets().expect("list");
        let started = Instant::now();
        client
            .create_dataset(&request(nodes[i % NODES].0, 100_000 + i), Some(&tag))
            .expect("conditional create");
        creates.push(started.elapsed());
        cycles.push(cycle.elapsed());
    }
    print_latency(
        "conditional create (POST, fsynced)",
        "conditional create, acknowledged after fsync",
        &mut creates,
        "≤ 5 ms",
    );
    print_latency(
        "  with the GET of the tag before it",
        "conditional create with the GET of the tag before it",
        &mut cycles,
        "",
    );
}

/// Several clients reading at once: what the isolators, agents' operators and tools ask most.
fn report_mixed_reads(
    certificates: &ClusterCertificates,
    control: &ControlProcess,
    nodes: &[(NodeUuid, Era)],
) {
    let lease_client = certificates.client(control.rest, "bench");
    for (node, _) in nodes {
        let body = json!({"dataset_id": DatasetId::random(), "node_uuid": node, "expires": null})
            .to_string();
        lease_client
            .send("POST", "/v1/configuration/leases", &[], Some(body.as_bytes()))
            .expect("lease");
    }
    let mix: Vec<String> = nodes
        .iter()
        .take(20)
        .flat_map(|(_, era)| {
            [
                "/v1/version".to_owned(),
                "/v1/configuration/leases".to_owned(),
                "/v1/state/nodes".to_owned(),
                format!("/v1/state/nodes/by_era/{era}"),
            ]
        })
        .chain(["/v1/configuration/datasets".to_owned(), "/v1/state/datasets".to_owned()])
        .collect();
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = (0..MIXED_CLIENTS)
        .map(|reader| {
            let client = certificates.client(control.rest, "bench");
            let (mix, stop, done) = (mix.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = reader * 7;
                while !stop.load(Ordering::Relaxed) {
                    let response =
                        client.send("GET", &mix[i % mix.len()], &[], None).expect("read");
                    assert_eq!(response.status, 200);
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(MIXED_SECONDS));
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().expect("reader"));
    let rate = done.load(Ordering::Relaxed) as f64 / MIXED_SECONDS as f64;
    let what = format!("mixed reads, {MIXED_CLIENTS} clients");
    println!("{what:<36}  {rate:>8.0} requests/s                          target ≥ 2,000/s");
    record(&what, rate, "requests/s", "≥ 2,000/s");
    println!(
        "{:>36}  mix per {} requests: 20 each of version, leases (100), nodes (100), by_era;\n{:>36}  1 each of the full dataset list and the full state list",
        "",
        mix.len(),
        ""
    );
}

fn report_memory(control: &ControlProcess) {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", control.pid())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    let (now, peak) = (field("VmRSS:"), field("VmHWM:"));
    println!(
        "{:<36}  {now:>8.1} MiB now, {peak:.1} MiB at peak          target ≤ 64 MiB",
        "resident memory of flocker-control"
    );
    record("resident memory of flocker-control after all of it", now, "MiB", "≤ 64 MiB");
    record("resident memory of flocker-control at its peak", peak, "MiB", "");
}

/// Prints a latency's median, p90 and p99 as `what`; records the median and p99 as `figure`.
fn print_latency(what: &str, figure: &str, timings: &mut [Duration], target: &str) {
    timings.sort();
    let at =
        |q: f64| timings[((timings.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    let shown = if target.is_empty() { String::new() } else { format!("target {target}") };
    println!(
        "{what:<36}  median {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  {shown}",
        at(0.5),
        at(0.9),
        at(0.99)
    );
    record(&format!("{figure}, median"), at(0.5), "ms", target);
    record(&format!("{figure}, p99"), at(0.99), "ms", "");
}

/// Records a figure of this bench for `scripts/bench`; an empty target is none.
fn record(what: &str, value: f64, unit: &str, target: &str) {
    let target = (!target.is_empty()).then_some(target);
    bench_results::record("control", what, value, unit, target, None);
}
