//! E1, E6, E10, E11: the version and the cluster state the agents report; and, extensions of
//! ours, the problems they report (`/v1/state/problems`) and the pushes under way between nodes
//! (`/v1/state/transfers`), kept apart so that `/v1/state/datasets` stays exactly Flocker's.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use flocker_api::client::DATASET_ID_QUERY;
use flocker_api::types::DATASET_TRANSFERS_PATH;
use flocker_api::{DATASET_PROBLEMS_PATH, Era, NodeByEra, Version};

use super::{SharedApp, blocking, json, query};
use crate::error::{ApiError, json_response};
use crate::service::VERSION;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/v1/version", get(version))
        .route("/v1/state/datasets", get(datasets))
        .route("/v1/state/nodes", get(nodes))
        .route("/v1/state/nodes/by_era/{era}", get(node_by_era))
        .route(DATASET_PROBLEMS_PATH, get(problems))
        .route(DATASET_TRANSFERS_PATH, get(transfers))
}

async fn version() -> Response {
    json(StatusCode::OK, &Version { flocker: VERSION.to_owned() })
}

/// Every dataset's state, or with `?dataset_id=…` (ours) that dataset's.
async fn datasets(
    State(app): State<SharedApp>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    match query::dataset_id(raw.as_deref(), DATASET_ID_QUERY)? {
        Some(id) => {
            let states = blocking(&app, move |s| Ok(s.dataset_state_of(&id))).await?;
            Ok(json(StatusCode::OK, &states))
        }
        None => {
            let body = blocking(&app, |s| Ok(s.dataset_states_body())).await?;
            Ok(json_response(StatusCode::OK, body))
        }
    }
}

async fn problems(State(app): State<SharedApp>) -> Result<Response, ApiError> {
    let problems = blocking(&app, |s| Ok(s.dataset_problems())).await?;
    Ok(json(StatusCode::OK, &problems))
}

async fn transfers(State(app): State<SharedApp>) -> Result<Response, ApiError> {
    let transfers = blocking(&app, |s| Ok(s.dataset_transfers())).await?;
    Ok(json(StatusCode::OK, &transfers))
}

async fn nodes(State(app): State<SharedApp>) -> Result<Response, ApiError> {
    let nodes = blocking(&app, |s| Ok(s.nodes())).await?;
    Ok(json(StatusCode::OK, &nodes))
}

async fn node_by_era(
    State(app): State<SharedApp>,
    Path(era): Path<String>,
) -> Result<Response, ApiError> {
    let era: Era = era.parse().map_err(|_| ApiError::BadPathUuid { what: "era" })?;
    let uuid = blocking(&app, move |s| s.node_by_era(&era)).await?;
    Ok(json(StatusCode::OK, &NodeByEra { uuid }))
}
