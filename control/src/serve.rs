//! Accepting connections: TLS handshake (with a deadline), then HTTP/1.1 with keep-alive, the
//! peer's address and certificate CN attached to every request. Limits keep a slow or greedy
//! client from starving others: a handshake and a request head must arrive in time, and past a
//! number of open connections new ones are closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Who is on the other end of a request's connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub address: SocketAddr,
    /// The subject CN of the client certificate the handshake verified.
    pub common_name: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// For the TLS handshake, and for each request head.
    pub timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    limits: ConnectionLimits,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                log::warn!("cannot accept a connection: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::warn!("refusing {address}: {} connections are open", limits.max_connections);
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            serve_connection(stream, address, acceptor, router, limits).await;
            drop(slot);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    address: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    limits: ConnectionLimits,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(limits.timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            log::info!("TLS handshake with {address} failed: {error}");
            return;
        }
        Err(_) => {
            log::info!("TLS handshake with {address} timed out");
            return;
        }
    };
    let common_name = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(flocker_api::certificates::common_name);
    let peer = Peer { address, common_name };
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        router.clone().oneshot(request.map(Body::new))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service)
        .without_shutdown();
    match connection.await {
        Ok(parts) => close_gently(parts.io.into_inner()).await,
        Err(error) => log::debug!("connection from {address} ended: {error}"),
    }
}

/// Ends a connection so that its last answer arrives. A client still sending a body that was
/// refused (413) would otherwise get a reset, which can destroy the answer on its way: so say
/// we are done writing, then let what the client still sends drain away — a bounded amount, for
/// a bounded time, never looked at — before closing.
async fn close_gently(mut tls: tokio_rustls::server::TlsStream<TcpStream>) {
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
