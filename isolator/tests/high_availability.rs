//! High availability with real parts (root: loop devices and mounts are real). A real
//! three-server ZooKeeper ensemble; two `flocker-control` instances on it, A on 127.0.0.2 and B
//! on 127.0.0.3, the same ports; two dataset agents (loopback backend, shared storage) each
//! given both instances; an isolator per node with `control_service_host` "127.0.0.2,127.0.0.3".
//!
//! 1. From several threads, a burst of creates and moves through clients given both instances;
//!    mid-burst, `kill -9` of instance A and of the ZooKeeper leader. Every write answered
//!    200/201 is on B afterwards (moved datasets on their last acknowledged primary), and every
//!    other one failed clearly: 503 or 504, or a transport error naming the hosts; never 500.
//! 2. Through B alone, the isolator on node 0 prepares a new volume, and one that lives on node
//!    1 (a move, whose data must arrive), in bounded time; cleanup releases the leases.
//! 3. The agents converge: every dataset of the burst is mounted on its primary, and only there.
//! 4. The ZooKeeper server and A come back; A lists exactly what B lists, with the same tag.
//!
//! On a failure, every process's log is printed: both instances, both agents, the ZooKeeper
//! servers (state and log tail), and what the isolators and clients logged here.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use flocker_api::client::{ClientError, TransportProblem};
use flocker_api::{Client, CreateDataset, Dataset, DatasetId, NodeUuid};
use flocker_isolator_core::Isolator;
use flocker_isolator_core::container::ContainerId;
use flocker_isolator_core::control::error_chain;
use flocker_isolator_core::params::Parameters;
use flocker_testkit::task::command_task;
use flocker_testkit::{BackendKind, LocalCluster, SMALL, ZooKeeperEnsemble, require_root};
use rand::{Rng, RngCore};

const INSTANCES: [&str; 2] = ["127.0.0.2", "127.0.0.3"];
/// The instance killed mid-burst, and the one that survives.
const A: usize = 0;
const B: usize = 1;
const NODES: usize = 2;
/// Threads writing at once, each on datasets of its own.
const WORKERS: usize = 4;
/// Datasets each worker creates; its other writes are moves.
const CREATES_PER_WORKER: usize = 6;
/// Writes acknowledged before the kills, and after them before the burst ends.
const ACKNOWLEDGED_BEFORE_CHAOS: usize = 30;
const ACKNOWLEDGED_AFTER_CHAOS: usize = 40;
/// The burst goes on at least this long after the kills, through the ZooKeeper election.
const BURST_AFTER_CHAOS: Duration = Duration::from_secs(4);
/// How long a worker tries a move again after it failed.
const RETRY_MOVES_FOR: Duration = Duration::from_secs(30);
/// A bound on each prepare: the isolator's mount timeout (30 s) and a few requests.
const PREPARE_BOUND: Duration = Duration::from_secs(45);
const CONVERGE_BOUND: Duration = Duration::from_secs(60);
/// `flocker-control --store-timeout`'s default: how long a write waits for ZooKeeper.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn acknowledged_writes_survive_killing_an_instance_and_the_zookeeper_leader_mid_burst() {
    require_root();
    capture_logs();
    let mut ha = Ha::start();
    for node in 0..NODES {
        let host = &ha.isolators[node].isolator.parameters().control_host;
        assert_eq!(host, "127.0.0.2,127.0.0.3", "node {node}'s isolator is not given both");
    }

    // A volume on node 1 with data in it, released: node 0's isolator moves it after the kills.
    let on_node_1 = container();
    let link = ha.isolators[1].prepare(&on_node_1, "ha-moving").unwrap_or_else(|e| panic!("{e}"));
    let written = random_file(&link);
    ha.isolators[1].isolator.cleanup(&on_node_1).unwrap_or_else(|e| panic!("{e}"));

    // 1. Chaos during a burst.
    let (writes, chaos) = ha.burst_with_chaos();
    let expected = check_writes(&ha, &writes, chaos);

    // 2. The isolator's prepares go through the surviving instance.
    check_prepares_through_b(&ha, &written);

    // 3. The agents converge on what the surviving instance says.
    let started = Instant::now();
    ha.wait_for("every dataset of the burst to be mounted on its primary, and only there", || {
        converged(&ha, &expected)
    });
    println!("the agents converged on {} datasets in {:?}", expected.len(), started.elapsed());

    // 4. The ZooKeeper server and instance A come back.
    check_restarted_instance_agrees(&mut ha, chaos.zookeeper_server);
}

/// The cluster, the ensemble and an isolator per node; every log is printed if the test fails.
struct Ha {
    cluster: LocalCluster,
    ensemble: ZooKeeperEnsemble,
    store: String,
    isolators: Vec<IsolatorNode>,
}

struct IsolatorNode {
    isolator: Isolator,
    links: PathBuf,
}

/// What the burst's workers and the test share.
#[derive(Default)]
struct Burst {
    /// Writes answered 200/201 so far.
    acknowledged: AtomicUsize,
    /// Writes sent and not answered yet.
    in_flight: AtomicUsize,
    stop: AtomicBool,
}

impl Burst {
    fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs one write, counted in flight meanwhile.
    fn write<T>(&self, call: impl FnOnce() -> T) -> T {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = call();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    /// Fails the test, stopping the workers first.
    fn fail(&self, why: String) -> ! {
        self.stop.store(true, Ordering::SeqCst);
        panic!("{why}")
    }
}

/// What was killed, and when.
#[derive(Debug, Clone, Copy)]
struct Chaos {
    at: Instant,
    /// How far into the burst.
    into_burst: Duration,
    zookeeper_server: usize,
    was_leader: bool,
    /// Writes waiting for A's answer when it was killed.
    in_flight_on_a: usize,
}

impl Ha {
    fn start() -> Self {
        let ensemble = ZooKeeperEnsemble::start(3);
        let store = format!("zk://{}/flocker", ensemble.connect_string());
        let cluster = LocalCluster::start_with_instances(
            BackendKind::Loopback,
            NODES,
            &INSTANCES,
            &["--store", &store],
        );
        let isolators = (0..NODES)
            .map(|i| {
                let parameters = cluster.isolator_parameters(i).to_string();
                let parameters = Parameters::parse(&parameters).unwrap_or_else(|e| panic!("{e}"));
                let isolator = Isolator::new(parameters).unwrap_or_else(|e| panic!("{e}"));
                let links = cluster.certificates.root().join(format!("links-{i}"));
                IsolatorNode { isolator, links }
            })
            .collect();
        Self { cluster, ensemble, store, isolators }
    }

    /// A client of instance `i` alone.
    fn instance_client(&self, i: usize) -> Client {
        self.cluster.certificates.client(self.cluster.control_instance(i).rest, "tests")
    }

    /// A client given both instances, as the burst's writers are.
    fn failover_client(&self) -> Client {
        let port = self.cluster.control.rest.port();
        self.cluster.certificates.client_of_instances(&self.cluster.control_hosts(), port, "tests")
    }

    /// Polls `condition` every 50 ms for at most [`CONVERGE_BOUND`]; fails the test if it is not
    /// met (the logs follow from `drop`).
    fn wait_for(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + CONVERGE_BOUND;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {CONVERGE_BOUND:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writers on every thread; a ZooKeeper server (the leader) and then instance A killed
    /// once [`ACKNOWLEDGED_BEFORE_CHAOS`] writes were acknowledged. Every write, in each
    /// worker's order.
    fn burst_with_chaos(&mut self) -> (Vec<Vec<Write>>, Chaos) {
        let nodes: Vec<NodeUuid> = (0..NODES).map(|i| self.cluster.node(i)).collect();
        let burst = Burst::default();
        let began = Instant::now();
        let clients: Vec<Client> = (0..WORKERS).map(|_| self.failover_client()).collect();
        let (writes, chaos) = std::thread::scope(|scope| {
            let workers: Vec<_> = clients
                .into_iter()
                .map(|client| {
                    let (nodes, burst) = (&nodes, &burst);
                    scope.spawn(move || worker(&client, nodes, burst, began))
                })
                .collect();
            let chaos = self.chaos(&burst, began);
            burst.stop.store(true, Ordering::SeqCst);
            let writes: Vec<Vec<Write>> =
                workers.into_iter().map(|w| w.join().expect("a worker panicked")).collect();
            (writes, chaos)
        });
        println!(
            "burst: {} writes in {:?}; ZooKeeper server {} ({}) and A ({} writes in flight on it) \
             killed {:?} into it",
            writes.iter().map(Vec::len).sum::<usize>(),
            began.elapsed(),
            chaos.zookeeper_server,
            if chaos.was_leader { "the leader" } else { "a follower" },
            chaos.in_flight_on_a,
            chaos.into_burst,
        );
        (writes, chaos)
    }

    /// Once enough writes were acknowledged, kills the ZooKeeper leader, and then A while
    /// writes wait on it for the new leader (those may be made after A is gone); returns once
    /// enough more writes were acknowledged, and long enough after (the burst then stops).
    fn chaos(&mut self, burst: &Burst, began: Instant) -> Chaos {
        let deadline = Instant::now() + Duration::from_secs(60);
        while burst.acknowledged() < ACKNOWLEDGED_BEFORE_CHAOS {
            if Instant::now() > deadline {
                burst.fail(format!("{} writes acknowledged in 60 s", burst.acknowledged()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut leader = self.ensemble.leader();
        let look_until = Instant::now() + Duration::from_secs(5);
        while leader.is_none() && Instant::now() < look_until {
            std::thread::sleep(Duration::from_millis(20));
            leader = self.ensemble.leader();
        }
        let zookeeper_server = leader.unwrap_or(0);
        self.ensemble.kill(zookeeper_server);
        let at = Instant::now();
        let stuck = at + Duration::from_millis(300);
        while burst.in_flight() < WORKERS / 2 && Instant::now() < stuck {
            std::thread::sleep(Duration::from_millis(1));
        }
        let in_flight_on_a = burst.in_flight();
        self.cluster.kill_control_instance(A);
        let chaos = Chaos {
            at,
            into_burst: at.duration_since(began),
            zookeeper_server,
            was_leader: leader.is_some(),
            in_flight_on_a,
        };
        let before = burst.acknowledged();
        let deadline = chaos.at + Duration::from_secs(60);
        while burst.acknowledged() < before + ACKNOWLEDGED_AFTER_CHAOS
            || chaos.at.elapsed() < BURST_AFTER_CHAOS
        {
            if Instant::now() > deadline {
                let after = burst.acknowledged() - before;
                burst.fail(format!("{after} writes acknowledged in the 60 s after the kills"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        chaos
    }

    /// Every process's log (the last lines of each), and what was logged in the test.
    fn logs(&self) -> String {
        let mut logs = String::new();
        for (i, host) in INSTANCES.iter().enumerate() {
            let log = self.cluster.control_instance(i).log();
            logs += &format!("--- control service instance {host}\n{}\n", tail(&log));
        }
        for agent in &self.cluster.agents {
            let (name, node) = (&agent.name, agent.node.uuid);
            logs += &format!("--- agent {name} ({node})\n{}\n", tail(&agent.log()));
        }
        logs += &format!("--- ZooKeeper ensemble\n{}\n", self.ensemble.report_all());
        let captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<&str> = captured.iter().map(|(_, line)| line.as_str()).collect();
        logs +=
            &format!("--- logged in the test (isolators, clients)\n{}\n", tail(&lines.join("\n")));
        logs
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

impl IsolatorNode {
    /// Prepares `container` for the volume `id`, linked at `<links>/<id>`.
    fn prepare(&self, container: &ContainerId, id: &str) -> Result<PathBuf, String> {
        let link = self.links.join(id);
        let config = command_task(&[(id, link.to_str().expect("a UTF-8 path"))]);
        match self.isolator.prepare(container, &config) {
            Ok(None) => Ok(link),
            Ok(Some(launch)) => Err(format!("a link was expected, not {launch:?}")),
            Err(error) => Err(error_chain(&error)),
        }
    }
}

/// One write of the burst and how it ended.
#[derive(Debug)]
struct Write {
    dataset: DatasetId,
    kind: Kind,
    /// The node it made (or would have made) the primary.
    primary: usize,
    /// Since the burst began.
    at: Duration,
    took: Duration,
    outcome: Result<(), Failure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Move,
}

#[derive(Debug)]
struct Failure {
    message: String,
    status: Option<u16>,
    transport: Option<TransportProblem>,
}

impl Failure {
    fn of(error: &ClientError) -> Self {
        Self {
            message: error_chain(error),
            status: error.status(),
            transport: error.transport_problem(),
        }
    }

    /// 503 or 504, or no answer from any host, saying which hosts: what a client can act on.
    fn is_clear(&self) -> bool {
        let names_the_hosts = INSTANCES.iter().any(|host| self.message.contains(host));
        match self.status {
            Some(status) => matches!(status, 503 | 504),
            None => self.transport.is_some() && names_the_hosts,
        }
    }

    /// A 503 because ZooKeeper could not be reached: the instance waited for it first.
    fn is_store_unavailable(&self) -> bool {
        self.status == Some(503) && self.message.contains("store is not available")
    }
}

/// Creates up to [`CREATES_PER_WORKER`] datasets and moves them about until `stop`; a move
/// that failed is tried again (to the same node, which is harmless if it was made) so that its
/// dataset's last primary is known. A failed create is not repeated: its dataset may or may
/// not exist.
fn worker(client: &Client, nodes: &[NodeUuid], burst: &Burst, began: Instant) -> Vec<Write> {
    let mut rng = rand::rng();
    let mut writes = Vec::new();
    let mut created: Vec<(DatasetId, usize)> = Vec::new();
    let mut creates = 0;
    while !burst.stopped() {
        let create = creates < CREATES_PER_WORKER && (created.is_empty() || rng.random_bool(0.3));
        if create {
            creates += 1;
            let (dataset, primary) = (DatasetId::random(), rng.random_range(0..nodes.len()));
            let request = CreateDataset {
                primary: nodes[primary],
                dataset_id: Some(dataset),
                maximum_size: Some(SMALL),
                metadata: [("name".to_owned(), format!("burst-{dataset}"))].into(),
            };
            let started = Instant::now();
            let outcome = burst.write(|| client.create_dataset(&request, None).map(drop));
            let write = record(dataset, Kind::Create, primary, began, started, outcome);
            if write.outcome.is_ok() {
                burst.acknowledged.fetch_add(1, Ordering::SeqCst);
                created.push((dataset, primary));
            }
            writes.push(write);
        } else if !created.is_empty() {
            let index = rng.random_range(0..created.len());
            let (dataset, from) = created[index];
            let to = (from + 1) % nodes.len();
            let give_up = Instant::now() + RETRY_MOVES_FOR;
            loop {
                let started = Instant::now();
                let outcome = burst.write(|| client.move_dataset(&dataset, &nodes[to], None));
                let write = record(dataset, Kind::Move, to, began, started, outcome.map(drop));
                let done = write.outcome.is_ok();
                writes.push(write);
                if done {
                    burst.acknowledged.fetch_add(1, Ordering::SeqCst);
                    created[index].1 = to;
                    break;
                }
                if Instant::now() > give_up {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..80)));
    }
    writes
}

fn record(
    dataset: DatasetId,
    kind: Kind,
    primary: usize,
    began: Instant,
    started: Instant,
    outcome: Result<(), ClientError>,
) -> Write {
    let at = started.duration_since(began);
    let outcome = outcome.map_err(|error| Failure::of(&error));
    Write { dataset, kind, primary, at, took: started.elapsed(), outcome }
}

/// Where each dataset of the burst may be after it, from its writes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// Its last write was acknowledged: it exists, with this primary.
    On(usize),
    /// Its create failed: it exists with this primary, or not at all.
    MaybeCreatedOn(usize),
    /// A move after its last acknowledged write failed: one of these is its primary.
    OnOneOf(BTreeSet<usize>),
}

fn expectations(writes: &[Vec<Write>]) -> BTreeMap<DatasetId, Expected> {
    let mut expected = BTreeMap::new();
    for write in writes.iter().flatten() {
        let now = match (write.kind, &write.outcome, expected.get(&write.dataset)) {
            (Kind::Create, Ok(()), _) => Expected::On(write.primary),
            (Kind::Create, Err(_), _) => Expected::MaybeCreatedOn(write.primary),
            (Kind::Move, Ok(()), _) => Expected::On(write.primary),
            (Kind::Move, Err(_), Some(Expected::On(before))) => {
                Expected::OnOneOf([*before, write.primary].into())
            }
            (Kind::Move, Err(_), Some(Expected::OnOneOf(before))) => {
                let mut either = before.clone();
                either.insert(write.primary);
                Expected::OnOneOf(either)
            }
            (Kind::Move, Err(_), other) => panic!("a move of a dataset that is {other:?}"),
        };
        expected.insert(write.dataset, now);
    }
    expected
}

/// Every acknowledged write is on B; every failure was clear. The datasets of the burst that
/// exist, with their primaries.
fn check_writes(ha: &Ha, writes: &[Vec<Write>], chaos: Chaos) -> BTreeMap<DatasetId, usize> {
    let all: Vec<&Write> = writes.iter().flatten().collect();
    let failed: Vec<&Write> = all.iter().copied().filter(|w| w.outcome.is_err()).collect();
    let acknowledged = all.len() - failed.len();
    println!("{acknowledged} writes acknowledged, {} failed:", failed.len());
    for write in &failed {
        let failure = write.outcome.as_ref().expect_err("a failure");
        println!(
            "  {:?} {} at {:?} (took {:?}): {}",
            write.kind, write.dataset, write.at, write.took, failure.message
        );
    }
    let unclear: Vec<String> = failed
        .iter()
        .filter_map(|w| w.outcome.as_ref().err())
        .filter(|failure| !failure.is_clear())
        .map(|failure| format!("{failure:?}"))
        .collect();
    assert!(unclear.is_empty(), "writes failed without a clear error:\n{}", unclear.join("\n"));
    // "Seconds a write waits for ZooKeeper before it fails (503)": not a moment of an election.
    let impatient: Vec<String> = failed
        .iter()
        .filter(|w| w.outcome.as_ref().is_err_and(Failure::is_store_unavailable))
        .filter(|w| w.took < STORE_TIMEOUT)
        .map(|w| format!("{w:?}"))
        .collect();
    assert!(
        impatient.is_empty(),
        "writes failed with 503 without waiting {STORE_TIMEOUT:?} for ZooKeeper:\n{}",
        impatient.join("\n")
    );
    let slowest = all.iter().map(|w| w.took).max().unwrap_or_default();
    println!("the slowest write took {slowest:?}");

    let nodes: Vec<NodeUuid> = (0..NODES).map(|i| ha.cluster.node(i)).collect();
    let (listed, _) = ha.instance_client(B).list_datasets().unwrap_or_else(|e| panic!("{e}"));
    let listed: BTreeMap<DatasetId, &Dataset> = listed.iter().map(|d| (d.dataset_id, d)).collect();
    let mut existing = BTreeMap::new();
    let mut uncertain = 0;
    for (dataset, expected) in expectations(writes) {
        let found = listed.get(&dataset).filter(|d| !d.deleted);
        let primary = found.map(|d| nodes.iter().position(|n| *n == d.primary));
        let fits = match (&expected, primary) {
            (Expected::On(node), Some(Some(primary))) => primary == *node,
            (Expected::MaybeCreatedOn(_), None) => true,
            (Expected::MaybeCreatedOn(node), Some(Some(primary))) => primary == *node,
            (Expected::OnOneOf(nodes), Some(Some(primary))) => nodes.contains(&primary),
            _ => false,
        };
        assert!(
            fits,
            "dataset {dataset}: B lists {found:?}, after writes that make it {expected:?} \
             (node 0 is {}, node 1 {}; the kills were {:?} into the burst)",
            nodes[0], nodes[1], chaos.into_burst,
        );
        uncertain += usize::from(!matches!(expected, Expected::On(_)));
        if let Some(Some(primary)) = primary {
            existing.insert(dataset, primary);
        }
    }
    println!(
        "every acknowledged write is on B: {} datasets ({uncertain} after a write that failed)",
        existing.len()
    );
    existing
}

/// Node 0 prepares a new volume, then the one on node 1 (a move), through B: A is dead.
fn check_prepares_through_b(ha: &Ha, written: &[u8]) {
    let node_0 = &ha.isolators[0];
    let b = ha.instance_client(B);
    let port = ha.cluster.control.rest.port();
    let mut containers = Vec::new();
    let mark = captured_count();
    for (volume, what) in [("ha-new", "a new volume"), ("ha-moving", "node 1's volume")] {
        let container = container();
        let started = Instant::now();
        let link = node_0.prepare(&container, volume);
        let took = started.elapsed();
        println!("node 0 prepared {what} in {took:?}: {link:?}");
        let link = link.unwrap_or_else(|e| panic!("node 0's prepare of {what} failed: {e}"));
        assert!(took < PREPARE_BOUND, "node 0's prepare of {what} took {took:?}");
        let target = fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        assert!(target.starts_with(&ha.cluster.agents[0].mount_root), "{}", target.display());
        let dataset = named(&b, volume);
        let (listed, _) = b.list_datasets().unwrap_or_else(|e| panic!("{e}"));
        let primary = listed.iter().find(|d| d.dataset_id == dataset).map(|d| d.primary);
        assert_eq!(primary, Some(ha.cluster.node(0)), "{volume} is not on node 0 per B");
        if volume == "ha-moving" {
            let moved = fs::read(link.join("data.bin")).unwrap_or_else(|e| panic!("{e}"));
            assert!(moved == written, "the data written on node 1 is not there on node 0");
        }
        containers.push((container, dataset));
    }
    // The first call of node 0's isolator found A dead, and went on with B.
    let said = captured_here_since(mark);
    let moved_on = format!(
        "control service at 127.0.0.2:{port} did not answer (connection refused); using 127.0.0.3:{port}"
    );
    assert!(said.iter().any(|line| line.contains(&moved_on)), "not said: {moved_on}\n{said:#?}");

    for (container, dataset) in &containers {
        node_0.isolator.cleanup(container).unwrap_or_else(|e| panic!("{e}"));
        let leases = b.list_leases().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            leases.iter().all(|lease| lease.dataset_id != *dataset),
            "cleanup left a lease on {dataset}: {leases:?}"
        );
    }
}

/// The one live dataset named `volume`.
fn named(client: &Client, volume: &str) -> DatasetId {
    let (datasets, _) = client.list_datasets().unwrap_or_else(|e| panic!("{e}"));
    let named: Vec<DatasetId> = datasets
        .iter()
        .filter(|d| !d.deleted && d.metadata.get("name").is_some_and(|n| n == volume))
        .map(|d| d.dataset_id)
        .collect();
    assert_eq!(named.len(), 1, "datasets named {volume}: {named:?}");
    named[0]
}

/// Whether B's cluster state shows each dataset mounted on its primary, it is mounted there,
/// and not on the other node.
fn converged(ha: &Ha, expected: &BTreeMap<DatasetId, usize>) -> bool {
    let Ok(states) = ha.instance_client(B).dataset_states() else { return false };
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = |path: &Path| {
        let path = path.display().to_string();
        mounts.lines().any(|line| line.split(' ').nth(4) == Some(path.as_str()))
    };
    expected.iter().all(|(dataset, primary)| {
        let node = ha.cluster.node(*primary);
        let here = states.iter().find(|s| s.dataset_id == *dataset && s.primary == Some(node));
        let there = &ha.cluster.agents[(primary + 1) % NODES];
        here.and_then(|s| s.path.as_deref()).is_some_and(|path| mounted(Path::new(path)))
            && !mounted(&there.mount_point(&dataset.to_string()))
    })
}

/// The ZooKeeper server and A come back; a write through B is read at once through A, and A
/// lists exactly what B does, with the same tag.
fn check_restarted_instance_agrees(ha: &mut Ha, zookeeper_server: usize) {
    ha.ensemble.restart(zookeeper_server);
    ha.ensemble.wait_until_serving(Duration::from_secs(60));
    let store = ha.store.clone();
    ha.cluster.restart_control_instance(A, &["--store", &store]);
    let (a, b) = (ha.instance_client(A), ha.instance_client(B));

    let request = CreateDataset {
        primary: ha.cluster.node(1),
        dataset_id: None,
        maximum_size: Some(SMALL),
        metadata: [("name".to_owned(), "after-restart".to_owned())].into(),
    };
    let created = b.create_dataset(&request, None).unwrap_or_else(|e| panic!("{e}"));
    let (on_a, _) = a.list_datasets().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        on_a.iter().any(|d| d.dataset_id == created.dataset_id),
        "A does not list the dataset B acknowledged a moment ago"
    );

    // Agents write too (volumes they report): A's answer counts if B's tag was the same
    // before and after it.
    for _ in 0..50 {
        let (before, before_tag) = b.list_datasets().unwrap_or_else(|e| panic!("{e}"));
        let (on_a, a_tag) = a.list_datasets().unwrap_or_else(|e| panic!("{e}"));
        let leases_on_a = leases(&a);
        let (_, after_tag) = b.list_datasets().unwrap_or_else(|e| panic!("{e}"));
        if before_tag != after_tag {
            continue;
        }
        assert_eq!(a_tag, before_tag, "A and B give different tags for one configuration");
        assert_eq!(sorted(on_a), sorted(before), "A and B list different datasets");
        assert_eq!(leases_on_a, leases(&b), "A and B list different leases");
        println!("the restarted instance lists what B lists: tag {}", a_tag.0);
        return same_cluster_state(&a, &b);
    }
    panic!("B's configuration changed under every one of 50 comparisons");
}

/// The agents report to B; A mirrors their reports (shared through ZooKeeper), so it shows the
/// same nodes and the same state, once it has caught up.
fn same_cluster_state(a: &Client, b: &Client) {
    let state = |client: &Client| {
        let mut states = client.dataset_states().unwrap_or_else(|e| panic!("{e}"));
        states.sort_by_key(|s| (s.dataset_id, s.primary));
        let mut nodes = client.list_nodes().unwrap_or_else(|e| panic!("{e}"));
        nodes.sort_by_key(|n| n.uuid);
        (nodes, states)
    };
    let started = Instant::now();
    loop {
        let (on_a, on_b) = (state(a), state(b));
        if on_a == on_b {
            println!("A shows the cluster state B shows after {:?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < CONVERGE_BOUND,
            "A and B show different cluster states:\nA: {on_a:#?}\nB: {on_b:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sorted(mut datasets: Vec<Dataset>) -> Vec<Dataset> {
    datasets.sort_by_key(|d| d.dataset_id);
    datasets
}

fn leases(client: &Client) -> BTreeSet<(DatasetId, NodeUuid)> {
    let leases = client.list_leases().unwrap_or_else(|e| panic!("{e}"));
    leases.into_iter().map(|lease| (lease.dataset_id, lease.node_uuid)).collect()
}

fn container() -> ContainerId {
    ContainerId { value: uuid::Uuid::new_v4().to_string(), parent: None }
}

fn random_file(directory: &Path) -> Vec<u8> {
    let mut bytes = vec![0u8; 256 * 1024];
    rand::rng().fill_bytes(&mut bytes);
    fs::write(directory.join("data.bin"), &bytes).unwrap_or_else(|e| panic!("{e}"));
    bytes
}

fn tail(text: &str) -> String {
    const LINES: usize = 300;
    let lines: Vec<&str> = text.lines().collect();
    let left_out = lines.len().saturating_sub(LINES);
    let kept = lines[left_out..].join("\n");
    if left_out == 0 { kept } else { format!("({left_out} lines before these left out)\n{kept}") }
}

/// What the code under test logs in this process (the isolators, the clients), with the thread
/// that logged it.
static CAPTURED: Mutex<Vec<(ThreadId, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            let mut captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
            captured.push((std::thread::current().id(), line));
        }
    }

    fn flush(&self) {}
}

fn capture_logs() {
    static CAPTURE: Capture = Capture;
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

fn captured_count() -> usize {
    CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// What this thread logged after the first `mark` lines.
fn captured_here_since(mark: usize) -> Vec<String> {
    let here = std::thread::current().id();
    let captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
    let since = captured.iter().skip(mark).filter(|(thread, _)| *thread == here);
    since.map(|(_, line)| line.clone()).collect()
}
