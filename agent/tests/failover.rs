//! An agent given several instances of the control service (real `flocker-control` processes
//! sharing the cluster's certificates and ports, each on its own loopback address and with its
//! own store): it talks to one that answers, stays with it while its long-polls end as they
//! should, and when that instance dies goes on with the next, saying hello to it. The directory
//! backend with links: no root needed.

use std::time::{Duration, Instant};

use flocker_api::{Client, CreateDataset, DatasetId, NodeUuid};
use flocker_testkit::{
    AgentProcess, BackendKind, ClusterCertificates, ControlProcess, agent_binary, closed_address,
    control_binary, start_instances,
};

/// Starts an agent whose `agent.yml` names `hosts` (a YAML list) on `port`.
fn agent(certificates: &ClusterCertificates, hosts: &[&str], port: u16) -> AgentProcess {
    let hostname = format!("[{}]", hosts.join(", "));
    AgentProcess::start_reaching(
        &agent_binary(),
        certificates,
        "node-a",
        (&hostname, port),
        None,
        BackendKind::DirectorySymlink,
        &certificates.root().join("shared"),
    )
    .unwrap_or_else(|error| panic!("{error}"))
}

fn wait_for(what: &str, agent: &AgentProcess, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn knows(rest: &Client, node: NodeUuid) -> bool {
    rest.list_nodes().is_ok_and(|nodes| nodes.iter().any(|n| n.uuid == node))
}

/// Creates a dataset on `node` through `rest`, and waits until the agent reports it mounted.
fn reported_mounted(rest: &Client, agent: &AgentProcess) -> DatasetId {
    let request = CreateDataset {
        primary: agent.node.uuid,
        dataset_id: None,
        maximum_size: None,
        metadata: Default::default(),
    };
    let id = rest.create_dataset(&request, None).expect("create").dataset_id;
    wait_for("the agent to report the dataset mounted", agent, || {
        rest.dataset_states()
            .is_ok_and(|states| states.iter().any(|s| s.dataset_id == id && s.path.is_some()))
    });
    id
}

fn rest_client(certificates: &ClusterCertificates, instance: &ControlProcess) -> Client {
    certificates.client(instance.rest, "alice")
}

#[test]
fn an_agent_given_a_dead_and_a_live_instance_says_hello_to_and_reports_to_the_live_one() {
    let certificates = ClusterCertificates::new();
    let live = start_instances(&control_binary(), &certificates, &["127.0.0.31"], &[]);
    let port = live[0].agent.port();
    let dead = closed_address("127.0.0.30", port);
    let agent = agent(&certificates, &["127.0.0.30", "127.0.0.31"], port);
    let rest = rest_client(&certificates, &live[0]);

    wait_for("the hello", &agent, || knows(&rest, agent.node.uuid));
    reported_mounted(&rest, &agent);
    let moved_on = format!(
        "control service at {dead} did not answer (connection refused); using 127.0.0.31:{port}"
    );
    assert!(agent.log().contains(&moved_on), "{}", agent.log());
}

#[test]
fn when_its_instance_dies_the_agent_goes_on_with_the_next_and_says_hello_to_it() {
    let certificates = ClusterCertificates::new();
    // A node expiry of 4 s makes each long-poll wait 2 s, so several end during the test.
    let mut instances = start_instances(
        &control_binary(),
        &certificates,
        &["127.0.0.32", "127.0.0.33"],
        &["--node-expiry", "4"],
    );
    let port = instances[0].agent.port();
    let agent = agent(&certificates, &["127.0.0.32", "127.0.0.33"], port);
    let (first, second) =
        (rest_client(&certificates, &instances[0]), rest_client(&certificates, &instances[1]));
    wait_for("the hello", &agent, || knows(&first, agent.node.uuid));
    reported_mounted(&first, &agent);

    // A long-poll that ends with its wait is an answer: the agent stays where it is.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!agent.log().contains("did not answer"), "{}", agent.log());
    assert!(!knows(&second, agent.node.uuid), "the second instance was called");

    instances[0].kill();
    wait_for("the hello to the second instance", &agent, || knows(&second, agent.node.uuid));
    let log = agent.log();
    assert!(log.contains(&format!("control service at 127.0.0.32:{port} did not answer")), "{log}");
    assert!(log.contains("saying hello again"), "{log}");
    reported_mounted(&second, &agent);
}
