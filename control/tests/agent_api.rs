//! The agent API on port 4524, as `flocker-dataset-agent` uses it: hello, the configuration
//! long-poll, state reports (problems included, as `/v1/state/problems` shows them), liveness,
//! block-device records, and the pushes between nodes' own disks (`pushes`, `arriving`,
//! `discard`, `peers`; transfers, as `/v1/state/transfers` shows them).

use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{
    AgentConfiguration, BLOCKDEVICE_OWNERSHIP_PATH, CONFIGURATION_PATH, HELLO_PATH,
    MAXIMUM_PROBLEM_BYTES, STATE_PATH,
};
use flocker_api::types::DATASET_TRANSFERS_PATH;
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

// ------------------------------------------------- pushes between nodes' own disks (issue 17)

impl Agent {
    /// A hello giving the port where this node takes pushes (`None`: it takes none).
    fn hello_taking_pushes(&self, port: Option<u16>) -> u16 {
        let hello = json!({"era": self.era, "backend": "btrfs", "transfer_port": port});
        self.call("POST", HELLO_PATH, Some(hello)).0
    }

    /// A report of `datasets` (ids, not mounted) and `transfers`: its status.
    fn report_holding(&self, datasets: &[DatasetId], transfers: Value) -> (u16, Value) {
        let datasets: Vec<Value> = datasets.iter().map(|id| json!({"dataset_id": id})).collect();
        let report = json!({"era": self.era, "datasets": datasets, "transfers": transfers});
        self.call("PUT", STATE_PATH, Some(report))
    }
}

fn transfers_of(control: &RunningControl) -> Value {
    let answer = control.send("GET", DATASET_TRANSFERS_PATH, &[], None);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    answer.json().unwrap()
}

#[test]
fn a_node_holding_a_dataset_wanted_elsewhere_pushes_it_and_the_primary_expects_it_from_there() {
    let control = start_with(&[]);
    let (holder, primary, bystander) =
        (Agent::new(&control), Agent::new(&control), Agent::new(&control));
    for agent in [&holder, &primary] {
        agent.hello_taking_pushes(Some(4525));
    }
    bystander.hello(); // on shared storage: it takes no pushes
    let moving = create_on(&control, &primary.node.uuid);
    let kept = create_on(&control, &holder.node.uuid);
    assert_eq!(holder.report_holding(&[moving, kept], json!([])).0, 204);

    let view = holder.poll(None, 0.0);
    assert_eq!(view.pushes, [(moving, primary.node.uuid)].into(), "its own dataset stays");
    assert!(view.arriving.is_empty() && view.discard.is_empty());
    let view = primary.poll(None, 0.0);
    assert_eq!(view.arriving, [(moving, [holder.node.uuid].into())].into());
    assert!(view.pushes.is_empty());
    // A node with nothing to push or take gets none of the new keys: as old services answered.
    let (status, raw) = bystander.call("GET", CONFIGURATION_PATH, None);
    assert_eq!(status, 200);
    for key in ["pushes", "arriving", "discard", "peers"] {
        assert!(raw.get(key).is_none(), "{key} in {raw}");
    }

    // Once the primary holds it too (the push is done) and the old node no longer does, the
    // primary expects it from nowhere and the old node pushes nothing.
    let before = primary.poll(None, 0.0);
    assert_eq!(primary.report_holding(&[moving], json!([])).0, 204);
    assert_eq!(holder.report_holding(&[kept], json!([])).0, 204);
    let after = primary.poll(Some(&before.etag), 0.0);
    assert_ne!(after.etag, before.etag, "the etag changes with what other nodes hold");
    assert!(after.arriving.is_empty() && after.pushes.is_empty());
    assert!(holder.poll(None, 0.0).pushes.is_empty());

    // A move back: the node that holds it now pushes it to its new primary.
    control.client.move_dataset(&moving, &holder.node.uuid, None).unwrap();
    assert_eq!(primary.poll(None, 0.0).pushes, [(moving, holder.node.uuid)].into());
    assert_eq!(holder.poll(None, 0.0).arriving, [(moving, [primary.node.uuid].into())].into());
}

#[test]
fn a_waiting_poll_of_the_primary_answers_when_another_node_reports_holding_its_dataset() {
    let control = start_with(&[]);
    let (holder, primary) = (Agent::new(&control), Agent::new(&control));
    holder.hello_taking_pushes(Some(4525));
    primary.hello_taking_pushes(Some(4525));
    let moving = create_on(&control, &primary.node.uuid);
    // The first report of its volume records that it had one, which changes the configuration
    // (and wakes polls): report it once and take it back before the poll, so that only what
    // the holder holds changes then.
    assert_eq!(holder.report_holding(&[moving], json!([])).0, 204);
    assert_eq!(holder.report_holding(&[], json!([])).0, 204);
    let etag = primary.poll(None, 0.0).etag;
    let tag = control.tag();
    let waiting = std::thread::spawn({
        let client = primary.client.clone();
        let path = format!("{CONFIGURATION_PATH}?etag={etag}&wait=20");
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
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(holder.report_holding(&[moving], json!([])).0, 204);
    let (view, waited) = waiting.join().unwrap();
    assert_eq!(view.arriving, [(moving, [holder.node.uuid].into())].into());
    assert!(
        waited < Duration::from_secs(10),
        "the poll waited {waited:?}, not woken by the report"
    );
    assert_eq!(control.tag(), tag, "the configuration did not change meanwhile");

    // Mounting what it holds changes nothing the primary is told.
    let mounted = json!([{"dataset_id": moving, "path": format!("/flocker/{moving}")}]);
    assert_eq!(holder.report(holder.era, mounted), 204);
    assert_eq!(primary.poll(Some(&view.etag), 0.5).etag, view.etag);
}

#[test]
fn peers_are_the_other_live_nodes_that_gave_a_transfer_port_as_their_hello_last_said() {
    let control = start_with(&[]);
    let (a, b, c) = (Agent::new(&control), Agent::new(&control), Agent::new(&control));
    assert_eq!(a.hello_taking_pushes(Some(7000)), 200);
    assert_eq!(b.hello_taking_pushes(Some(7001)), 200);
    assert_eq!(c.hello_taking_pushes(None), 200);
    let address = |port: u16| format!("127.0.0.1:{port}");
    assert_eq!(a.poll(None, 0.0).peers, [(b.node.uuid, address(7001))].into());
    let shared_storage = c.poll(None, 0.0);
    assert!(shared_storage.peers.is_empty(), "a node that takes no pushes makes none");

    // A waiting poll answers when another node's hello gives another port, or none.
    let etag = a.poll(None, 0.0).etag;
    let waiting = std::thread::spawn({
        let client = a.client.clone();
        let path = format!("{CONFIGURATION_PATH}?etag={etag}&wait=20");
        move || {
            let response = client
                .send_with_timeout("GET", &path, &[], None, Some(Duration::from_secs(60)))
                .unwrap();
            serde_json::from_slice::<AgentConfiguration>(&response.body).unwrap()
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(b.hello_taking_pushes(None), 200);
    let view = waiting.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "not woken by the hello");
    assert!(view.peers.is_empty(), "{:?}", view.peers);
    assert!(c.poll(None, 0.0).peers.is_empty());

    let (status, body) =
        c.call("POST", HELLO_PATH, Some(json!({"era": c.era, "transfer_port": 0})));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_node_that_went_quiet_is_no_peer_and_what_it_held_arrives_from_nowhere() {
    let control = start_with(&["--node-expiry", "2"]);
    let (quiet, primary) = (Agent::new(&control), Agent::new(&control));
    assert_eq!(quiet.hello_taking_pushes(Some(7000)), 200);
    primary.hello_taking_pushes(Some(4525));
    let id = create_on(&control, &primary.node.uuid);
    assert_eq!(quiet.report_holding(&[id], json!([])).0, 204);
    let view = primary.poll(None, 0.0);
    assert_eq!(view.arriving, [(id, [quiet.node.uuid].into())].into());
    assert_eq!(view.peers.len(), 1);
    // The primary keeps polling (which keeps it alive); the other node says nothing more.
    let mut etag = view.etag;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let view = primary.poll(Some(&etag), 0.5);
        if view.arriving.is_empty() && view.peers.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the quiet node stayed in the view: {view:?}");
        etag = view.etag;
    }
}

#[test]
fn a_node_holding_a_deleted_dataset_of_another_node_is_told_to_discard_it() {
    let control = start_with(&[]);
    let (holder, primary) = (Agent::new(&control), Agent::new(&control));
    holder.hello_taking_pushes(Some(4525));
    primary.hello_taking_pushes(Some(4525));
    let (theirs, mine) =
        (create_on(&control, &primary.node.uuid), create_on(&control, &holder.node.uuid));
    assert_eq!(holder.report_holding(&[theirs, mine], json!([])).0, 204);
    for id in [theirs, mine] {
        control.client.delete_dataset(&id, None).unwrap();
    }
    let view = holder.poll(None, 0.0);
    assert_eq!(view.discard, [theirs].into(), "its own tombstone is in its datasets");
    assert!(view.datasets.iter().any(|d| d.dataset_id == mine && d.deleted));
    assert!(view.pushes.is_empty());
    assert!(primary.poll(None, 0.0).arriving.is_empty(), "nobody wants a deleted dataset");
}

#[test]
fn transfers_are_listed_until_the_next_report_leaves_them_out() {
    let control = start_with(&[]);
    let (holder, primary) = (Agent::new(&control), Agent::new(&control));
    holder.hello_taking_pushes(Some(4525));
    primary.hello_taking_pushes(Some(4525));
    let (first, second) =
        (create_on(&control, &primary.node.uuid), create_on(&control, &primary.node.uuid));
    assert_eq!(transfers_of(&control), json!([]));
    const LOST: &str = "the connection to the node was lost; trying again";
    let to = primary.node.uuid;
    let transfers = json!([
        {"dataset_id": second, "to": to, "phase": "handoff", "sent": 10},
        {"dataset_id": DatasetId::random(), "to": to, "phase": "pre-copy", "sent": 1},
        {"dataset_id": first, "to": to, "phase": "pre-copy", "sent": 4096, "estimate": 1048576,
         "problem": LOST},
    ]);
    assert_eq!(holder.report_holding(&[first, second], transfers).0, 204);
    let from = holder.node.uuid;
    let mut expected = vec![
        json!({"dataset_id": first, "from": from, "to": to, "phase": "pre-copy", "sent": 4096,
               "estimate": 1048576, "problem": LOST}),
        json!({"dataset_id": second, "from": from, "to": to, "phase": "handoff", "sent": 10}),
    ];
    expected.sort_by_key(|t| t["dataset_id"].as_str().unwrap().to_owned());
    assert_eq!(transfers_of(&control), json!(expected), "by dataset, none of unknown datasets");
    assert_eq!(holder.report_holding(&[first, second], json!([])).0, 204);
    assert_eq!(transfers_of(&control), json!([]), "a report without them ends them");
}

#[test]
fn a_transfer_with_a_problem_too_long_or_two_of_one_dataset_refuses_the_whole_report() {
    let control = start_with(&[]);
    let (holder, primary) = (Agent::new(&control), Agent::new(&control));
    holder.hello();
    primary.hello();
    let id = create_on(&control, &primary.node.uuid);
    let to = primary.node.uuid;
    let with_problem = |problem: &str| {
        json!([{"dataset_id": id, "to": to, "phase": "pre-copy", "sent": 0,
                "problem": problem}])
    };
    let one = json!({"dataset_id": id, "to": to, "phase": "handoff", "sent": 0});
    for (bad, why) in [
        (with_problem(&"x".repeat(2000)), "longer than 1024 bytes"),
        (with_problem("two\nlines"), "control character"),
        (json!([one, one]), "more than one transfer"),
    ] {
        let (status, body) = holder.report_holding(&[id], bad.clone());
        assert_eq!(status, 400, "{bad}");
        assert!(body["description"].is_string() && body.to_string().contains(why), "{body}");
    }
    assert_eq!(transfers_of(&control), json!([]));
    assert!(primary.poll(None, 0.0).arriving.is_empty(), "nothing of a refused report is kept");
    let longest = with_problem(&"x".repeat(MAXIMUM_PROBLEM_BYTES));
    assert_eq!(holder.report_holding(&[id], longest).0, 204);
    assert_eq!(transfers_of(&control).as_array().unwrap().len(), 1);
}
