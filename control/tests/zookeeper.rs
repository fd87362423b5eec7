//! Two control services sharing one configuration in a real ZooKeeper 3.8 ensemble (three
//! servers on loopback, started by the test kit).

use std::time::{Duration, Instant};

use flocker_api::{Client, RawResponse};
use flocker_testkit::{ClusterCertificates, ControlProcess, ZooKeeperEnsemble};
use serde_json::{Value, json};

const DATASETS: &str = "/v1/configuration/datasets";
const TAG: &str = "x-configuration-tag";

/// An ensemble and two services on it, with a client of each.
struct Pair {
    services: Vec<ControlProcess>,
    clients: Vec<Client>,
    ensemble: ZooKeeperEnsemble,
    certificates: ClusterCertificates,
}

impl Pair {
    fn start() -> Self {
        let ensemble = ZooKeeperEnsemble::start(3);
        let certificates = ClusterCertificates::new();
        let url = format!("zk://{}/flocker", ensemble.connect_string());
        let mut services = Vec::new();
        let mut clients = Vec::new();
        for name in ["a", "b"] {
            let data = certificates.root().join(name);
            let service = ControlProcess::start(
                env!("CARGO_BIN_EXE_flocker-control").as_ref(),
                &certificates,
                &data,
                &["--store", &url],
            )
            .unwrap_or_else(|e| panic!("{e}"));
            clients.push(certificates.client(service.rest, "alice"));
            services.push(service);
        }
        Self { services, clients, ensemble, certificates }
    }

    fn send(
        &self,
        i: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> RawResponse {
        let body = body.map(Value::to_string);
        self.clients[i]
            .send(method, path, headers, body.as_deref().map(str::as_bytes))
            .unwrap_or_else(|e| {
                panic!("{method} {path} on service {i}: {e}\n{}", self.services[i].log())
            })
    }
}

#[test]
fn a_dataset_created_on_one_service_is_listed_by_the_other_with_the_same_tag() {
    let pair = Pair::start();
    let node = flocker_api::NodeUuid::random().to_string();
    let created = pair.send(0, "POST", DATASETS, &[], Some(&json!({"primary": node})));
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let on_a = pair.send(0, "GET", DATASETS, &[], None);
    let on_b = pair.send(1, "GET", DATASETS, &[], None);
    assert_eq!(on_b.json().unwrap(), on_a.json().unwrap());
    assert_eq!(on_a.header(TAG), on_b.header(TAG));
    let _ = &pair.certificates;
    let _ = &pair.ensemble;
}

/// A write that changes nothing (a move to the dataset's own primary) is decided again on a
/// confirmed view. During a ZooKeeper election that waits for the new leader, as a change does,
/// rather than failing at once with 503 ("Seconds a write waits for ZooKeeper before it fails").
#[test]
fn a_write_that_changes_nothing_waits_through_a_zookeeper_election() {
    let mut pair = Pair::start();
    let node = flocker_api::NodeUuid::random().to_string();
    let created = pair.send(0, "POST", DATASETS, &[], Some(&json!({"primary": node})));
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let id = created.json().unwrap()["dataset_id"].as_str().unwrap().to_owned();
    let leader = pair.ensemble.leader().expect("the ensemble has a leader");
    pair.ensemble.kill(leader);
    // Every server drops its clients when the leader goes: let the services see theirs go.
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let path = format!("{DATASETS}/{id}");
    let same = pair.send(0, "POST", &path, &[], Some(&json!({"primary": node})));
    let waited = started.elapsed();
    assert_eq!(
        same.status,
        200,
        "after {waited:?}: {}\n{}",
        String::from_utf8_lossy(&same.body),
        pair.services[0].log()
    );
}
