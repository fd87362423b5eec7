//! Accepting connections: TLS handshake (with a deadline), then HTTP/1.1 with keep-alive, the
//! peer's address and certificate CN attached to every request.
//!
//! Limits keep a slow, greedy or hostile crowd from starving the clients that matter, and
//! [`ledger`] decides them:
//! - A connection in its TLS handshake holds one of `max_handshakes` slots for at most
//!   `handshake_timeout`, and one address may hold at most `max_handshakes_per_address` of them
//!   (past that, its new connections are closed at once). When every slot is taken, the oldest
//!   handshake of the address holding the most is closed to make room for the newcomer.
//! - Once its certificate is verified, it holds one of `max_connections` slots instead. When
//!   they are all taken, the least recently active idle keep-alive connection is closed to make
//!   room; only if every one is in the middle of a request is the newcomer closed.
//! - A request head and body must arrive within `request_timeout`, and an idle keep-alive
//!   connection is closed after it too: hyper starts its header read timer whenever a
//!   connection waits for a request head, the first or the next.
//! - A connection is accepted only while the port holds fewer than `2 × max_handshakes +
//!   max_connections` (the slots, and closings under way); past that, new ones wait in the
//!   kernel's accept queue, which is deep ([`BACKLOG`]) so that a burst does not get SYNs
//!   dropped.
//!
//! A flood would otherwise flood the log as well: every line it could repeat is written at
//! most once a second, saying how many like it were left out.

mod ledger;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use crate::throttle::Throttled;

use self::ledger::{Arrival, Authentication, Budget, ConnectionId, Evicted, Ledger};

/// Who is on the other end of a request's connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub address: SocketAddr,
    /// The subject CN of the client certificate the handshake verified.
    pub common_name: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// For each request head and body, and for an idle keep-alive connection.
    pub request_timeout: Duration,
    /// For the TLS handshake.
    pub handshake_timeout: Duration,
    /// Connections in their TLS handshake, per port.
    pub max_handshakes: usize,
    /// Connections in their TLS handshake from one IP address, per port.
    pub max_handshakes_per_address: usize,
    /// Authenticated connections, per port.
    pub max_connections: usize,
}

/// Connections the kernel completes before they are accepted. Deeper than the usual 128, so that
/// a burst — a flood being accepted and closed — does not get clients' SYNs dropped, each drop
/// costing a client a second or more; Linux caps it at `net.core.somaxconn` (4096 by default).
const BACKLOG: u32 = 4096;

/// A listener on `address`, with a deep accept queue.
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    limits: ConnectionLimits,
) {
    let acceptor = TlsAcceptor::from(tls);
    let port = Arc::new(Port::new(limits));
    loop {
        let descriptor = port.descriptor().await;
        let (stream, address) = accept(&listener, &port).await;
        // A refused connection is dropped here, unread: closing it costs nothing past accept.
        let Some((slot, close)) = port.arrive(address, descriptor) else { continue };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(serve_connection(stream, address, slot, close, acceptor, router));
    }
}

async fn accept(listener: &TcpListener, port: &Port) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                port.lines.accept_failed.log(|| format!("cannot accept a connection: {error}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection, from its handshake to its close. `close` fires when the ledger gave its
/// slot to another.
async fn serve_connection(
    stream: TcpStream,
    address: SocketAddr,
    slot: Slot,
    mut close: oneshot::Receiver<()>,
    acceptor: TlsAcceptor,
    router: Router,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = handshake(stream, address, &acceptor, &slot.port, &mut close).await else {
        return;
    };
    if !slot.port.authenticated(slot.id, address) {
        return;
    }
    let common_name = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(flocker_api::certificates::common_name);
    serve_http(tls, Peer { address, common_name }, router, &slot, close).await;
}

/// The TLS handshake, or `None` if it failed, took too long or lost its slot to another.
async fn handshake(
    stream: TcpStream,
    address: SocketAddr,
    acceptor: &TlsAcceptor,
    port: &Port,
    close: &mut oneshot::Receiver<()>,
) -> Option<TlsStream<TcpStream>> {
    let deadline = port.limits.handshake_timeout;
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(deadline, acceptor.accept(stream)) => outcome,
        _ = close => return None, // evicted, and logged, by `Port::arrive`
    };
    match outcome {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            let line = || format!("TLS handshake with {address} failed: {error}");
            port.lines.handshake_failed.log(line);
            None
        }
        Err(_) => {
            let seconds = deadline.as_secs_f64();
            let line = || {
                format!(
                    "TLS handshake with {address} timed out after {seconds} s (--handshake-timeout)"
                )
            };
            port.lines.handshake_timed_out.log(line);
            None
        }
    }
}

/// HTTP/1.1 with keep-alive until the client leaves, a timeout, or `close` fires; then a
/// graceful shutdown, which closes an idle connection at once and a busy one after its answer.
async fn serve_http(
    tls: TlsStream<TcpStream>,
    peer: Peer,
    router: Router,
    slot: &Slot,
    close: oneshot::Receiver<()>,
) {
    let port = slot.port.clone();
    let id = slot.id;
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let busy = Busy::start(port.clone(), id);
        request.extensions_mut().insert(peer.clone());
        let answer = router.clone().oneshot(request.map(Body::new));
        // Boxed: `poll_without_shutdown` below wants the future `Unpin`.
        Box::pin(async move {
            let response = answer.await?;
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
        })
    });
    let mut connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(slot.port.limits.request_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service);
    let mut close = Some(close);
    let ended = std::future::poll_fn(|cx| {
        if let Some(signal) = close.as_mut()
            && Pin::new(signal).poll(cx).is_ready()
        {
            close = None;
            Pin::new(&mut connection).graceful_shutdown();
        }
        connection.poll_without_shutdown(cx)
    })
    .await;
    match ended {
        Ok(()) => close_gently(connection.into_parts().io.into_inner()).await,
        Err(error) => log::debug!("connection from {} ended: {error}", slot.address),
    }
}

/// Ends a connection so that its last answer arrives. A client still sending a body that was
/// refused (413) would otherwise get a reset, which can destroy the answer on its way: so say
/// we are done writing, then let what the client still sends drain away — a bounded amount, for
/// a bounded time, never looked at — before closing.
async fn close_gently(mut tls: TlsStream<TcpStream>) {
    const AT_MOST: usize = 1024 * 1024;
    let _ = tls.shutdown().await;
    let mut discard = vec![0u8; 16 * 1024];
    let drain = async {
        let mut drained = 0;
        while drained < AT_MOST {
            match tls.read(&mut discard).await {
                Ok(0) | Err(_) => break,
                Ok(read) => drained += read,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// One port's slots and log lines, shared by its accept loop and its connections.
struct Port {
    limits: ConnectionLimits,
    ledger: Mutex<Ledger<Closer>>,
    /// One per connection whose task still holds its file descriptor: in the ledger, or out
    /// of it (evicted, ended) but not yet closed. A connection is accepted only with one, so
    /// when the runtime falls behind — a flood of handshakes, each costing CPU — connections
    /// wait in the kernel's queue rather than here as tasks that each hold a descriptor: left
    /// to grow, those would run the process out of descriptors and keep every task waiting.
    descriptors: Arc<Semaphore>,
    lines: Lines,
}

/// Tells a connection's task that its slot went to another.
type Closer = oneshot::Sender<()>;

impl Port {
    fn new(limits: ConnectionLimits) -> Self {
        let budget = Budget {
            max_handshakes: limits.max_handshakes,
            max_handshakes_per_address: limits.max_handshakes_per_address,
            max_connections: limits.max_connections,
        };
        // Room for every slot, and for as many connections again as there are handshake slots
        // on their way out.
        let descriptors = 2 * limits.max_handshakes + limits.max_connections;
        Self {
            limits,
            ledger: Mutex::new(Ledger::new(budget)),
            descriptors: Arc::new(Semaphore::new(descriptors)),
            lines: Lines::default(),
        }
    }

    /// Waits until a connection may be accepted.
    async fn descriptor(&self) -> OwnedSemaphorePermit {
        let descriptors = self.descriptors.clone();
        descriptors.acquire_owned().await.expect("the semaphore is never closed")
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger<Closer>> {
        // The ledger's methods never panic midway; a poisoned lock holds a whole ledger.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handshake slot for a connection from `address`, and what tells it to close; `None`
    /// if it is refused.
    fn arrive(
        self: &Arc<Self>,
        address: SocketAddr,
        descriptor: OwnedSemaphorePermit,
    ) -> Option<(Slot, oneshot::Receiver<()>)> {
        let (closer, close) = oneshot::channel();
        let arrival = self.ledger().arrive(address.ip(), Instant::now(), closer);
        match arrival {
            Arrival::Refused { in_progress } => {
                self.lines.refused.log(|| {
                    format!(
                        "refusing a connection from {address}: {in_progress} connections from \
                         {} are in their TLS handshake already (--max-handshakes-per-address)",
                        address.ip()
                    )
                });
                None
            }
            Arrival::Admitted { id, evicted } => {
                if let Some(Evicted { address: from, handle }) = evicted {
                    let _ = handle.send(());
                    self.lines.handshake_evicted.log(|| {
                        format!(
                            "{} connections are in their TLS handshake (--max-handshakes): closed \
                             the oldest from {from}, the address with the most, to make room for \
                             {address}",
                            self.limits.max_handshakes
                        )
                    });
                }
                Some((Slot { port: self.clone(), id, address, _descriptor: descriptor }, close))
            }
        }
    }

    /// Moves `id` to an authenticated slot; `false` if it must close instead.
    fn authenticated(&self, id: ConnectionId, address: SocketAddr) -> bool {
        let authentication = self.ledger().authenticated(id, Instant::now());
        let max = self.limits.max_connections;
        match authentication {
            Authentication::Admitted { evicted: None } => true,
            Authentication::Admitted { evicted: Some(Evicted { address: from, handle }) } => {
                let _ = handle.send(());
                self.lines.idle_evicted.log(|| {
                    format!(
                        "{max} connections are open (--max-connections): closed the least \
                         recently active idle one, from {from}, to serve {address}"
                    )
                });
                true
            }
            Authentication::Full => {
                self.lines.full.log(|| {
                    format!(
                        "closing {address} after its handshake: all {max} connections are in the \
                         middle of a request (--max-connections)"
                    )
                });
                false
            }
            Authentication::Gone => false,
        }
    }
}

/// A connection's place in the ledger, given up when its task ends, however it ends.
struct Slot {
    port: Arc<Port>,
    id: ConnectionId,
    address: SocketAddr,
    _descriptor: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.port.ledger().closed(self.id);
    }
}

/// A request in flight: its connection is not idle, and so not closed to make room, until
/// this is dropped — with the answer's body, once hyper has taken all of it.
struct Busy {
    port: Arc<Port>,
    id: ConnectionId,
}

impl Busy {
    fn start(port: Arc<Port>, id: ConnectionId) -> Self {
        port.ledger().request_started(id);
        Self { port, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.port.ledger().request_finished(self.id, Instant::now());
    }
}

/// An answer's body carrying the [`Busy`] of its request.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The port's log lines that a flood could repeat, each throttled on its own.
struct Lines {
    accept_failed: Throttled,
    refused: Throttled,
    handshake_evicted: Throttled,
    handshake_failed: Throttled,
    handshake_timed_out: Throttled,
    idle_evicted: Throttled,
    full: Throttled,
}

impl Default for Lines {
    fn default() -> Self {
        use log::Level::{Info, Warn};
        Self {
            accept_failed: Throttled::new(Warn),
            refused: Throttled::new(Warn),
            handshake_evicted: Throttled::new(Warn),
            handshake_failed: Throttled::new(Info),
            handshake_timed_out: Throttled::new(Info),
            idle_evicted: Throttled::new(Warn),
            full: Throttled::new(Warn),
        }
    }
}
