//! `--metrics-address`: the control service's Prometheus metrics, scraped from the real binary
//! over plain HTTP after known requests on both TLS ports; off unless asked for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{CONFIGURATION_PATH, HELLO_PATH};
use flocker_api::{AcquireLease, Client, CreateDataset, DatasetId, Era, NodeUuid};
use flocker_testkit::metrics::{Scrape, listening_addresses, plain_request};
use flocker_testkit::{RunningControl, tls_handshake};
use serde_json::json;

fn binary() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_flocker-control").as_ref()
}

fn start_with_metrics() -> (RunningControl, SocketAddr) {
    let control = RunningControl::start_with(binary(), &["--metrics-address", "127.0.0.1:0"]);
    let metrics = control.process.metrics_address();
    (control, metrics)
}

const REQUESTS: &str = "flocker_control_requests_total";
const DURATION_COUNT: &str = "flocker_control_request_duration_seconds_count";
const ERRORS: &str = "flocker_control_errors_total";

fn create(client: &Client, primary: NodeUuid) -> DatasetId {
    let request = CreateDataset {
        primary,
        dataset_id: None,
        maximum_size: Some(64 * 1024 * 1024),
        metadata: Default::default(),
    };
    client.create_dataset(&request, None).unwrap().dataset_id
}

#[test]
fn metrics_are_off_unless_asked_for() {
    let control = RunningControl::start(binary());
    let process = &control.process;
    let mut expected = vec![process.rest, process.agent];
    expected.sort();
    assert_eq!(listening_addresses(process.pid()), expected);
    assert!(!process.log().contains(flocker_metrics::SERVING), "{}", process.log());
}

#[test]
fn a_scrape_counts_rest_requests_by_route_template_status_and_error_kind() {
    let (control, metrics) = start_with_metrics();
    let process = &control.process;
    let mut expected = vec![process.rest, process.agent, metrics];
    expected.sort();
    assert_eq!(listening_addresses(process.pid()), expected);

    let primary = NodeUuid::random();
    let created: Vec<DatasetId> = (0..3).map(|_| create(&control.client, primary)).collect();
    let refused = control.send(
        "POST",
        "/v1/configuration/datasets",
        &[("content-type", "application/json")],
        Some(r#"{"primary": "not a node"}"#),
    );
    assert_eq!(refused.status, 400);
    let lease = AcquireLease { dataset_id: created[0], node_uuid: primary, expires: None };
    control.client.acquire_lease(&lease).unwrap();
    // Ids in paths: the route template is counted, never the id.
    let never_made = DatasetId::random();
    let path = format!("/v1/configuration/datasets/{never_made}");
    assert_eq!(control.send("DELETE", &path, &[], None).status, 404);
    let unknown = format!("/v1/nothing/{never_made}");
    assert_eq!(control.send("GET", &unknown, &[], None).status, 404);

    let scrape = Scrape::of(metrics).unwrap();
    let rest_datasets =
        [("api", "rest"), ("method", "POST"), ("route", "/v1/configuration/datasets")];
    let with_status = |status| {
        let mut labels = rest_datasets.to_vec();
        labels.push(("status", status));
        scrape.expect(REQUESTS, &labels)
    };
    assert_eq!(with_status("201"), 3.0);
    assert_eq!(with_status("400"), 1.0);
    assert_eq!(scrape.expect(DURATION_COUNT, &rest_datasets), 4.0);
    let lease_route = [("api", "rest"), ("method", "POST"), ("route", "/v1/configuration/leases")];
    assert_eq!(
        scrape.expect(REQUESTS, &[lease_route.as_slice(), &[("status", "201")]].concat()),
        1.0
    );
    let by_id = [
        ("api", "rest"),
        ("method", "DELETE"),
        ("route", "/v1/configuration/datasets/{dataset_id}"),
        ("status", "404"),
    ];
    assert_eq!(scrape.expect(REQUESTS, &by_id), 1.0);
    let unmatched = [("api", "rest"), ("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(scrape.expect(REQUESTS, &unmatched), 1.0);
    assert!(!scrape.text.contains(&never_made.to_string()), "{}", scrape.text);
    assert!(!scrape.text.contains("/v1/nothing"), "{}", scrape.text);

    assert_eq!(scrape.expect(ERRORS, &[("api", "rest"), ("kind", "schema")]), 1.0);
    assert_eq!(scrape.expect(ERRORS, &[("api", "rest"), ("kind", "dataset_not_found")]), 1.0);
    assert_eq!(scrape.expect(ERRORS, &[("api", "rest"), ("kind", "no_route")]), 1.0);
    let errors: f64 = scrape.samples.iter().filter(|s| s.name == ERRORS).map(|s| s.value).sum();
    assert_eq!(errors, 3.0, "{}", scrape.text);

    // Three creates and a lease, each one append; the refused requests wrote nothing.
    let writes = "flocker_control_store_write_duration_seconds_count";
    assert_eq!(scrape.expect(writes, &[("outcome", "ok")]), 4.0);
    assert_eq!(scrape.value(writes, &[("outcome", "failed")]), None);
    let inf = "flocker_control_store_write_duration_seconds_bucket";
    assert_eq!(scrape.expect(inf, &[("outcome", "ok"), ("le", "+Inf")]), 4.0);
    assert!(
        scrape.expect("flocker_control_store_write_duration_seconds_sum", &[("outcome", "ok")])
            > 0.0
    );

    assert_eq!(scrape.expect("flocker_control_datasets", &[]), 3.0);
    assert_eq!(scrape.expect("flocker_control_leases", &[]), 1.0);
    assert_eq!(scrape.expect("flocker_control_nodes", &[]), 0.0);

    // Scraping is not a request of the API: it counts nothing there.
    let again = Scrape::of(metrics).unwrap();
    assert_eq!(again.expect(DURATION_COUNT, &rest_datasets), 4.0);
}

#[test]
fn a_scrape_shows_agents_polls_waiting_and_times_them() {
    let (control, metrics) = start_with_metrics();
    let node = control.certificates.node();
    let agent =
        control.certificates.client_with(control.process.agent, &node.certificate, &node.key);
    let hello = json!({"era": Era::random()}).to_string();
    assert_eq!(agent.send("POST", HELLO_PATH, &[], Some(hello.as_bytes())).unwrap().status, 200);
    let first = agent.send("GET", CONFIGURATION_PATH, &[], None).unwrap();
    assert_eq!(first.status, 200);
    let etag = first.json().unwrap()["etag"].as_str().unwrap().to_owned();

    // Nothing changes: the poll waits its 3 s out.
    let poll = std::thread::spawn(move || {
        let path = format!("{CONFIGURATION_PATH}?etag={etag}&wait=3");
        agent
            .send_with_timeout("GET", &path, &[], None, Some(Duration::from_secs(30)))
            .unwrap()
            .status
    });
    let waiting = "flocker_control_agent_polls_waiting";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = Scrape::of(metrics).unwrap();
        if scrape.expect(waiting, &[]) == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the poll never showed as waiting:\n{}", scrape.text);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(poll.join().unwrap(), 200);

    let scrape = Scrape::of(metrics).unwrap();
    assert_eq!(scrape.expect(waiting, &[]), 0.0);
    let route = [("api", "agent"), ("method", "GET"), ("route", CONFIGURATION_PATH)];
    assert_eq!(scrape.expect(REQUESTS, &[route.as_slice(), &[("status", "200")]].concat()), 2.0);
    assert_eq!(scrape.expect(DURATION_COUNT, &route), 2.0);
    // The first answered at once, the second after its 3 s.
    let bucket = |le| {
        scrape.expect(
            "flocker_control_request_duration_seconds_bucket",
            &[route.as_slice(), &[("le", le)]].concat(),
        )
    };
    assert_eq!(bucket("2.5"), 1.0);
    assert_eq!(bucket("5.0"), 2.0);
    assert!(scrape.expect("flocker_control_request_duration_seconds_sum", &route) >= 3.0);
    let hello_route =
        [("api", "agent"), ("method", "POST"), ("route", HELLO_PATH), ("status", "200")];
    assert_eq!(scrape.expect(REQUESTS, &hello_route), 1.0);
    assert_eq!(scrape.expect("flocker_control_nodes", &[]), 1.0);
    let rest = scrape.samples.iter().find(|s| s.labels.get("api").is_some_and(|api| api == "rest"));
    assert_eq!(rest, None, "nothing was asked of the REST API");
}

#[test]
fn the_metrics_port_serves_only_get_metrics_and_the_api_ports_keep_their_mutual_tls() {
    let (control, metrics) = start_with_metrics();
    for path in ["/", "/v1/version", "/metrics/extra", "/v1/configuration/datasets"] {
        let answer = plain_request(metrics, "GET", path).unwrap();
        assert_eq!(answer.status, 404, "{path}: {answer:?}");
    }
    assert_eq!(plain_request(metrics, "POST", "/metrics").unwrap().status, 405);

    let cluster = control.certificates.cluster_certificate();
    let rest = control.process.rest;
    assert!(tls_handshake(rest, &cluster, None, "/metrics").is_err());
    assert!(tls_handshake(rest, &cluster, None, "/v1/version").is_err());
    let plain = plain_request(rest, "GET", "/metrics");
    assert!(plain.is_err(), "the REST port answered plain HTTP: {plain:?}");
    let node = control.certificates.node();
    let as_node =
        tls_handshake(rest, &cluster, Some((&node.certificate, &node.key)), "/v1/version");
    assert!(as_node.is_err(), "{as_node:?}");
    let (certificate, key) = control.certificates.user("alice");
    let served = tls_handshake(rest, &cluster, Some((&certificate, &key)), "/v1/version");
    assert_eq!(served.as_deref(), Ok("HTTP/1.1 200 OK"));
    // Over TLS, with a user's certificate, /metrics is no endpoint of the REST API.
    let metrics_over_rest = tls_handshake(rest, &cluster, Some((&certificate, &key)), "/metrics");
    assert_eq!(metrics_over_rest.as_deref(), Ok("HTTP/1.1 404 Not Found"));
    let agent = control.process.agent;
    assert!(tls_handshake(agent, &cluster, Some((&certificate, &key)), "/v1/version").is_err());
}

#[test]
fn metrics_on_an_address_others_can_reach_are_served_with_a_warning() {
    let control = RunningControl::start_with(binary(), &["--metrics-address", "0.0.0.0:0"]);
    let address = control.process.metrics_address();
    assert!(address.ip().is_unspecified(), "{address}");
    let (warned, log) = control.process.wait_for_log("without authentication or TLS");
    assert!(warned, "{log}");
    let local = SocketAddr::new([127, 0, 0, 1].into(), address.port());
    assert!(Scrape::of(local).is_ok());
}

#[test]
fn a_metrics_address_that_cannot_be_bound_stops_the_start_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let certificates = flocker_testkit::ClusterCertificates::new();
    let data = certificates.root().join("data");
    let started = flocker_testkit::ControlProcess::start(
        binary(),
        &certificates,
        &data,
        &["--metrics-address", &address],
    );
    let Err(failure) = started else { panic!("started with {address} taken") };
    assert!(failure.contains("--metrics-address"), "{failure}");
}
