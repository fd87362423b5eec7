//! Connections that never finish a TLS handshake, or finish it and then idle, cannot keep a
//! client with a certificate from being served (issue 15): handshakes and authenticated
//! connections have budgets of their own, a full budget makes room rather than turning the
//! newcomer away, and one address may hold only so many handshakes.
//!
//! "Served" means a call succeeds within the client's own timeout, which is short here.

#[path = "support/flood.rs"]
mod flood;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flocker_api::{Client, ClientConfig};
use flocker_testkit::RunningControl;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, RootCertStore, StreamOwned};

use self::flood::{HeldFlood, closed_by_peer, connect_from, loopback_sources};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn start_with(extra: &[&str]) -> RunningControl {
    RunningControl::start_with(env!("CARGO_BIN_EXE_flocker-control").as_ref(), extra)
}

/// A client as an isolator makes one, from 127.0.0.1, whose calls fail after 5 s.
fn isolator_client(control: &RunningControl) -> Client {
    let mut config = ClientConfig::from_directory(
        &control.certificates.authority(),
        "alice",
        "127.0.0.1",
        control.process.rest.port(),
    );
    config.timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(5);
    Client::new(&config).expect("client")
}

/// Panics with the error, its causes and the service's log.
fn served<T>(control: &RunningControl, what: &str, call: Result<T, flocker_api::ClientError>) {
    if let Err(error) = call {
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            message += &format!(": {inner}");
            cause = inner.source();
        }
        panic!("{what} was not served: {message}\n{}", control.process.log());
    }
}

#[test]
fn thousands_of_connections_that_never_start_tls_do_not_keep_a_client_from_being_served() {
    let control = start_with(&[]);
    let pooled = isolator_client(&control);
    served(&control, "a call before the flood", pooled.version());
    // 2,500 from 40 addresses: 63 each, under the 64 one address may hold, so it is the
    // budget of 256 handshakes that they fill, ten times over.
    let flood = HeldFlood::start(control.process.rest, 2_500, &loopback_sources(40));
    assert!(flood.open() > 2_000, "only {} connections of the flood opened", flood.open());
    // Past the handshake deadline (5 s): the flood holds its connections throughout.
    for round in 1..=7 {
        let fresh = isolator_client(&control); // a new connection, so a new handshake
        served(&control, &format!("round {round}: a new client's list"), fresh.list_datasets());
        served(&control, &format!("round {round}: a kept-alive call"), pooled.version());
        std::thread::sleep(Duration::from_secs(1));
    }
    // It cannot hold more than the budget, but it kept trying, as an attacker would.
    assert!(flood.renewed() > 2_500, "the flood opened only {} again", flood.renewed());
    let (full, log) = control.process.wait_for_log("in their TLS handshake (--max-handshakes)");
    assert!(full, "the flood never filled the handshake budget:\n{log}");
}

#[test]
fn idle_authenticated_connections_past_the_limit_do_not_keep_a_new_client_from_being_served() {
    let control = start_with(&["--max-connections", "50"]);
    let config = tls_client_config(&control);
    let mut idle: Vec<_> = (0..150).filter_map(|_| idle_connection(&control, &config)).collect();
    served(&control, "a new client", isolator_client(&control).list_datasets());
    assert_eq!(idle.len(), 150, "every idle connection was served in its turn");
    assert!(!still_open(&mut idle[0]), "the least recently active idle connection is closed");
    assert!(still_open(&mut idle[149]), "the most recently active one is still open");
    let (logged, log) = control.process.wait_for_log("closed the least recently active idle one");
    assert!(logged, "{log}");
}

#[test]
fn an_address_with_its_limit_of_handshakes_in_progress_has_its_next_connection_closed_at_once() {
    let control = start_with(&["--max-handshakes-per-address", "8", "--handshake-timeout", "60"]);
    let rest = control.process.rest;
    let mut held: Vec<TcpStream> = (0..8).map(|_| connect_from(LOCALHOST, rest).unwrap()).collect();
    let mut ninth = connect_from(LOCALHOST, rest).unwrap();
    ninth.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    match ninth.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the ninth connection from 127.0.0.1 was not closed: {other:?}"),
    }
    let mut elsewhere = connect_from(loopback_sources(1)[0], rest).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for stream in held.iter_mut().chain([&mut elsewhere]) {
        stream.set_nonblocking(true).unwrap();
        assert!(!closed_by_peer(stream), "a connection within the limits was closed");
    }
    let refused = isolator_client(&control).version();
    assert!(refused.is_err(), "a ninth handshake from 127.0.0.1 was let in: {refused:?}");
    let (logged, log) = control.process.wait_for_log("refusing a connection from 127.0.0.1");
    assert!(logged, "{log}");

    // Once they go, the service sees their handshakes end, and 127.0.0.1 is served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while isolator_client(&control).version().is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    served(&control, "127.0.0.1 after its handshakes ended", isolator_client(&control).version());
}

/// A rustls client presenting `user-alice`.
fn tls_client_config(control: &RunningControl) -> Arc<rustls::ClientConfig> {
    let certificates = &control.certificates;
    let load = flocker_api::certificates::load_certificates;
    let mut roots = RootCertStore::empty();
    for certificate in load(&certificates.cluster_certificate()).unwrap() {
        roots.add(certificate).unwrap();
    }
    let (certificate, key) = certificates.user("alice");
    let key = flocker_api::certificates::load_private_key(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(load(&certificate).unwrap(), key)
        .unwrap();
    Arc::new(config)
}

/// A connection that made one keep-alive request and got its answer, now idle; `None` if the
/// service closed it instead.
fn idle_connection(
    control: &RunningControl,
    config: &Arc<rustls::ClientConfig>,
) -> Option<StreamOwned<ClientConnection, TcpStream>> {
    let name = ServerName::try_from("control-service").unwrap();
    let connection = ClientConnection::new(config.clone(), name).unwrap();
    let socket = TcpStream::connect(control.process.rest).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = StreamOwned::new(connection, socket);
    stream.write_all(b"GET /v1/version HTTP/1.1\r\nHost: control-service\r\n\r\n").ok()?;
    let mut answer = [0u8; 512];
    let read = stream.read(&mut answer).ok()?;
    answer[..read].starts_with(b"HTTP/1.1 200").then_some(stream)
}

/// Whether the service still holds `stream` open: it neither closed it nor says anything
/// within half a second.
fn still_open(stream: &mut StreamOwned<ClientConnection, TcpStream>) -> bool {
    stream.sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    match stream.read(&mut [0u8; 64]) {
        Ok(0) => false,
        Ok(_) => panic!("the service said something nobody asked for"),
        Err(error) => matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}
