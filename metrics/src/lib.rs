//! The Prometheus endpoint that `flocker-control` and `flocker-dataset-agent` serve on the
//! address of their `--metrics-address` (off unless given): `GET /metrics`, answered in the
//! OpenMetrics text format that `prometheus-client` encodes; anything else is 404 (405 for
//! another method on `/metrics`).
//!
//! Plain HTTP, because that is what a Prometheus server scrapes without per-target certificates;
//! the REST and agent ports keep their mutual TLS, and nothing here can change anything. So the
//! daemons bind it to loopback unless told otherwise, and warn when told otherwise.
//!
//! Whoever can reach the port must not be able to cost much: at most [`MAX_CONNECTIONS`]
//! connections at once (more wait in the kernel's accept queue), a request head of at most 8 KiB
//! within [`HEAD_TIMEOUT`], one request per connection, and every connection closed after
//! [`CONNECTION_TIMEOUT`] whatever it is doing.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

pub use prometheus_client;

/// Where the metrics are.
pub const PATH: &str = "/metrics";
/// What they are answered as: the format `prometheus_client::encoding::text` writes.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The start of the log line that gives the bound address (tests read the port from it).
pub const SERVING: &str = "serving metrics on http://";

/// Scrapes served at once; a scraper needs one.
pub const MAX_CONNECTIONS: usize = 8;
/// The time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection stays open, whatever it does: a client that stops reading its
/// answer holds a connection no longer than this.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The smallest read buffer hyper takes: a larger request head is refused.
const MAX_HEAD_BYTES: usize = 8192;

/// Renders the metrics as they are now. Runs on a blocking thread for every scrape, so it may
/// take a lock.
pub type Render = Arc<dyn Fn() -> Result<String, fmt::Error> + Send + Sync>;

/// `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// Listens on `address` and says so in the log (port 0: any free port, which the line names),
/// with a warning if others than this machine may connect.
pub fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    log::info!("{SERVING}{bound}{PATH}");
    if !bound.ip().is_loopback() {
        log::warn!(
            "the metrics on {bound} are served to anyone who can reach that address, without \
             authentication or TLS: bind them to 127.0.0.1 unless a firewall keeps others out"
        );
    }
    Ok(listener)
}

/// Serves on `listener` (from [`bind`]) until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, render: Render) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => return log::error!("cannot serve the metrics: {error}"),
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait rather than spin.
                log::warn!("cannot accept a connection on the metrics port: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection(stream, render)).await;
            drop(slot);
        });
    }
}

/// [`serve`] on a thread and a small runtime of its own, for a program that has none.
pub fn serve_in_thread(listener: std::net::TcpListener, render: Render) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(2)
        .enable_all()
        .thread_name("metrics")
        .build()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(serve(listener, render)))?;
    Ok(())
}

async fn connection(stream: tokio::net::TcpStream, render: Render) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        answer(request, render.clone())
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        log::debug!("a connection to the metrics port ended: {error}");
    }
}

/// The answer to one request; its body is never read.
async fn answer(
    request: Request<Incoming>,
    render: Render,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != PATH {
        return Ok(text(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n"));
    }
    if request.method() != Method::GET {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response.headers_mut().insert(ALLOW, hyper::header::HeaderValue::from_static("GET"));
        return Ok(response);
    }
    let rendered = tokio::task::spawn_blocking(move || render()).await;
    Ok(match rendered {
        Ok(Ok(metrics)) => {
            let mut response = Response::new(Full::new(Bytes::from(metrics)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(OPENMETRICS_TEXT));
            response
        }
        Ok(Err(error)) => {
            log::error!("cannot encode the metrics: {error}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded\n")
        }
        Err(error) => {
            log::error!("rendering the metrics failed: {error}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded\n")
        }
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests;
