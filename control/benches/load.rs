//! The control service under load: a store of 10,000 datasets on 100 nodes (each node's agent
//! reporting its 100 datasets mounted), clients over mutual TLS with keep-alive. Prints each
//! figure beside its target; it asserts nothing. Run: `cargo bench -p flocker-control`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::CONFIGURATION_PATH;
use flocker_api::{Client, CreateDataset, DatasetId, Era, NodeUuid};
use flocker_testkit::phantoms::{Phantom, named_dataset, phantom_nodes};
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
    let agents =
        phantom_nodes(&certificates, &control, &client, (NODES, DATASETS_PER_NODE), "volume");
    let nodes: Vec<(NodeUuid, Era)> = agents.iter().map(|p| (p.node, p.era)).collect();
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
    report_agents_waking(&control, &client, agents);
    report_memory_with_polls(&control);
}

fn request(primary: NodeUuid, i: usize) -> CreateDataset {
    named_dataset(primary, &format!("volume-{i}"))
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

/// Every agent long-polls for its configuration, as real agents do; then datasets are created
/// one at a time, each on one node. Every poll wakes at each change and looks at its node's
/// view again; only the node that got the dataset answers. Measured: the time from the create
/// until that node's poll answers, and the service's CPU time per change (all the wakes).
fn report_agents_waking(control: &ControlProcess, client: &Client, agents: Vec<Phantom>) {
    const CHANGES: usize = 200;
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, answers) = std::sync::mpsc::channel::<(NodeUuid, Instant)>();
    let waiting = Arc::new(AtomicU64::new(0));
    let pollers: Vec<_> = agents
        .into_iter()
        .map(|Phantom { node, agent, .. }| {
            let (stop, answered, waiting) = (stop.clone(), answered.clone(), waiting.clone());
            std::thread::spawn(move || long_poll(&agent, node, &stop, &answered, &waiting))
        })
        .collect();
    while waiting.load(Ordering::Relaxed) < pollers.len() as u64 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200)); // every poll is in the service by now
    let nodes: Vec<NodeUuid> = control_nodes(client);
    let (mut latencies, cpu_before) = (Vec::new(), cpu_seconds(control));
    for i in 0..CHANGES {
        let node = nodes[i % nodes.len()];
        while answers.try_recv().is_ok() {}
        let started = Instant::now();
        client.create_dataset(&request(node, 200_000 + i), None).expect("create");
        loop {
            let (who, at) = answers.recv_timeout(Duration::from_secs(10)).expect("an answer");
            if who == node {
                latencies.push(at - started);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20)); // the other polls settle again
    }
    let cpu = (cpu_seconds(control) - cpu_before) / CHANGES as f64 * 1e3;
    stop.store(true, Ordering::Relaxed);
    let what = format!("{} agents long-polling, one change: its node's answer", pollers.len());
    print_latency(&what, &what, &mut latencies, "");
    let per_wake = cpu / pollers.len() as f64 * 1e3;
    println!(
        "{:<36}  {cpu:>8.2} ms of the service's CPU per change ({per_wake:.0} µs per poll woken)",
        ""
    );
    record(
        &format!("{} agents long-polling: the service's CPU per change", pollers.len()),
        cpu,
        "ms",
        "each wake O(its own datasets)",
    );
    record("  the same per poll woken", per_wake, "µs", "");
    drop(pollers); // each ends with its next answer; the process exits meanwhile
}

/// One agent's long-poll loop: says when it is waiting, and each answer that came.
fn long_poll(
    agent: &Client,
    node: NodeUuid,
    stop: &AtomicBool,
    answered: &std::sync::mpsc::Sender<(NodeUuid, Instant)>,
    waiting: &AtomicU64,
) {
    let first = agent.send("GET", CONFIGURATION_PATH, &[], None).expect("configuration");
    let mut etag = first.json().expect("JSON")["etag"].as_str().expect("an etag").to_owned();
    waiting.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let path = format!("{CONFIGURATION_PATH}?etag={etag}&wait=20");
        let timeout = Some(Duration::from_secs(30));
        let Ok(answer) = agent.send_with_timeout("GET", &path, &[], None, timeout) else { return };
        let now = Instant::now();
        let Ok(body) = answer.json() else { return };
        let new = body["etag"].as_str().unwrap_or_default().to_owned();
        if new != etag {
            let _ = answered.send((node, now));
        }
        etag = new;
    }
}

/// The live nodes, as the REST API lists them.
fn control_nodes(client: &Client) -> Vec<NodeUuid> {
    client.list_nodes().expect("nodes").into_iter().map(|n| n.uuid).collect()
}

/// The service's CPU time so far (user and system), from /proc.
fn cpu_seconds(control: &ControlProcess) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", control.pid())).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are 14th and 15th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // Linux counts them in USER_HZ, 100 a second.
    (ticks(11) + ticks(12)) / 100.0
}

/// The service's resident memory now and at its peak, in MiB.
fn resident_memory(control: &ControlProcess) -> (f64, f64) {
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
    (field("VmRSS:"), field("VmHWM:"))
}

/// The memory once 100 agents kept a long-poll open each (a TLS connection, and a thread of
/// the blocking pool for each poll woken at once): what a cluster of that size costs beside.
fn report_memory_with_polls(control: &ControlProcess) {
    let (now, _) = resident_memory(control);
    let what = "resident memory with 100 agents long-polling";
    println!("{what:<36}  {now:>8.1} MiB");
    record(what, now, "MiB", "");
}

fn report_memory(control: &ControlProcess) {
    let (now, peak) = resident_memory(control);
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
