//! The agent API on port 4524, as `flocker-dataset-agent` uses it: hello, the configuration
//! long-poll, state reports (problems included, as `/v1/state/problems` shows them), liveness
//! and block-device records.

use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{
    AgentConfiguration, BLOCKDEVICE_OWNERSHIP_PATH, CONFIGURATION_PATH, HELLO_PATH,
    MAXIMUM_PROBLEM_BYTES, STATE_PATH,
};
use flocker_api::{AcquireLease, Client, CreateDataset, DatasetId, DatasetProblem, Era, NodeUuid};
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
    let id = create_on(&control, &agent.node.uuid);
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
    let id = create_on(&control, &agent.node.uuid);
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

// ---------------------------------------------------------------- problems (issue 14)

impl Agent {
    /// A report of no datasets and these problems (`[{"dataset_id": …, "problem": …}]`): its
    /// status and answer.
    fn report_problems(&self, problems: Value) -> (u16, Value) {
        let report = json!({"era": self.era, "datasets": [], "problems": problems});
        self.call("PUT", STATE_PATH, Some(report))
    }
}

fn problems_of(control: &RunningControl) -> Vec<DatasetProblem> {
    control.client.dataset_problems().unwrap().expect("the service serves /v1/state/problems")
}

#[test]
fn a_nodes_problems_are_listed_until_its_next_report_leaves_them_out() {
    let control = start_with(&[]);
    let (agent, other) = (Agent::new(&control), Agent::new(&control));
    agent.hello();
    other.hello();
    let (mine, also_mine) =
        (create_on(&control, &agent.node.uuid), create_on(&control, &agent.node.uuid));
    let theirs = create_on(&control, &other.node.uuid);
    let (status, _) = agent.report_problems(json!([
        {"dataset_id": also_mine, "problem": "the volume holds a file system of its own (xfs)"},
        {"dataset_id": theirs, "problem": "not this node's to say"},
        {"dataset_id": mine, "problem": "the volume is not visible on this node"},
        {"dataset_id": DatasetId::random(), "problem": "no such dataset"},
    ]));
    assert_eq!(status, 204);
    let mut expected = vec![
        DatasetProblem {
            dataset_id: mine,
            node_uuid: agent.node.uuid,
            problem: "the volume is not visible on this node".into(),
        },
        DatasetProblem {
            dataset_id: also_mine,
            node_uuid: agent.node.uuid,
            problem: "the volume holds a file system of its own (xfs)".into(),
        },
    ];
    expected.sort_by_key(|p| p.dataset_id);
    assert_eq!(problems_of(&control), expected, "its own, sorted by dataset, and no others");
    let (said, log) = control.process.wait_for_log("whose primary is not that node");
    assert!(said && log.contains(&theirs.to_string()), "not logged:\n{log}");

    // Only the primary's word counts: once a dataset moves away, its old node's problem goes.
    control.client.move_dataset(&also_mine, &other.node.uuid, None).unwrap();
    assert_eq!(problems_of(&control).iter().map(|p| p.dataset_id).collect::<Vec<_>>(), [mine]);

    assert_eq!(agent.report(agent.era, json!([])), 204);
    assert_eq!(problems_of(&control), [], "the next report without it ends it");
}

#[test]
fn problems_never_show_in_the_flocker_state_of_datasets() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let (mounted, unmounted) =
        (create_on(&control, &agent.node.uuid), create_on(&control, &agent.node.uuid));
    let report = json!({
        "era": agent.era,
        "datasets": [
            {"dataset_id": mounted, "path": format!("/flocker/{mounted}"), "maximum_size": 67108864},
            {"dataset_id": unmounted, "maximum_size": 67108864},
        ],
        "problems": [{"dataset_id": unmounted, "problem": "a file system of its own (xfs)"}],
    });
    assert_eq!(agent.call("PUT", STATE_PATH, Some(report)).0, 204);
    assert_eq!(problems_of(&control).len(), 1);
    // Flocker's v1 contract for these items: these keys, "no other keys".
    let states = control.send("GET", "/v1/state/datasets", &[], None).json().unwrap();
    let keys = |item: &Value| {
        let mut keys: Vec<String> = item.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let items = states.as_array().unwrap();
    assert_eq!(items.len(), 2, "{states}");
    assert_eq!(keys(&items[0]), ["dataset_id", "maximum_size", "path", "primary"]);
    assert_eq!(keys(&items[1]), ["dataset_id", "maximum_size"]);
}

#[test]
fn a_problem_too_long_doubled_or_holding_control_characters_refuses_the_whole_report() {
    let control = start_with(&[]);
    let agent = Agent::new(&control);
    agent.hello();
    let id = create_on(&control, &agent.node.uuid);
    let problem = |text: &str| json!([{"dataset_id": id, "problem": text}]);
    let longest = "x".repeat(MAXIMUM_PROBLEM_BYTES);
    for (bad, why) in [
        (problem(&format!("{longest}x")), "longer than 1024 bytes"),
        (problem("two\nlines"), "control character"),
        (problem("\u{1b}[2J cleared the screen"), "control character"),
        (problem("a C1 control \u{9b}"), "control character"),
        (
            json!([{"dataset_id": id, "problem": "one"}, {"dataset_id": id, "problem": "two"}]),
            "more than one problem",
        ),
    ] {
        let (status, body) = agent.report_problems(bad.clone());
        assert_eq!(status, 400, "{bad}");
        let said = serde_json::to_string(&body).unwrap();
        assert!(body["description"].is_string() && said.contains(why), "{body}");
    }
    assert_eq!(problems_of(&control), [], "nothing of a refused report is kept");
    // Exactly the limit, in characters of more than one byte too, is fine.
    assert_eq!(agent.report_problems(problem(&longest)).0, 204);
    assert_eq!(problems_of(&control)[0].problem, longest);
    let accented = "é".repeat(MAXIMUM_PROBLEM_BYTES / 2);
    assert_eq!(agent.report_problems(problem(&accented)).0, 204);
    assert_eq!(problems_of(&control)[0].problem, accented);
}

#[test]
fn a_reboot_or_a_quiet_node_drops_its_problems() {
    let control = start_with(&["--node-expiry", "2"]);
    let mut agent = Agent::new(&control);
    agent.hello();
    let id = create_on(&control, &agent.node.uuid);
    let problem = json!([{"dataset_id": id, "problem": "not visible"}]);
    assert_eq!(agent.report_problems(problem.clone()).0, 204);
    assert_eq!(problems_of(&control).len(), 1);
    agent.era = Era::random();
    agent.hello();
    assert_eq!(problems_of(&control), [], "a new era starts with none");
    assert_eq!(agent.report_problems(problem).0, 204);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !problems_of(&control).is_empty() {
        assert!(Instant::now() < deadline, "the quiet node's problem stayed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 15: a node speaks only for itself. A node reporting another node's dataset as mounted
/// on itself (at any path), or datasets the configuration does not know, changes nothing in
/// `/v1/state/datasets`, which lists each dataset once, where its primary has it; the service
/// logs the rogue report. An empty report erases nothing another node said.
#[test]
fn a_node_cannot_report_for_another_node() {
    let control = start_with(&[]);
    let (owner, rogue) = (Agent::new(&control), Agent::new(&control));
    owner.hello();
    rogue.hello();
    let (mounted, idle) =
        (create_on(&control, &owner.node.uuid), create_on(&control, &owner.node.uuid));
    let honest = json!([
        {"dataset_id": mounted, "path": format!("/flocker/{mounted}")},
        {"dataset_id": idle},
    ]);
    assert_eq!(owner.report(owner.era, honest), 204);
    let invented = DatasetId::random();
    let claims = json!([
        {"dataset_id": mounted, "path": "/evil"},
        {"dataset_id": idle, "path": "/evil-too"},
        {"dataset_id": invented, "path": "/invented"},
    ]);
    assert_eq!(rogue.report(rogue.era, claims), 204);
    let states = control.client.dataset_states().unwrap();
    assert_eq!(states.len(), 2, "each dataset once, nothing invented: {states:?}");
    let state_of = |id: DatasetId| states.iter().find(|s| s.dataset_id == id).unwrap().clone();
    assert_eq!(state_of(mounted).primary, Some(owner.node.uuid));
    assert_eq!(state_of(mounted).path, Some(format!("/flocker/{mounted}")));
    assert_eq!((state_of(idle).primary, state_of(idle).path), (None, None));
    assert_eq!(rogue.report(rogue.era, json!([])), 204);
    assert_eq!(control.client.dataset_states().unwrap().len(), 2, "an empty report erased nothing");
    assert!(
        control.process.log().contains("reported datasets that are not its own"),
        "the rogue report is logged:\n{}",
        control.process.log()
    );
}

/// Issue 15: block-device records only for datasets that exist and are the node's own, with a
/// short printable id: a node cannot grow the configuration with records of its own making.
#[test]
fn block_device_records_only_for_the_nodes_own_datasets_and_bounded() {
    let control = start_with(&[]);
    let (owner, other) = (Agent::new(&control), Agent::new(&control));
    owner.hello();
    other.hello();
    let id = create_on(&control, &owner.node.uuid);
    let record = |agent: &Agent, dataset: Value, device: String| {
        let body = json!({"dataset_id": dataset, "blockdevice_id": device});
        agent.call("POST", BLOCKDEVICE_OWNERSHIP_PATH, Some(body))
    };
    let tag = control.tag();
    let (status, body) = record(&other, json!(id), "block-x".into());
    assert_eq!(status, 400, "another node's dataset: {body}");
    assert_eq!(record(&owner, json!(DatasetId::random()), "block-x".into()).0, 400, "unknown");
    assert_eq!(record(&owner, json!(id), "b".repeat(257)).0, 400, "too long");
    assert_eq!(record(&owner, json!(id), "block\n1".into()).0, 400, "control characters");
    assert_eq!(control.tag(), tag, "nothing was recorded");
    assert!(body["description"].is_string(), "a Flocker-style description: {body}");
    assert_eq!(record(&owner, json!(id), format!("block-{id}")).0, 200);
}
