use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;

use super::*;

/// An endpoint on a free port of 127.0.0.1 whose registry has one counter, at 3.
fn endpoint() -> SocketAddr {
    let mut registry = Registry::default();
    let counter: Counter = Counter::default();
    registry.register("scrapes_seen", "A counter for the test", counter.clone());
    counter.inc_by(3);
    let registry = Arc::new(registry);
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_addr().unwrap();
    serve_in_thread(listener, Arc::new(move || encode(&registry))).unwrap();
    address
}

/// Sends `request` as it is and reads until the server closes the connection.
fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(address: SocketAddr, method: &str, path: &str) -> String {
    exchange(address, format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
}

#[test]
fn get_metrics_answers_the_registry_in_openmetrics_text() {
    let answer = get(endpoint(), "GET", "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let head = answer.to_ascii_lowercase();
    assert!(head.contains(&format!("content-type: {OPENMETRICS_TEXT}")), "{answer}");
    assert!(answer.contains("\r\n\r\n# HELP scrapes_seen A counter for the test.\n"), "{answer}");
    assert!(answer.contains("\nscrapes_seen_total 3\n"), "{answer}");
    assert!(answer.ends_with("# EOF\n"), "{answer}");
}

#[test]
fn any_other_path_is_404_and_any_other_method_405() {
    let address = endpoint();
    for path in ["/", "/metrics/", "/v1/version", "/metricsx"] {
        let answer = get(address, "GET", path);
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{path}: {answer}");
        assert!(!answer.contains("scrapes_seen"), "{answer}");
    }
    let answer = get(address, "POST", "/metrics");
    assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("allow: get\r\n"), "{answer}");
}

#[test]
fn a_request_head_over_8_kib_is_refused() {
    let padding = "a".repeat(2 * MAX_HEAD_BYTES);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: test\r\nX-Padding: {padding}\r\n\r\n");
    let answer = exchange(endpoint(), request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

#[test]
fn a_client_that_sends_nothing_is_closed_after_the_head_timeout() {
    let mut stream = TcpStream::connect(endpoint()).unwrap();
    stream.set_read_timeout(Some(HEAD_TIMEOUT * 3)).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(waited < HEAD_TIMEOUT * 2, "still open after {waited:?}");
    assert!(!String::from_utf8_lossy(&answer).contains("scrapes_seen"));
}
