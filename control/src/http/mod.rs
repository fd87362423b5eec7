//! The two HTTP faces of the service: the Flocker v1 REST API (port 4523, `user-*` clients) and
//! the agent API (port 4524, `node-*` clients). One module per resource; handlers only translate
//! between HTTP and [`ControlService`], which they call on tokio's blocking pool.

mod agent;
mod body;
mod datasets;
mod leases;
mod query;
mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{ApiError, json_response};
use crate::metrics::{Api, Metrics, Recorder, record_request};
use crate::service::ControlService;

/// How much a client may send, and how slowly.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Larger bodies get 413 without being read.
    pub max_bytes: usize,
    /// A body that has not fully arrived after this long gets 408.
    pub timeout: Duration,
}

/// What every handler shares.
pub struct App {
    pub service: ControlService,
    pub rest_body: BodyLimits,
    pub agent_body: BodyLimits,
    /// A node that makes no call for this long leaves the cluster state.
    pub node_expiry: Duration,
    /// The longest an agent's configuration poll waits.
    pub longest_poll: Duration,
    pub metrics: Arc<Metrics>,
}

pub type SharedApp = Arc<App>;

/// Present on every answer while the service cannot reach its shared store (ZooKeeper): the
/// answer comes from the configuration as last confirmed, this many seconds ago.
pub const VIEW_AGE_HEADER: &str = "x-flocker-view-age";

/// The v1 REST API, E1–E11; everything else answers 404 (containers included) or 405.
pub fn rest_router(app: SharedApp) -> Router {
    let routes = Router::new()
        .merge(state::routes())
        .merge(datasets::routes())
        .merge(leases::routes())
        .with_state(app.clone());
    let router =
        finish(routes).layer(axum::middleware::map_response_with_state(app.clone(), add_view_age));
    recorded(router, &app, Api::Rest)
}

/// The agent API.
pub fn agent_router(app: SharedApp) -> Router {
    let router = finish(agent::routes().with_state(app.clone()))
        .layer(axum::middleware::map_response_with_state(app.clone(), add_view_age));
    recorded(router, &app, Api::Agent)
}

/// `router`, its requests recorded in the metrics as `api`'s. The outermost layer, so that it
/// sees every answer as it leaves: the fallback's 404s and the 500s of panics too.
fn recorded(router: Router, app: &SharedApp, api: Api) -> Router {
    let recorder = Recorder { metrics: app.metrics.clone(), api };
    router.layer(axum::middleware::from_fn_with_state(recorder, record_request))
}

/// Says how old the view is, while it is not confirmed current.
async fn add_view_age(State(app): State<SharedApp>, mut response: Response) -> Response {
    if let Some(age) = app.service.view_age() {
        let value = HeaderValue::from_str(&format!("{:.1}", age.as_secs_f64()));
        if let Ok(value) = value {
            response.headers_mut().insert(VIEW_AGE_HEADER, value);
        }
    }
    response
}

/// What both APIs share: JSON 404 and 405 answers, and a 500 for a handler that panics.
fn finish(routes: Router) -> Router {
    routes
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(CatchPanicLayer::custom(panic_response))
}

/// A handler that panicked answers 500; the connection and the service carry on.
fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(format!("a handler panicked: {message}")).into_response()
}

/// Runs `work` on the blocking pool: service calls may wait for the lock or an fsync.
async fn blocking<T: Send + 'static>(
    app: &SharedApp,
    work: impl FnOnce(&ControlService) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let app = app.clone();
    match tokio::task::spawn_blocking(move || work(&app.service)).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => Err(ApiError::internal("a service call panicked")),
        Err(error) => Err(ApiError::internal(error)),
    }
}

/// A JSON answer.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(status, body),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

#[cfg(test)]
mod tests;
