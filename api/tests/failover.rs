//! A client given several instances of one control service, against real `flocker-control`
//! processes sharing one cluster's certificates and ports (each on its own loopback address;
//! one whose ZooKeeper ensemble lost its quorum answers writes with 503), and stand-ins with
//! the real certificate for what no real instance does at will (take a request and never
//! answer it; answer 503 to a `GET /v1/version`): it moves on from an instance that did
//! nothing, never repeats a write that may have been done, and starts each call where the
//! last one was answered.

use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flocker_api::client::TlsLibrary;
use flocker_api::{Client, ClientConfig, ClientError, CreateDataset, NodeUuid, TransportProblem};
use flocker_testkit::{
    ClusterCertificates, ControlProcess, StandIn, StandInBehaviour, ZooKeeperEnsemble,
    closed_address, control_binary, start_instances,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(2);

/// A client of `hosts` on `port`, presenting `user-alice` of `certificates`.
fn client(certificates: &ClusterCertificates, hosts: &str, port: u16) -> Client {
    let (certificate, key) = certificates.user("alice");
    let config = ClientConfig {
        host: hosts.to_owned(),
        port,
        cluster_certificate: certificates.cluster_certificate(),
        certificate,
        key,
        timeout: TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        tls: TlsLibrary::Rustls,
    };
    Client::new(&config).expect("client")
}

fn create_request() -> CreateDataset {
    CreateDataset {
        primary: NodeUuid::random(),
        dataset_id: None,
        maximum_size: None,
        metadata: Default::default(),
    }
}

fn address(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().expect("an address")
}

/// Every `info` line the client logged, from all tests of this file (each uses its own
/// addresses, so a test counts the lines naming its own).
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info && metadata.target().starts_with("flocker_api")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            LOGGED.lock().expect("log lines").push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn logged(needle: &str) -> Vec<String> {
    let _ = log::set_logger(&Capture).map(|()| log::set_max_level(log::LevelFilter::Info));
    LOGGED.lock().expect("log lines").iter().filter(|line| line.contains(needle)).cloned().collect()
}

#[test]
fn a_host_that_refuses_is_passed_over_and_later_calls_start_at_the_one_that_answered() {
    logged(""); // installs the capture
    let certificates = ClusterCertificates::new();
    let live = start_instances(&control_binary(), &certificates, &["127.0.0.3"], &[]);
    let port = live[0].rest.port();
    let dead = closed_address("127.0.0.2", port);
    let client = client(&certificates, "127.0.0.2, 127.0.0.3", port);
    assert_eq!(client.current_address(), dead.to_string(), "it starts at the first");

    client.version().expect("the second instance answers");
    let live = address("127.0.0.3", port).to_string();
    assert_eq!(client.current_address(), live);
    let clone = client.clone();
    assert_eq!(clone.current_address(), live, "clones share the current instance");
    assert_eq!(
        logged(&format!("control service at {dead} did not answer")),
        [format!("control service at {dead} did not answer (connection refused); using {live}")]
    );

    client.list_datasets().expect("a GET");
    clone.create_dataset(&create_request(), None).expect("a POST");
    assert_eq!(logged(&dead.to_string()).len(), 1, "later calls went straight to {live}");
}

#[test]
fn calls_go_on_at_the_second_instance_when_the_first_is_killed() {
    let certificates = ClusterCertificates::new();
    let mut instances =
        start_instances(&control_binary(), &certificates, &["127.0.0.5", "127.0.0.6"], &[]);
    let port = instances[0].rest.port();
    let client = client(&certificates, "127.0.0.5,127.0.0.6", port);
    client.list_datasets().expect("the first instance answers");
    assert_eq!(client.current_address(), format!("127.0.0.5:{port}"));

    instances[0].kill();
    let created = client.create_dataset(&create_request(), None).expect("the second one does");
    assert_eq!(client.current_address(), format!("127.0.0.6:{port}"));
    let (datasets, _) = client.list_datasets().expect("and goes on doing so");
    assert!(datasets.iter().any(|d| d.dataset_id == created.dataset_id), "{datasets:?}");
}

#[test]
fn a_host_that_never_completes_the_handshake_is_passed_over_for_any_method() {
    // The kernel accepts the TCP connection into the backlog of a listener nobody accepts
    // from; TLS never starts, so nothing was sent and even a POST may go elsewhere.
    let certificates = ClusterCertificates::new();
    let live = start_instances(&control_binary(), &certificates, &["127.0.0.8"], &[]);
    let port = live[0].rest.port();
    let _held = TcpListener::bind(address("127.0.0.7", port)).expect("bind");
    let client = client(&certificates, "127.0.0.7,127.0.0.8", port);

    let started = Instant::now();
    client.create_dataset(&create_request(), None).expect("the POST goes to the live instance");
    let took = started.elapsed();
    assert!(took >= CONNECT_TIMEOUT && took < CONNECT_TIMEOUT + TIMEOUT, "{took:?}");
    assert_eq!(client.current_address(), format!("127.0.0.8:{port}"));
}

#[test]
fn a_request_sent_and_never_answered_is_repeated_elsewhere_only_if_it_is_a_get() {
    let certificates = ClusterCertificates::new();
    let live = start_instances(&control_binary(), &certificates, &["127.0.0.10"], &[]);
    let port = live[0].rest.port();
    let silent =
        StandIn::start(&certificates, address("127.0.0.9", port), StandInBehaviour::Silent);

    let reader = client(&certificates, "127.0.0.9,127.0.0.10", port);
    let started = Instant::now();
    let (datasets, _) = reader.list_datasets().expect("the GET is repeated on the live instance");
    let took = started.elapsed();
    assert!(datasets.is_empty());
    assert!(took >= TIMEOUT && took < 2 * CONNECT_TIMEOUT + TIMEOUT, "within the bound: {took:?}");
    assert_eq!(reader.current_address(), format!("127.0.0.10:{port}"));

    let writer = client(&certificates, "127.0.0.9,127.0.0.10", port);
    let error = writer.create_dataset(&create_request(), None).unwrap_err();
    assert_eq!(error.transport_problem(), Some(TransportProblem::TimedOut), "{error}");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.9:{port} (no answer in time;")), "{message}");
    assert!(message.contains("a POST is not repeated"), "{message}");
    assert!(!message.contains("127.0.0.10"), "the live instance was not tried: {message}");
    assert_eq!(writer.current_address(), format!("127.0.0.9:{port}"));
    let (datasets, _) = reader.list_datasets().expect("list");
    assert!(datasets.is_empty(), "nothing was created on the live instance: {datasets:?}");
    assert_eq!(
        silent.requests(),
        ["GET /v1/configuration/datasets", "POST /v1/configuration/datasets"]
    );
}

/// A real instance whose ZooKeeper ensemble has lost its quorum answers a write with 503
/// (nothing changed): the client goes on to the next instance, even with a POST.
#[test]
fn an_instance_answering_503_is_passed_over_whatever_the_method() {
    let certificates = ClusterCertificates::new();
    let mut ensemble = ZooKeeperEnsemble::start(3);
    let store = format!("zk://{}/flocker", ensemble.connect_string());
    let on_zookeeper = ["--store", &store, "--store-timeout", "1"];
    let without_quorum =
        start_instances(&control_binary(), &certificates, &["127.0.0.11"], &on_zookeeper);
    let (port, agent_port) = (without_quorum[0].rest.port(), without_quorum[0].agent.port());
    let ports = (address("127.0.0.12", port), address("127.0.0.12", agent_port));
    let data = certificates.root().join("data-live");
    let _live = ControlProcess::start_on(&control_binary(), &certificates, &data, ports, &[])
        .unwrap_or_else(|error| panic!("{error}"));
    ensemble.kill(0);
    ensemble.kill(1);
    // Until the last server stops serving and the instance has noticed (its answers then say
    // how old its view is), a write may still go out on its session and end unconfirmed
    // (504), which no client repeats.
    let noticed = Instant::now() + Duration::from_secs(30);
    while ensemble.server_mode(2).is_some() {
        assert!(Instant::now() < noticed, "the last ZooKeeper server never stopped serving");
        std::thread::sleep(Duration::from_millis(50));
    }
    let only_that_one = self::client(&certificates, "127.0.0.11", port);
    while only_that_one
        .send("GET", "/v1/version", &[], None)
        .ok()
        .and_then(|answer| answer.header("x-flocker-view-age").map(drop))
        .is_none()
    {
        assert!(Instant::now() < noticed, "the instance never noticed the quorum was lost");
        std::thread::sleep(Duration::from_millis(50));
    }

    let client = client(&certificates, "127.0.0.11,127.0.0.12", port);
    let created = client.create_dataset(&create_request(), None).expect("the POST goes on");
    assert_eq!(client.current_address(), format!("127.0.0.12:{port}"));
    let (datasets, _) = client.list_datasets().expect("list");
    assert_eq!(datasets.len(), 1);
    assert_eq!(datasets[0].dataset_id, created.dataset_id);
    let log = without_quorum[0].log();
    assert!(log.contains("is not available"), "the instance without a quorum: {log}");
    let (datasets, _) = only_that_one.list_datasets().expect("its last view");
    assert!(datasets.is_empty(), "the instance without a quorum made nothing: {datasets:?}");
}

#[test]
fn when_no_instance_takes_the_call_the_error_names_each_and_why() {
    let certificates = ClusterCertificates::new();
    let answer_503 = StandInBehaviour::Answer {
        status: 503,
        body: r#"{"description": "no ZooKeeper quorum"}"#.into(),
    };
    let unavailable = StandIn::start(&certificates, address("127.0.0.13", 0), answer_503);
    let port = unavailable.address.port();
    let dead = closed_address("127.0.0.14", port);
    let because_503 = format!("{} (unavailable (503): no ZooKeeper quorum)", unavailable.address);
    let because_refused = format!("{dead} (connection refused)");

    let refused_last = client(&certificates, "127.0.0.13,127.0.0.14", port).version().unwrap_err();
    let message = refused_last.to_string();
    assert_eq!(
        message,
        format!(
            "GET /v1/version: no control service instance took the call: \
             {because_503}; {because_refused}"
        )
    );
    assert_eq!(refused_last.transport_problem(), Some(TransportProblem::Refused));
    assert_eq!(refused_last.status(), None);
    assert_eq!(refused_last.failed_attempts().len(), 2);

    let client = client(&certificates, "127.0.0.14,127.0.0.13", port);
    let unavailable_last = client.version().unwrap_err();
    let message = unavailable_last.to_string();
    assert!(message.ends_with(&format!("{because_refused}; {because_503}")), "{message}");
    assert_eq!(unavailable_last.status(), Some(503), "the last instance's answer");
    assert!(matches!(unavailable_last, ClientError::Failover { .. }));
    let raw = client.send("GET", "/v1/version", &[], None).expect("an answer");
    assert_eq!(raw.status, 503, "send returns the last instance's answer, whatever it is");
}

#[test]
fn a_server_of_another_cluster_ends_the_call_without_trying_the_others() {
    let ours = ClusterCertificates::new();
    let theirs = ClusterCertificates::new();
    let stranger = start_instances(&control_binary(), &theirs, &["127.0.0.15"], &[]);
    let (rest, agent) = (stranger[0].rest.port(), stranger[0].agent.port());
    let ports = (address("127.0.0.16", rest), address("127.0.0.16", agent));
    let data = ours.root().join("data");
    let _ours = ControlProcess::start_on(&control_binary(), &ours, &data, ports, &[])
        .unwrap_or_else(|error| panic!("{error}"));

    let client = client(&ours, "127.0.0.15,127.0.0.16", rest);
    let error = client.version().unwrap_err();
    assert_eq!(error.transport_problem(), Some(TransportProblem::UntrustedServer));
    let message = error.to_string();
    assert!(message.contains("not signed by our cluster.crt"), "{message}");
    assert!(message.contains("a configuration error; no other host was tried"), "{message}");
    assert!(!message.contains("127.0.0.16"), "{message}");
    assert_eq!(client.current_address(), format!("127.0.0.15:{rest}"));
}
