//! Whatever a client sends, it gets a status and a JSON description, and neither the store nor
//! the service suffers: oversized bodies, stalled clients, unknown paths, garbage.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flocker_testkit::RunningControl;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Value, json};

fn start_with(extra: &[&str]) -> RunningControl {
    RunningControl::start_with(env!("CARGO_BIN_EXE_flocker-control").as_ref(), extra)
}

fn description(response: &flocker_api::RawResponse) -> String {
    assert_eq!(response.header("content-type"), Some("application/json"), "{response:?}");
    response.json().unwrap()["description"].as_str().unwrap().to_owned()
}

/// A raw TLS connection presenting `user-alice`, for requests the client library won't send.
fn raw_connection(control: &RunningControl) -> StreamOwned<ClientConnection, TcpStream> {
    let certificates = &control.certificates;
    let mut roots = RootCertStore::empty();
    for c in
        flocker_api::certificates::load_certificates(&certificates.cluster_certificate()).unwrap()
    {
        roots.add(c).unwrap();
    }
    let (certificate, key) = certificates.user("alice");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                flocker_api::certificates::load_certificates(&certificate).unwrap(),
                flocker_api::certificates::load_private_key(&key).unwrap(),
            )
            .unwrap();
    let connection =
        ClientConnection::new(Arc::new(config), ServerName::try_from("control-service").unwrap())
            .unwrap();
    let socket = TcpStream::connect(control.process.rest).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    StreamOwned::new(connection, socket)
}

/// Reads until the server closes; what it said, and how long it took.
fn read_until_closed(stream: &mut StreamOwned<ClientConnection, TcpStream>) -> (String, Duration) {
    let start = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), start.elapsed())
}

#[test]
fn a_body_declared_too_large_is_refused_with_413_before_it_is_read() {
    let control = start_with(&[]);
    let mut stream = raw_connection(&control);
    let head = "POST /v1/configuration/datasets HTTP/1.1\r\nHost: control-service\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{";
    stream.write_all(head.as_bytes()).unwrap();
    let (answer, _) = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than"), "{answer}");
    assert_eq!(control.client.list_datasets().unwrap().0, []);
}

#[test]
fn a_body_that_grows_past_the_limit_is_refused_with_413() {
    let control = start_with(&[]);
    let mut stream = raw_connection(&control);
    let head = "POST /v1/configuration/datasets HTTP/1.1\r\nHost: control-service\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, " ".repeat(16 * 1024));
    for _ in 0..16 {
        if stream.write_all(chunk.as_bytes()).is_err() {
            break; // the server stopped reading, as it should
        }
    }
    let (answer, _) = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(control.client.list_datasets().unwrap().0, []);
}

#[test]
fn a_client_that_stalls_in_its_request_head_is_disconnected() {
    let control = start_with(&["--request-timeout", "1"]);
    let mut stream = raw_connection(&control);
    stream.write_all(b"GET /v1/version HTTP/1.1\r\nHost: contr").unwrap();
    let (_, waited) = read_until_closed(&mut stream);
    assert!(waited < Duration::from_secs(15), "still connected after {waited:?}");
    assert!(control.client.version().is_ok(), "the service is still serving others");
}

#[test]
fn a_client_that_stalls_in_its_body_gets_408() {
    let control = start_with(&["--request-timeout", "1"]);
    let mut stream = raw_connection(&control);
    let head = "POST /v1/configuration/datasets HTTP/1.1\r\nHost: control-service\r\nContent-Length: 100\r\n\r\n{\"prim";
    stream.write_all(head.as_bytes()).unwrap();
    let (answer, _) = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(control.client.list_datasets().unwrap().0, []);
}

#[test]
fn unknown_paths_and_methods_answer_json_404_and_405() {
    let control = start_with(&[]);
    for path in ["/v1/configuration/containers", "/v1/nothing", "/"] {
        let response = control.send("GET", path, &[], None);
        assert_eq!(
            (response.status, description(&response)),
            (404, "Not found.".to_owned()),
            "{path}"
        );
    }
    let response = control.send("PUT", "/v1/configuration/datasets", &[], Some("{}"));
    assert_eq!(response.status, 405);
    assert_eq!(description(&response), "Method not allowed.");
}

#[test]
fn a_path_that_should_hold_a_uuid_and_does_not_is_a_400() {
    let control = start_with(&[]);
    for path in ["/v1/configuration/leases/not-a-uuid", "/v1/state/nodes/by_era/garbage"] {
        let method = if path.contains("leases") { "DELETE" } else { "GET" };
        let response = control.send(method, path, &[], None);
        assert_eq!(response.status, 400, "{path}");
        assert!(description(&response).contains("not a UUID"));
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.next() % if depth > 2 { 6 } else { 8 } {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(2)),
            2 => json!((self.next() as i64).wrapping_sub(1 << 62)),
            3 => json!((self.next() % 1000) as f64 / 7.0),
            4 => json!(
                ["primary", "dataset_id", "8d0c4a4e-8f4e-4d7a-9a7c-0e4f2e6b9c11", "", "ü\u{0}"]
                    [(self.next() % 5) as usize]
            ),
            5 => json!(flocker_api::NodeUuid::random().to_string()),
            6 => Value::Array((0..self.next() % 4).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let keys = [
                    "primary",
                    "dataset_id",
                    "maximum_size",
                    "metadata",
                    "deleted",
                    "node_uuid",
                    "expires",
                    "x",
                ];
                Value::Object(
                    (0..self.next() % 5)
                        .map(|_| {
                            (keys[(self.next() % 8) as usize].to_owned(), self.value(depth + 1))
                        })
                        .collect(),
                )
            }
        }
    }
}

#[test]
fn garbage_bodies_get_client_errors_never_a_500_and_the_store_stays_loadable() {
    let control = start_with(&[]);
    let mut garbage = Garbage(0x05ee_df10_c4e2_u64);
    let id = flocker_api::NodeUuid::random();
    let paths = [
        ("POST", "/v1/configuration/datasets".to_owned()),
        ("POST", format!("/v1/configuration/datasets/{id}")),
        ("POST", "/v1/configuration/leases".to_owned()),
    ];
    for round in 0..300 {
        let (method, path) = &paths[round % paths.len()];
        let body = garbage.value(0).to_string();
        let response = control.send(method, path, &[], Some(&body));
        assert!(response.status < 500, "{method} {path} {body} gave {}", response.status);
        if response.status >= 400 {
            description(&response);
        }
    }
    let before = control.client.list_datasets().unwrap().0;
    let mut process = control.process;
    process.terminate();
    let after = flocker_testkit::ControlProcess::start(
        env!("CARGO_BIN_EXE_flocker-control").as_ref(),
        &control.certificates,
        &process.data_path,
        &[],
    )
    .unwrap();
    let (datasets, _) = control.certificates.client(after.rest, "alice").list_datasets().unwrap();
    assert_eq!(datasets, before);
}

#[test]
fn an_idle_connection_is_closed_after_the_request_timeout() {
    let control = start_with(&["--request-timeout", "1"]);
    let mut stream = raw_connection(&control);
    stream.write_all(b"GET /v1/version HTTP/1.1\r\nHost: control-service\r\n\r\n").unwrap();
    let mut answer = [0u8; 512];
    let read = stream.read(&mut answer).unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    let (_, waited) = read_until_closed(&mut stream);
    assert!(waited < Duration::from_secs(15), "an idle connection stayed open for {waited:?}");
}

/// Issue 15: every bound of the service refuses with a 400 and a description that names its
/// flag, and changes nothing: the number of datasets, their metadata in all, an absurd
/// `maximum_size`, and a lease's `expires` (negative, or longer than the bound).
#[test]
fn the_services_bounds_refuse_with_400_and_change_nothing() {
    let control = start_with(&[
        "--max-datasets",
        "2",
        "--max-metadata-bytes",
        "40",
        "--max-lease-seconds",
        "3600",
    ]);
    let node = flocker_api::NodeUuid::random().to_string();
    let create = |body: Value| {
        control.send("POST", "/v1/configuration/datasets", &[], Some(&body.to_string()))
    };
    let refused = |response: flocker_api::RawResponse, flag: &str| {
        assert_eq!(response.status, 400, "{response:?}");
        let description = description(&response);
        assert!(description.contains(flag), "{description}");
    };
    let absurd = json!({"primary": node, "maximum_size": 1u64 << 62});
    refused(create(absurd), "--max-dataset-size");
    refused(
        create(json!({"primary": node, "metadata": {"name": "x".repeat(41)}})),
        "--max-metadata-bytes",
    );
    assert_eq!(create(json!({"primary": node, "metadata": {"name": "a"}})).status, 201);
    let first = control.client.list_datasets().unwrap().0[0].dataset_id.to_string();
    assert_eq!(create(json!({"primary": node})).status, 201);
    refused(create(json!({"primary": node})), "--max-datasets");
    assert_eq!(control.client.list_datasets().unwrap().0.len(), 2, "nothing else was made");

    let lease = |expires: Value| {
        let body = json!({"dataset_id": first, "node_uuid": node, "expires": expires});
        control.send("POST", "/v1/configuration/leases", &[], Some(&body.to_string()))
    };
    refused(lease(json!(-1)), "expires is -1");
    refused(lease(json!(3601)), "--max-lease-seconds");
    assert!(control.client.list_leases().unwrap().is_empty(), "no lease was taken");
    assert_eq!(lease(json!(3600)).status, 201);
    assert_eq!(lease(json!(null)).status, 200, "a lease until released is always fine");
}
