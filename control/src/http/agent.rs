//! The agent API (port 4524): hello, the configuration long-poll, state reports, block-device
//! records. The node is always the one its certificate names. See `control/AGENT_API.md`.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use flocker_api::NodeUuid;
use flocker_api::agent_protocol::{
    BLOCKDEVICE_OWNERSHIP_PATH, BlockDeviceOwnership, CONFIGURATION_PATH, HELLO_PATH, Hello,
    ReportedProblem, STATE_PATH, StateReport, Welcome,
};
use flocker_api::certificates::node_uuid_of_common_name;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::body::read_json;
use super::{SharedApp, blocking, json};
use crate::error::ApiError;
use crate::serve::Peer;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route(HELLO_PATH, post(hello))
        .route(CONFIGURATION_PATH, get(configuration))
        .route(STATE_PATH, put(report))
        .route(BLOCKDEVICE_OWNERSHIP_PATH, post(record_blockdevice))
}

async fn hello(State(app): State<SharedApp>, call: FromNode<Hello>) -> Result<Response, ApiError> {
    let FromNode { node, peer, body: hello } = call;
    if hello.transfer_port == Some(0) {
        return Err(ApiError::Schema(vec!["transfer_port: 0 is not a port".to_owned()]));
    }
    let host = peer.address.ip().to_canonical().to_string();
    blocking(&app, move |s| {
        s.hello(node, hello.era, host, hello.transfer_port);
        Ok(())
    })
    .await?;
    let welcome = Welcome {
        node_uuid: node,
        node_expiry_seconds: app.node_expiry.as_secs_f64(),
        longest_poll_seconds: app.longest_poll.as_secs_f64(),
    };
    Ok(json(StatusCode::OK, &welcome))
}

#[derive(Debug, Deserialize)]
struct PollQuery {
    /// The etag the agent has; the call waits while it is still current.
    etag: Option<String>,
    /// Seconds to wait for a change (capped by the service).
    wait: Option<f64>,
}

/// Answers at once if the node's configuration differs from `etag`, else as soon as it
/// changes, else after `wait` seconds with the same configuration. It changes with the stored
/// configuration, and with the nodes' hellos, reports and expiry (the pushes between nodes):
/// the poll looks again after either changes, and answers only if this node's view did.
async fn configuration(
    State(app): State<SharedApp>,
    Extension(peer): Extension<Peer>,
    Query(query): Query<PollQuery>,
) -> Result<Response, ApiError> {
    let node = node_of(&peer)?;
    blocking(&app, move |s| s.touch(&node)).await?;
    let wait = Duration::try_from_secs_f64(query.wait.unwrap_or(0.0))
        .unwrap_or_default()
        .min(app.longest_poll);
    let deadline = tokio::time::Instant::now() + wait;
    let (mut changes, mut views) = (app.service.subscribe(), app.service.subscribe_views());
    let _waiting = app.metrics.poll_waiting();
    let view = loop {
        changes.borrow_and_update();
        views.borrow_and_update();
        let view = blocking(&app, move |s| Ok(s.agent_configuration(&node))).await?;
        if query.etag.as_deref() != Some(view.etag.as_str()) {
            break view;
        }
        let changed = async {
            tokio::select! {
                changed = changes.changed() => changed,
                changed = views.changed() => changed,
            }
        };
        match tokio::time::timeout_at(deadline, changed).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => break view,
        }
    };
    // The poll kept the node alive while it waited.
    let _ = blocking(&app, move |s| s.touch(&node)).await;
    Ok(json(StatusCode::OK, &view))
}

/// Replaces the node's report; 409 if the agent must say hello (again) first.
async fn report(
    State(app): State<SharedApp>,
    call: FromNode<StateReport>,
) -> Result<Response, ApiError> {
    let FromNode { node, body: report, .. } = call;
    check_report(&report).map_err(|problem| ApiError::Schema(vec![problem]))?;
    blocking(&app, move |s| s.report(&node, report)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What makes a whole report untrustworthy: a relative path, or problems or transfers that
/// break the rules (one per dataset; `ReportedProblem::check`: short, no control characters).
/// A problem too long is refused rather than cut: people read it as the agent's own words,
/// which a cut would change without anyone knowing, and our agent fits its words to the rules
/// before sending (`ReportedProblem::new`), so only a broken or hostile client meets the 400.
fn check_report(report: &StateReport) -> Result<(), String> {
    let relative =
        report.datasets.iter().find(|d| d.path.as_ref().is_some_and(|p| !p.starts_with('/')));
    if let Some(bad) = relative {
        return Err(format!("dataset {}: path is not absolute", bad.dataset_id));
    }
    let mut seen = BTreeSet::new();
    for problem in &report.problems {
        problem.check()?;
        if !seen.insert(problem.dataset_id) {
            return Err(format!("dataset {}: more than one problem", problem.dataset_id));
        }
    }
    let mut seen = BTreeSet::new();
    for transfer in &report.transfers {
        let id = transfer.dataset_id;
        if let Some(problem) = &transfer.problem {
            let problem = ReportedProblem { dataset_id: id, problem: problem.clone() };
            problem.check().map_err(|why| format!("transfer {why}"))?;
        }
        if !seen.insert(id) {
            return Err(format!("dataset {id}: more than one transfer"));
        }
    }
    Ok(())
}

/// Records the block device an agent made for a dataset; 409 if another was recorded.
async fn record_blockdevice(
    State(app): State<SharedApp>,
    call: FromNode<BlockDeviceOwnership>,
) -> Result<Response, ApiError> {
    let FromNode { node, body: record, .. } = call;
    let answer = record.clone();
    blocking(&app, move |s| {
        s.touch(&node)?;
        s.record_blockdevice(&node, record.dataset_id, &record.blockdevice_id)
    })
    .await?;
    Ok(json(StatusCode::OK, &answer))
}

/// A call of the agent API: the node its certificate names, and its JSON body, decoded
/// strictly enough to trust.
struct FromNode<T> {
    node: NodeUuid,
    peer: Peer,
    body: T,
}

impl<T: DeserializeOwned> FromRequest<SharedApp> for FromNode<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &SharedApp) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let peer = parts.extensions.get::<Peer>().cloned().ok_or(ApiError::NotANodeCertificate)?;
        let node = node_of(&peer)?;
        let value = read_json(&parts.headers, body, app.agent_body).await?;
        let body =
            serde_json::from_value(value).map_err(|e| ApiError::Schema(vec![e.to_string()]))?;
        Ok(Self { node, peer, body })
    }
}

/// The node a `node-<uuid>` certificate names.
fn node_of(peer: &Peer) -> Result<NodeUuid, ApiError> {
    peer.common_name
        .as_deref()
        .and_then(node_uuid_of_common_name)
        .ok_or(ApiError::NotANodeCertificate)
}
