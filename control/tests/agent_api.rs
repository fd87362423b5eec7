//! The agent API on port 4524, as `flocker-dataset-agent` uses it: hello, the configuration
//! long-poll, state reports, liveness and block-device records.

use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{
    AgentConfiguration, BLOCKDEVICE_OWNERSHIP_PATH, CONFIGURATION_PATH, HELLO_PATH, STATE_PATH,
};
use flocker_api::{AcquireLease, Client, CreateDataset, DatasetId, Era, NodeUuid};
use flocker_testkit::{ClusterCertificates, ControlProcess, NodeCertificate, RunningControl};
use serde_json::{Value, json};

fn start_with(extra: &[&str]) -> RunningControl {
    RunningControl::start_with(env!("CARGO_BIN_EXE_flocker-control").as_ref(), extra)
}

struct Agent {
    node: NodeCertificate,
    client: Client,
    era: Era,
}

impl Agent {
    fn new(control: &RunningControl) -> Self {
        let node = control.certificates.node();
        let client =
            control.certificates.client_with(control.process.agent, &node.certificate, &node.key);
        Self { node, client, era: Era::random() }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let response = self
            .client
            .send_with_timeout(
                method,
                path,
                &[],
                body.as_deref().map(str::as_bytes),
                Some(Duration::from_secs(60)),
            )
            .unwrap();
        (response.status, response.json().unwrap_or(Value::Null))
    }

    fn hello(&self) -> Value {
        let (status, welcome) =
            self.call("POST", HELLO_PATH, Some(json!({"era": self.era, "backend": "loopback"})));
        assert_eq!(status, 200, "{welcome}");
        welcome
    }

    fn poll(&self, etag: Option<&str>, wait: f64) -> AgentConfiguration {
        let query = match etag {
            Some(etag) => format!("{CONFIGURATION_PATH}?etag={etag}&wait={wait}"),
            None => CONFIGURATION_PATH.to_owned(),
        };
        let (status, body) = self.call("GET", &query, None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    fn report(&self, era: Era, datasets: Value) -> u16 {
        self.call("PUT", STATE_PATH, Some(json!({"era": era, "datasets": datasets}))).0
    }
}

/// Stops the service with `stop`, starts it again on the same data and ports, and gives the
/// agent a client of the new one, after its hello. The new service lives as long as the first
/// of the pair.
fn restart(
    control: RunningControl,
    agent: Agent,
    stop: impl FnOnce(&mut ControlProcess),
) -> ((ControlProcess, ClusterCertificates), Agent) {
    let RunningControl { mut process, certificates, .. } = control;
    stop(&mut process);
    let restarted = ControlProcess::start(
        env!("CARGO_BIN_EXE_flocker-control").as_ref(),
        &certificates,
        &process.data_path,
        &[],
    )
    .unwrap();
    let client =
        certificates.client_with(restarted.agent, &agent.node.certificate, &agent.node.key);
    let agent = Agent { client, ..agent };
    agent.hello();
    ((restarted, certificates), agent)
}

fn create_on(control: &RunningControl, node: &NodeUuid) -> DatasetId {
    let request = CreateDataset {
        primary: *node,
        dataset_id: None,
        maximum_size: None,
        metadata: Default::default(),
    };
    control.client.create_dataset(&request, None).unwrap().dataset_id
}

#[test]
fn hello_answers_with_the_node_its_certificate_names_and_makes_the_era_known() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    let welcome = agent.hello();
    assert_eq!(welcome["node_uuid"], json!(agent.node.uuid.to_string()));
    assert_eq!(control.client.node_by_era(&agent.era).unwrap(), Some(agent.node.uuid));
}

#[test]
fn a_poll_gives_the_node_its_own_datasets_and_the_leases_that_pin_something_on_it() {
    let control = start_with(&[]);
    let (agent, other) = (Agent::new(&control), Agent::new(&control));
    agent.hello();
    let (mine, moved_away) =
        (create_on(&control, &agent.node.uuid), create_on(&control, &agent.node.uuid));
    let theirs = create_on(&control, &other.node.uuid);
    for dataset in [mine, moved_away] {
        let lease = AcquireLease { dataset_id: dataset, node_uuid: agent.node.uuid, expires: None };
        control.client.acquire_lease(&lease).unwrap();
    }
    let before = agent.poll(None, 0.0);
    control.client.move_dataset(&moved_away, &other.node.uuid, None).unwrap();
    let view = agent.poll(Some(&before.etag), 0.0);
    assert_eq!(view.datasets.iter().map(|d| d.dataset_id).collect::<Vec<_>>(), [mine]);
    // The lease on `mine` changes nothing here (it is wanted here anyway); the one on the
    // dataset that moved away keeps it mounted here.
    assert_eq!(view.leases, [moved_away]);
    assert!(!view.datasets.iter().any(|d| d.dataset_id == theirs));
}

#[test]
fn a_task_taking_and_releasing_a_lease_on_a_dataset_wanted_here_does_not_wake_the_agent() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let dataset = create_on(&control, &agent.node.uuid);
    let before = agent.poll(None, 0.0);
    let lease = AcquireLease { dataset_id: dataset, node_uuid: agent.node.uuid, expires: None };
    control.client.acquire_lease(&lease).unwrap();
    control.client.release_lease(&dataset).unwrap();
    assert_eq!(agent.poll(Some(&before.etag), 0.0).etag, before.etag);
}

#[test]
fn a_poll_with_the_current_etag_returns_as_soon_as_the_configuration_changes() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let etag = agent.poll(None, 0.0).etag;
    let (waiting, node) = (
        std::thread::spawn({
            let client = agent.client.clone();
            let path = format!("{CONFIGURATION_PATH}?etag={etag}&wait=30");
            move || {
                let started = Instant::now();
                let response = client
                    .send_with_timeout("GET", &path, &[], None, Some(Duration::from_secs(60)))
                    .unwrap();
                (
                    serde_json::from_slice::<AgentConfiguration>(&response.body).unwrap(),
                    started.elapsed(),
                )
            }
        }),
        agent.node.uuid,
    );
    std::thread::sleep(Duration::from_millis(300));
    let created = create_on(&control, &node);
    let (view, waited) = waiting.join().unwrap();
    assert_ne!(view.etag, etag);
    assert_eq!(view.datasets[0].dataset_id, created);
    assert!(
        waited < Duration::from_secs(30),
        "the poll waited out its time instead of returning on the change"
    );
}

#[test]
fn a_poll_with_the_current_etag_and_no_change_returns_the_same_after_waiting() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let first = agent.poll(None, 0.0);
    // A change to another node's datasets does not wake this node.
    create_on(&control, &NodeUuid::random());
    let started = Instant::now();
    let second = agent.poll(Some(&first.etag), 1.0);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(second, first);
}

#[test]
fn a_report_needs_a_hello_in_the_same_era() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    assert_eq!(agent.report(agent.era, json!([])), 409, "before hello");
    assert_eq!(agent.call("GET", CONFIGURATION_PATH, None).0, 409, "a poll before hello");
    agent.hello();
    assert_eq!(agent.report(Era::random(), json!([])), 409, "another era");
    assert_eq!(agent.report(agent.era, json!([])), 204);
}

#[test]
fn a_report_with_a_relative_path_or_a_bad_id_is_refused() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let id = DatasetId::random();
    assert_eq!(agent.report(agent.era, json!([{"dataset_id": id, "path": "flocker/x"}])), 400);
    assert_eq!(agent.report(agent.era, json!([{"dataset_id": "nope"}])), 400);
    assert_eq!(control.client.dataset_states().unwrap(), []);
}

#[test]
fn a_reboot_forgets_what_the_node_reported_in_its_previous_era() {
    let control = start_with(&[]);
    let mut agent = Agent::new(&control);
    agent.hello();
    let id = DatasetId::random();
    agent.report(agent.era, json!([{"dataset_id": id, "path": format!("/flocker/{id}")}]));
    assert_eq!(control.client.dataset_states().unwrap().len(), 1);
    agent.era = Era::random();
    agent.hello();
    assert_eq!(control.client.dataset_states().unwrap(), []);
}

#[test]
fn a_node_that_goes_quiet_leaves_the_state_and_comes_back_on_hello() {
    let control = start_with(&["--node-expiry", "2"]);
    let agent = Agent::new(&control);
    agent.hello();
    let id = DatasetId::random();
    agent.report(agent.era, json!([{"dataset_id": id, "path": format!("/flocker/{id}")}]));
    assert_eq!(control.client.list_nodes().unwrap().len(), 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !control.client.list_nodes().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the quiet node never left");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(control.client.dataset_states().unwrap(), []);
    assert_eq!(agent.report(agent.era, json!([])), 409, "it must say hello again");
    agent.hello();
    assert_eq!(control.client.list_nodes().unwrap()[0].uuid, agent.node.uuid);
}

#[test]
fn a_block_device_is_recorded_once_and_for_good() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let id = create_on(&control, &agent.node.uuid);
    let record = |device: &str| {
        agent
            .call(
                "POST",
                BLOCKDEVICE_OWNERSHIP_PATH,
                Some(json!({"dataset_id": id, "blockdevice_id": device})),
            )
            .0
    };
    let tag = control.tag();
    assert_eq!(record(&format!("block-{id}")), 200);
    assert_ne!(control.tag(), tag, "ownership is part of the configuration");
    assert_eq!(record(&format!("block-{id}")), 200);
    assert_eq!(record("block-other"), 409);
    assert_eq!(agent.poll(None, 0.0).blockdevice_ids[&id], format!("block-{id}"));

    let (_restarted, agent) = restart(control, agent, |process| {
        process.terminate();
    });
    assert_eq!(agent.poll(None, 0.0).blockdevice_ids[&id], format!("block-{id}"));
}

#[test]
fn a_reported_volume_is_remembered_for_good_before_the_state_shows_it() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let (reported, never_reported) =
        (create_on(&control, &agent.node.uuid), create_on(&control, &agent.node.uuid));
    assert!(agent.poll(None, 0.0).had_volume.is_empty());
    let stranger = DatasetId::random(); // not in the configuration: not recorded
    let volumes = json!([{"dataset_id": reported}, {"dataset_id": stranger}]);
    assert_eq!(agent.report(agent.era, volumes), 204);
    assert_eq!(agent.poll(None, 0.0).had_volume, [reported].into());

    // Even a kill -9 right after the answer keeps it: it was durable before the 204.
    let (_restarted, agent) = restart(control, agent, ControlProcess::kill);
    let view = agent.poll(None, 0.0);
    assert_eq!(view.had_volume, [reported].into());
    assert!(!view.had_volume.contains(&never_reported));
}
