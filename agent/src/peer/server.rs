//! The receiver's side of a push: an HTTPS server on the transfer port. Every caller is a node
//! of the cluster (checked in the handshake); what it may do is the [`Receiver`]'s to decide.
//!
//! Limits: [`MAXIMUM_CONNECTIONS`] at once (more wait in the accept queue), a handshake within
//! [`HANDSHAKE`], a request head within [`HEAD`], a stream that pauses no longer than
//! [`IDLE`], and no longer than the receiver allows.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flocker_api::{DatasetId, NodeUuid};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use super::tls::{NodeFiles, server_config};
use super::{Holding, Promote, Refusal};

pub const MAXIMUM_CONNECTIONS: usize = 16;
pub const HANDSHAKE: Duration = Duration::from_secs(10);
pub const HEAD: Duration = Duration::from_secs(30);
pub const IDLE: Duration = Duration::from_secs(60);
/// A promotion's body: one origin.
const MAXIMUM_PROMOTE_BYTES: usize = 4096;

/// An answer other than 200, with words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub description: String,
}

impl Answer {
    pub fn new(status: u16, description: impl Into<String>) -> Self {
        Self { status, description: description.into() }
    }
}

/// What the server asks of the agent; each call may block (it runs on a blocking thread).
pub trait Receiver: Send + Sync + 'static {
    /// What this node holds of `dataset`, and whether it would take a push from `peer`.
    fn holding(&self, peer: NodeUuid, dataset: &DatasetId) -> Result<Holding, Answer>;
    /// Whether `peer` may push `dataset` here now: the largest stream it may send.
    fn may_receive(&self, peer: NodeUuid, dataset: &DatasetId) -> Result<u64, Answer>;
    /// Receives a stream from `peer` (after [`Receiver::may_receive`]).
    fn receive(
        &self,
        peer: NodeUuid,
        dataset: &DatasetId,
        stream: &mut dyn Read,
    ) -> Result<Holding, Answer>;
    fn promote(
        &self,
        peer: NodeUuid,
        dataset: &DatasetId,
        promote: Promote,
    ) -> Result<Holding, Answer>;
}

/// Listens on `address` (port 0: any free one) and serves in a thread of its own; the port.
pub fn start(
    address: SocketAddr,
    directory: &Path,
    receiver: Arc<dyn Receiver>,
) -> anyhow::Result<u16> {
    let tls = server_config(&NodeFiles { directory })?;
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| anyhow::anyhow!("cannot listen on {address} for pushes: {e}"))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(MAXIMUM_CONNECTIONS)
        .enable_all()
        .thread_name("transfer-server")
        .build()?;
    std::thread::Builder::new().name("transfer-accept".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, TlsAcceptor::from(tls), receiver).await,
                Err(error) => log::error!("cannot take pushes: {error}"),
            }
        })
    })?;
    Ok(port)
}

async fn serve(listener: tokio::net::TcpListener, tls: TlsAcceptor, receiver: Arc<dyn Receiver>) {
    let slots = Arc::new(Semaphore::new(MAXIMUM_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (stream, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                log::warn!("cannot accept a connection on the transfer port: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, receiver) = (tls.clone(), receiver.clone());
        tokio::spawn(async move {
            connection(stream, address, tls, receiver).await;
            drop(slot);
        });
    }
}

async fn connection(
    stream: TcpStream,
    address: SocketAddr,
    tls: TlsAcceptor,
    receiver: Arc<dyn Receiver>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE, tls.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return log::warn!("TLS handshake with {address} failed: {error}"),
        Err(_) => return log::warn!("TLS handshake with {address} timed out"),
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(flocker_api::certificates::common_name)
        .and_then(|cn| flocker_api::certificates::node_uuid_of_common_name(&cn));
    let Some(peer) = peer else {
        return log::warn!("{address} is not a node of the cluster (its certificate's CN); closed");
    };
    let service = hyper::service::service_fn(move |request| {
        let receiver = receiver.clone();
        async move { Ok::<_, std::convert::Infallible>(route(request, peer, receiver).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD)
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(error) = served {
        log::debug!("connection from node {peer} ({address}) ended: {error}");
    }
}

async fn route(
    request: Request<Incoming>,
    peer: NodeUuid,
    receiver: Arc<dyn Receiver>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let Some((dataset, action)) = parse_path(&path) else {
        return answer(Err(Answer::new(404, format!("no such call: {path}"))));
    };
    let result = match (request.method().clone(), action) {
        (Method::GET, "") => blocking(move || receiver.holding(peer, &dataset)).await,
        (Method::PUT, "") => push(request, peer, dataset, receiver).await,
        (Method::POST, "promote") => match promotion(request).await {
            Ok(promote) => blocking(move || receiver.promote(peer, &dataset, promote)).await,
            Err(refused) => Err(refused),
        },
        (method, _) => Err(Answer::new(405, format!("{method} {path} is not a call"))),
    };
    answer(result)
}

/// `/v1/transfers/<dataset>[/<action>]`.
fn parse_path(path: &str) -> Option<(DatasetId, &str)> {
    let rest = path.strip_prefix("/v1/transfers/")?;
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    Some((id.parse().ok()?, action))
}

async fn blocking(
    call: impl FnOnce() -> Result<Holding, Answer> + Send + 'static,
) -> Result<Holding, Answer> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(Answer::new(500, format!("the receiver failed: {e}"))))
}

async fn promotion(request: Request<Incoming>) -> Result<Promote, Answer> {
    let body = Limited::new(request.into_body(), MAXIMUM_PROMOTE_BYTES);
    let bytes = match tokio::time::timeout(HEAD, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) => return Err(Answer::new(400, format!("cannot read the body: {error}"))),
        Err(_) => return Err(Answer::new(408, "the body did not arrive in time")),
    };
    serde_json::from_slice(&bytes).map_err(|e| Answer::new(400, format!("not a promotion: {e}")))
}

/// Feeds the request's body to the receiver on a blocking thread, a frame at a time.
async fn push(
    request: Request<Incoming>,
    peer: NodeUuid,
    dataset: DatasetId,
    receiver: Arc<dyn Receiver>,
) -> Result<Holding, Answer> {
    let check = receiver.clone();
    let largest = blocking_value(move || check.may_receive(peer, &dataset)).await?;
    let (frames, inbox) = mpsc::channel(8);
    let receiving = tokio::task::spawn_blocking(move || {
        let mut stream = Inbox { inbox, current: Bytes::new(), read: 0, largest };
        receiver.receive(peer, &dataset, &mut stream)
    });
    let mut body = request.into_body();
    // Once the receiver stops reading (it says why), the rest is read and dropped, up to what
    // the stream could have held: the sender then hears the reason, not a reset connection.
    let (mut draining, mut drained) = (false, 0u64);
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no byte for 60 s")),
            Ok(None) => break,
            Ok(Some(Err(error))) => Err(io::Error::other(error)),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Ok(data),
                Err(_) => continue, // trailers: none expected
            },
        };
        match frame {
            Ok(data) if draining => {
                drained += data.len() as u64;
                if drained > largest {
                    break;
                }
            }
            Ok(data) => draining = frames.send(Ok(data)).await.is_err(),
            Err(error) => {
                let _ = frames.send(Err(error)).await;
                break;
            }
        }
    }
    drop(frames);
    receiving.await.unwrap_or_else(|e| Err(Answer::new(500, format!("the receiver failed: {e}"))))
}

async fn blocking_value<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, Answer> + Send + 'static,
) -> Result<T, Answer> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(Answer::new(500, format!("the receiver failed: {e}"))))
}

/// The request's body as a `Read`, for `btrfs receive`'s feeder.
struct Inbox {
    inbox: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    read: u64,
    largest: u64,
}

impl Read for Inbox {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.inbox.blocking_recv() {
                None => return Ok(0),
                Some(frame) => self.current = frame?,
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current.split_to(n));
        self.read += n as u64;
        if self.read > self.largest {
            let largest = self.largest;
            return Err(io::Error::other(format!(
                "the stream is larger than this dataset allows ({largest} bytes)"
            )));
        }
        Ok(n)
    }
}

fn answer(result: Result<Holding, Answer>) -> Response<Full<Bytes>> {
    let (status, body) = match result {
        Ok(holding) => (200, serde_json::to_vec(&holding)),
        Err(Answer { status, description }) => {
            (status, serde_json::to_vec(&Refusal { description }))
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dataset_id_and_a_known_action_make_a_call() {
        let id = DatasetId::random();
        assert_eq!(parse_path(&format!("/v1/transfers/{id}")), Some((id, "")));
        assert_eq!(parse_path(&format!("/v1/transfers/{id}/promote")), Some((id, "promote")));
        assert_eq!(parse_path("/v1/transfers/../etc"), None);
        assert_eq!(parse_path("/v1/other"), None);
    }
}
