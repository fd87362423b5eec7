//! Floods of a control service's port, shared by `tests/flood.rs` and `benches/flood.rs`: plain
//! TCP connections that never send a byte, from many loopback addresses, held open (each one
//! the service closes is opened again, as an attacker would), and TLS handshakes started and
//! abandoned.

#![allow(dead_code)] // each of the test and the bench uses a part

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};

/// How often the flood looks for connections the service closed, and how many it opens again
/// each time: a steady churn, not a busy loop that would take the machine from the service.
const RENEW_EVERY: Duration = Duration::from_millis(100);
const RENEW_AT_MOST: usize = 500;

/// Raises this process's soft limit on open files to `needed`, as far as the hard limit allows.
pub fn raise_open_file_limit(needed: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, needed.min(hard), hard).expect("setrlimit");
    }
}

/// `count` loopback addresses other than 127.0.0.1 (Linux routes all of 127/8 to `lo`), so a
/// flood can come from many addresses while the clients under test use 127.0.0.1.
pub fn loopback_sources(count: u8) -> Vec<IpAddr> {
    (0..count).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, i + 1))).collect()
}

/// A TCP connection to `target` from `source`.
pub fn connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let (IpAddr::V4(source), SocketAddr::V4(target)) = (source, target) else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(source, 0)))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(target))?;
    Ok(TcpStream::from(fd))
}

/// Whether the other end closed `stream` (which must be non-blocking).
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    match stream.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != ErrorKind::WouldBlock,
    }
}

/// Plain TCP connections that never send a byte, held open until dropped.
pub struct HeldFlood {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    renewed: Arc<AtomicU64>,
    keeper: Option<JoinHandle<()>>,
}

impl HeldFlood {
    /// Opens `connections` to `target`, spread over `sources`, and returns once all are open;
    /// a thread then opens again each one the service closes.
    pub fn start(target: SocketAddr, connections: usize, sources: &[IpAddr]) -> Self {
        raise_open_file_limit(connections as u64 + 1024);
        let held: Vec<(IpAddr, Option<TcpStream>)> = (0..connections)
            .map(|i| {
                let source = sources[i % sources.len()];
                (source, open_quietly(source, target))
            })
            .collect();
        let open = Arc::new(AtomicUsize::new(held.iter().filter(|(_, s)| s.is_some()).count()));
        let (stop, renewed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let keeper = std::thread::spawn({
            let (stop, open, renewed) = (stop.clone(), open.clone(), renewed.clone());
            move || keep_open(held, target, &stop, &open, &renewed)
        });
        Self { stop, open, renewed, keeper: Some(keeper) }
    }

    /// Connections open on the flood's side.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections the service closed and the flood opened again.
    pub fn renewed(&self) -> u64 {
        self.renewed.load(Ordering::Relaxed)
    }
}

impl Drop for HeldFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

fn open_quietly(source: IpAddr, target: SocketAddr) -> Option<TcpStream> {
    let stream = connect_from(source, target).ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

fn keep_open(
    mut held: Vec<(IpAddr, Option<TcpStream>)>,
    target: SocketAddr,
    stop: &AtomicBool,
    open: &AtomicUsize,
    renewed: &AtomicU64,
) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(RENEW_EVERY);
        let mut budget = RENEW_AT_MOST;
        for (source, slot) in &mut held {
            if slot.as_mut().is_some_and(closed_by_peer) {
                *slot = None;
            }
            if slot.is_none() && budget > 0 {
                budget -= 1;
                *slot = open_quietly(*source, target);
                if slot.is_some() {
                    renewed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        open.store(held.iter().filter(|(_, s)| s.is_some()).count(), Ordering::Relaxed);
    }
}

/// A thread that opens connections from `sources` in turn, sends a TLS ClientHello on each, and
/// closes it without waiting for the answer: the service does a handshake's work for nothing.
pub struct AbandonedHandshakes {
    stop: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
    worker: Option<JoinHandle<()>>,
}

impl AbandonedHandshakes {
    pub fn start(target: SocketAddr, sources: Vec<IpAddr>) -> Self {
        let (stop, started) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let worker = std::thread::spawn({
            let (stop, started) = (stop.clone(), started.clone());
            move || {
                let hello = client_hello();
                for source in sources.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(mut stream) = connect_from(*source, target) {
                        let _ = stream.write_all(&hello);
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { stop, started, worker: Some(worker) }
    }

    /// Handshakes started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

impl Drop for AbandonedHandshakes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The first flight of a rustls client asking for `control-service`.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("control-service").expect("name");
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("ClientHello");
    hello
}
