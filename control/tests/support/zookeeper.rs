//! What the tests of `tests/zookeeper.rs` share: an ensemble of a test's own that shows its
//! servers' logs when the test fails, polling with a bound, agents on one service's agent port
//! (hellos, reports and configuration polls), and bursts of writes from several threads that
//! note what each answer promised.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{AgentConfiguration, CONFIGURATION_PATH, HELLO_PATH, STATE_PATH};
use flocker_api::{Client, NodeUuid, RawResponse};
use flocker_testkit::{ClusterCertificates, NodeCertificate, RunningPair, ZooKeeperEnsemble};
use serde_json::{Value, json};

pub const DATASETS: &str = "/v1/configuration/datasets";
pub const LEASES: &str = "/v1/configuration/leases";
pub const TAG: &str = "x-configuration-tag";
pub const IF_MATCHES: &str = "x-if-configuration-matches";
pub const VIEW_AGE: &str = "x-flocker-view-age";

pub fn binary() -> &'static Path {
    env!("CARGO_BIN_EXE_flocker-control").as_ref()
}

/// An ensemble of the test's own, whose servers it may kill; a failing test prints the end of
/// every server's log.
pub struct OwnEnsemble(pub ZooKeeperEnsemble);

impl OwnEnsemble {
    pub fn start() -> Self {
        Self(ZooKeeperEnsemble::start(3))
    }
}

impl Deref for OwnEnsemble {
    type Target = ZooKeeperEnsemble;

    fn deref(&self) -> &ZooKeeperEnsemble {
        &self.0
    }
}

impl DerefMut for OwnEnsemble {
    fn deref_mut(&mut self) -> &mut ZooKeeperEnsemble {
        &mut self.0
    }
}

impl Drop for OwnEnsemble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..3 {
                let log = self.0.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                eprintln!("--- ZooKeeper server {i}'s log ends:\n{tail}");
            }
        }
    }
}

/// A body as JSON.
pub fn json_of(response: &RawResponse) -> Value {
    response
        .json()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&response.body)))
}

/// A create's body with an id chosen here, so that the test knows it whatever the answer.
pub fn create_body(dataset_id: &str, primary: &str) -> String {
    json!({"primary": primary, "dataset_id": dataset_id}).to_string()
}

pub fn new_id() -> String {
    NodeUuid::random().to_string()
}

/// Calls `probe` every 20 ms until it gives something, for at most `timeout`; panics saying
/// what did not happen.
pub fn eventually<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Service `i`'s datasets, by id (a GET, so confirmed with ZooKeeper when it can be).
pub fn listed(pair: &RunningPair, i: usize) -> BTreeMap<String, Value> {
    let response = pair.send_to(i, "GET", DATASETS, &[], None);
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    let datasets = json_of(&response);
    let datasets = datasets.as_array().unwrap_or_else(|| panic!("not a list: {datasets}"));
    datasets.iter().map(|d| (d["dataset_id"].as_str().unwrap().to_owned(), d.clone())).collect()
}

/// A GET of service `i`'s `/v1/state/…` as JSON.
pub fn state(pair: &RunningPair, i: usize, path: &str) -> Value {
    let response = pair.send_to(i, "GET", &format!("/v1/state/{path}"), &[], None);
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    json_of(&response)
}

/// A fake `flocker-dataset-agent`: a node's certificate and a client of one service's agent
/// port.
pub struct Agent {
    pub node: NodeCertificate,
    pub era: String,
    client: Client,
}

impl Agent {
    pub fn new(certificates: &ClusterCertificates, agent_port: SocketAddr) -> Self {
        let node = certificates.node();
        let client = certificates.client_with(agent_port, &node.certificate, &node.key);
        Self { node, era: NodeUuid::random().to_string(), client }
    }

    /// The same agent (node and era), calling another service.
    pub fn moved_to(&self, certificates: &ClusterCertificates, agent_port: SocketAddr) -> Self {
        let client = certificates.client_with(agent_port, &self.node.certificate, &self.node.key);
        Self { node: self.node.clone(), era: self.era.clone(), client }
    }

    pub fn uuid(&self) -> String {
        self.node.uuid.to_string()
    }

    pub fn hello(&self) {
        let answer = self.call("POST", HELLO_PATH, &json!({"era": self.era}));
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    }

    /// A state report of `datasets` mounted under `/flocker/<id>`.
    pub fn report_mounted(&self, datasets: &[String]) {
        let datasets: Vec<Value> = datasets
            .iter()
            .map(|id| json!({"dataset_id": id, "path": format!("/flocker/{id}"), "maximum_size": 67108864}))
            .collect();
        let answer = self.call("PUT", STATE_PATH, &json!({"era": self.era, "datasets": datasets}));
        assert_eq!(answer.status, 204, "{}", String::from_utf8_lossy(&answer.body));
    }

    /// A hello giving the port where this node takes pushes.
    pub fn hello_taking_pushes(&self, port: u16) {
        let hello = json!({"era": self.era, "transfer_port": port});
        let answer = self.call("POST", HELLO_PATH, &hello);
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    }

    /// A state report of `datasets` (not mounted) and `transfers`.
    pub fn report_holding(&self, datasets: &[String], transfers: Value) {
        let datasets: Vec<Value> = datasets.iter().map(|id| json!({"dataset_id": id})).collect();
        let report = json!({"era": self.era, "datasets": datasets, "transfers": transfers});
        let answer = self.call("PUT", STATE_PATH, &report);
        assert_eq!(answer.status, 204, "{}", String::from_utf8_lossy(&answer.body));
    }

    /// The node's configuration: at once without `etag`, else when it is no longer `etag` or
    /// after `wait` seconds.
    pub fn poll(&self, etag: Option<&str>, wait: u32) -> AgentConfiguration {
        let path = match etag {
            Some(etag) => format!("{CONFIGURATION_PATH}?etag={etag}&wait={wait}"),
            None => CONFIGURATION_PATH.to_owned(),
        };
        let timeout = Some(Duration::from_secs(u64::from(wait) + 30));
        let answer = (self.client.send_with_timeout("GET", &path, &[], None, timeout))
            .unwrap_or_else(|e| panic!("GET {path} from node {}: {e}", self.node.uuid));
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        serde_json::from_slice(&answer.body).unwrap()
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> RawResponse {
        let body = body.to_string();
        self.client
            .send(method, path, &[], Some(body.as_bytes()))
            .unwrap_or_else(|e| panic!("{method} {path} from node {}: {e}", self.node.uuid))
    }
}

/// What the answers of a burst promise about its datasets.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Created for sure (201), with the primaries each may have now: the last acknowledged
    /// move's, and those of every move after it whose outcome is unknown.
    pub acknowledged: BTreeMap<String, BTreeSet<String>>,
    /// Creates whose outcome is unknown (504, or no answer from a service that was killed).
    pub unknown: BTreeSet<String>,
    /// Creates refused with 503: nothing was changed, so they must never be listed.
    pub refused: BTreeSet<String>,
    /// Every answer that was neither a success nor a 503 or 504 with its description; and
    /// transport failures from a service that was not killed.
    pub unexpected: Vec<String>,
    /// Statuses seen, for the failure message and the report.
    pub statuses: BTreeMap<u16, usize>,
}

impl Ledger {
    /// Checks service `i`'s list against the ledger: every acknowledged dataset with one of its
    /// possible primaries, nothing that was refused, nothing that was never asked for.
    /// First waits until the service answers from a confirmed view (no `X-Flocker-View-Age`):
    /// a service whose session is still finding a server answers from its last one, as documented.
    pub fn check(&self, pair: &RunningPair, i: usize) {
        assert!(self.unexpected.is_empty(), "unexpected answers: {:#?}", self.unexpected);
        eventually(Duration::from_secs(30), "a confirmed view", || {
            pair.send_to(i, "GET", DATASETS, &[], None).header(VIEW_AGE).is_none().then_some(())
        });
        let listed = listed(pair, i);
        for (id, primaries) in &self.acknowledged {
            let dataset = listed.get(id).unwrap_or_else(|| {
                panic!("service {i} does not list dataset {id}, whose create was acknowledged")
            });
            let primary = dataset["primary"].as_str().unwrap();
            assert!(
                primaries.contains(primary),
                "service {i} lists dataset {id} on {primary}, not one of {primaries:?}"
            );
        }
        for id in &self.refused {
            assert!(!listed.contains_key(id), "service {i} lists {id}, whose create got 503");
        }
        for id in listed.keys() {
            assert!(
                self.acknowledged.contains_key(id) || self.unknown.contains(id),
                "service {i} lists {id}, which no one created"
            );
        }
    }
}

/// Writes from `threads` threads, thread `t` on service `t % 2`, while `meanwhile` runs (on
/// this thread): creates (with ids chosen here) and moves of the thread's own acknowledged
/// datasets, two moves a create. `acknowledged[i]` counts the successes on service `i`. A
/// thread on a service marked in `killed` stops at its first transport failure, whose outcome
/// is then unknown. No thread writes for longer than a minute.
pub fn burst(
    pair: &RunningPair,
    threads: usize,
    acknowledged: &[AtomicUsize; 2],
    killed: &[AtomicBool; 2],
    meanwhile: impl FnOnce(),
) -> Ledger {
    /// Stops the threads even if `meanwhile` panics (the scope would wait for them forever).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ledger = Mutex::new(Ledger::default());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (ledger, stop) = (&ledger, &stop);
            scope.spawn(move || {
                let i = t % 2;
                let mut own: Vec<String> = Vec::new();
                let mut step = 0usize;
                while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                    let target = new_id();
                    let (id, create, answer) = if step.is_multiple_of(3) || own.is_empty() {
                        let id = new_id();
                        let answer = pair.try_send_to(
                            i,
                            "POST",
                            DATASETS,
                            &[],
                            Some(&create_body(&id, &target)),
                        );
                        (id, true, answer)
                    } else {
                        let id = own[step % own.len()].clone();
                        let body = json!({"primary": target}).to_string();
                        let path = format!("{DATASETS}/{id}");
                        (id.clone(), false, pair.try_send_to(i, "POST", &path, &[], Some(&body)))
                    };
                    step += 1;
                    let mut ledger = ledger.lock().unwrap();
                    let answer = match answer {
                        Ok(answer) => answer,
                        Err(_) if killed[i].load(Ordering::Acquire) => {
                            if create {
                                ledger.unknown.insert(id);
                            } else if let Some(p) = ledger.acknowledged.get_mut(&id) {
                                p.insert(target);
                            }
                            return;
                        }
                        Err(error) => {
                            ledger.unexpected.push(format!("service {i}: {error}"));
                            return;
                        }
                    };
                    *ledger.statuses.entry(answer.status).or_default() += 1;
                    let body = String::from_utf8_lossy(&answer.body).into_owned();
                    match (answer.status, create) {
                        (201, true) => {
                            ledger.acknowledged.insert(id.clone(), BTreeSet::from([target]));
                            own.push(id);
                        }
                        (200, false) => {
                            ledger.acknowledged.insert(id, BTreeSet::from([target]));
                        }
                        (503, _) if body.contains("nothing was changed") => {
                            if create {
                                ledger.refused.insert(id);
                            }
                        }
                        (504, _) if body.contains("may or may not have been made") => {
                            if create {
                                ledger.unknown.insert(id);
                            } else if let Some(p) = ledger.acknowledged.get_mut(&id) {
                                p.insert(target);
                            }
                        }
                        (status, _) => {
                            ledger.unexpected.push(format!("service {i}: {status} {body}"));
                            return;
                        }
                    }
                    if matches!(answer.status, 200 | 201) {
                        acknowledged[i].fetch_add(1, Ordering::AcqRel);
                    }
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        meanwhile();
    });
    ledger.into_inner().unwrap()
}
