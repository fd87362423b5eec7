//! HTTP/1.1 on the plugin's Unix socket, as Docker's daemon calls it. Every answer is 200 with
//! JSON, an error in `Err` (Docker reads nothing else); a call that is not one is 404.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::driver::{Answer, Driver};
use crate::protocol;

/// A request's body: a name, an ID and a few options.
const LARGEST_BODY: usize = 64 << 10;
/// Docker's calls at once; more wait for a slot.
const MOST_AT_ONCE: usize = 64;
const HEAD: Duration = Duration::from_secs(30);
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// Listens on `socket` (made 0600 in a directory made 0700 if missing; a stale socket of an
/// earlier run replaced, anything else there refused) and serves until the process ends.
pub async fn serve(socket: &Path, driver: Arc<Driver>) -> anyhow::Result<()> {
    let listener = listen(socket)?;
    log::info!("serving Docker's volume plugin protocol on {}", socket.display());
    let slots = Arc::new(Semaphore::new(MOST_AT_ONCE));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(slot) = slots.clone().acquire_owned().await else { return Ok(()) };
        let driver = driver.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let driver = driver.clone();
                async move { Ok::<_, std::convert::Infallible>(route(request, driver).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                log::debug!("a connection on the plugin socket ended: {error}");
            }
            drop(slot);
        });
    }
}

fn listen(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(directory) = socket.parent() {
        std::fs::DirBuilder::new().recursive(true).create(directory)?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(socket)?,
        Ok(_) => anyhow::bail!("{} exists and is not a socket; left as it is", socket.display()),
        Err(_) => {}
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn route(request: Request<Incoming>, driver: Arc<Driver>) -> Response<Full<Bytes>> {
    if request.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, json!({"Err": "calls are POSTs"}));
    }
    let call = request.uri().path().to_owned();
    let body = match read(request).await {
        Ok(body) => body,
        Err(problem) => return reply(StatusCode::OK, json!({"Err": problem})),
    };
    let answer: Answer = match call.as_str() {
        "/Plugin.Activate" => Ok(Driver::activate()),
        "/VolumeDriver.Capabilities" => Ok(Driver::capabilities()),
        "/VolumeDriver.List" => blocking(move || driver.list()).await,
        call => {
            let Some(run) = call_of(call) else {
                return reply(StatusCode::NOT_FOUND, json!({"Err": format!("no call {call}")}));
            };
            match serde_json::from_slice::<protocol::Request>(&body) {
                Ok(request) => blocking(move || run(&driver, &request)).await,
                Err(e) => Err(format!("the request is not one of this call: {e}")),
            }
        }
    };
    match answer {
        Ok(value) => reply(StatusCode::OK, value),
        Err(problem) => {
            log::warn!("{call}: {problem}");
            reply(StatusCode::OK, json!({"Err": problem}))
        }
    }
}

type Call = fn(&Driver, &protocol::Request) -> Answer;

fn call_of(path: &str) -> Option<Call> {
    Some(match path {
        "/VolumeDriver.Create" => Driver::create,
        "/VolumeDriver.Remove" => Driver::remove,
        "/VolumeDriver.Mount" => Driver::mount,
        "/VolumeDriver.Unmount" => Driver::unmount,
        "/VolumeDriver.Path" => Driver::path,
        "/VolumeDriver.Get" => Driver::get,
        _ => return None,
    })
}

async fn read(request: Request<Incoming>) -> Result<Bytes, String> {
    let body = Limited::new(request.into_body(), LARGEST_BODY);
    match tokio::time::timeout(HEAD, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) => Err(format!("the request's body cannot be read: {error}")),
        Err(_) => Err("the request's body did not arrive in time".into()),
    }
}

async fn blocking(call: impl FnOnce() -> Answer + Send + 'static) -> Answer {
    tokio::task::spawn_blocking(call).await.unwrap_or_else(|e| Err(format!("the call failed: {e}")))
}

fn reply(status: StatusCode, value: Value) -> Response<Full<Bytes>> {
    let body = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    Response::builder()
        .status(status)
        .header("content-type", CONTENT_TYPE)
        .body(Full::new(body))
        .unwrap_or_default()
}
