//! Several instances of one control service on this machine, as Mesos masters run them: the
//! same certificates and the same ports, each on a loopback address of its own (on Linux all of
//! 127.0.0.0/8 is loopback) and with its own data; and stand-ins for instances that fail in a
//! chosen way, with the real certificate and real TLS.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::{ClusterCertificates, ControlProcess};

/// Starts one real `flocker-control` on each of `ips`, the first on ephemeral ports and the
/// others on the same ones, each with its own `--data-path` under the certificates' root and
/// the options `extra`.
pub fn start_instances(
    binary: &Path,
    certificates: &ClusterCertificates,
    ips: &[&str],
    extra: &[&str],
) -> Vec<ControlProcess> {
    let mut ports = (0, 0);
    let mut instances = Vec::new();
    for ip in ips {
        let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        let data = certificates.root().join(format!("data-{ip}"));
        let addresses = (SocketAddr::new(ip, ports.0), SocketAddr::new(ip, ports.1));
        let instance = ControlProcess::start_on(binary, certificates, &data, addresses, extra)
            .unwrap_or_else(|error| panic!("{error}"));
        ports = (instance.rest.port(), instance.agent.port());
        instances.push(instance);
    }
    instances
}

/// `ip:port` with nothing listening: bound a moment ago and closed, so a connection is refused.
pub fn closed_address(ip: &str, port: u16) -> SocketAddr {
    let address: SocketAddr =
        format!("{ip}:{port}").parse().unwrap_or_else(|e| panic!("{ip}:{port}: {e}"));
    drop(TcpListener::bind(address).unwrap_or_else(|e| panic!("{address} is in use: {e}")));
    address
}

/// What a stand-in instance does with each request.
#[derive(Debug, Clone)]
pub enum StandInBehaviour {
    /// Reads the request and answers this status with this JSON body.
    Answer { status: u16, body: String },
    /// Reads the request and never answers, holding the connection open.
    Silent,
}

/// A stand-in instance of the control service: the real control certificate over real TLS
/// (any client certificate accepted), behaving as told. Runs until the test process ends.
pub struct StandIn {
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    /// Listens on `address` (port 0: any).
    pub fn start(
        certificates: &ClusterCertificates,
        address: SocketAddr,
        behaviour: StandInBehaviour,
    ) -> Self {
        let config = Arc::new(server_config(certificates));
        let listener =
            TcpListener::bind(address).unwrap_or_else(|e| panic!("cannot bind {address}: {e}"));
        let address = listener.local_addr().expect("a bound address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for socket in listener.incoming().flatten() {
                let (config, behaviour, seen) = (config.clone(), behaviour.clone(), seen.clone());
                std::thread::spawn(move || serve(config, socket, &behaviour, &seen));
            }
        });
        Self { address, requests }
    }

    /// The request lines read so far (`GET /v1/version`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn server_config(certificates: &ClusterCertificates) -> ServerConfig {
    let directory = certificates.control_directory();
    let identity = flocker_api::certificates::load_identity(
        &directory.join("control-service.crt"),
        &directory.join("control-service.key"),
    )
    .expect("the control certificate");
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .expect("server config")
}

/// One connection: every request on it, until the client closes it.
fn serve(
    config: Arc<ServerConfig>,
    socket: TcpStream,
    behaviour: &StandInBehaviour,
    seen: &Mutex<Vec<String>>,
) {
    let Ok(connection) = ServerConnection::new(config) else { return };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(120)));
    let mut stream = StreamOwned::new(connection, socket);
    while let Some(request_line) = read_request(&mut stream) {
        if let Ok(mut seen) = seen.lock() {
            seen.push(request_line);
        }
        match behaviour {
            StandInBehaviour::Silent => {
                // Hold the connection, unanswered, until the client gives up and closes it.
                let _ = stream.read(&mut [0; 1]);
                return;
            }
            StandInBehaviour::Answer { status, body } => {
                let answer = format!(
                    "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).and_then(|()| stream.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads one request (head and `content-length` body); its request line, or `None` at the end.
fn read_request(stream: &mut impl Read) -> Option<String> {
    let mut bytes = Vec::new();
    let mut byte = [0; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => bytes.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&bytes).into_owned();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    let request_line = head.lines().next().unwrap_or_default();
    Some(request_line.rsplit_once(' ').map_or(request_line, |(line, _)| line).to_owned())
}
