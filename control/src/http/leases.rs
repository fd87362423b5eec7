//! E7–E9: leases.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use flocker_api::client::DATASET_ID_QUERY;
use flocker_api::{DatasetId, validate};

use super::body::read_json;
use super::query;
use super::{SharedApp, blocking, json};
use crate::error::ApiError;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/v1/configuration/leases", get(list).post(acquire))
        .route("/v1/configuration/leases/{dataset_id}", delete(release))
}

/// Every lease, or with `?dataset_id=…` (ours) the one on that dataset, if any.
async fn list(State(app): State<SharedApp>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let dataset = query::dataset_id(raw.as_deref(), DATASET_ID_QUERY)?;
    let leases = blocking(&app, move |s| {
        Ok(match dataset {
            Some(id) => s.lease_of(&id),
            None => s.leases(),
        })
    })
    .await?;
    Ok(json(StatusCode::OK, &leases))
}

/// 201 for a new lease, 200 for a renewal, 409 if another node holds it.
async fn acquire(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = read_json(&headers, body, app.rest_body).await?;
    let request = validate::acquire_lease(&value).map_err(|e| ApiError::Schema(e.0))?;
    let (lease, created) = blocking(&app, move |s| s.acquire_lease(&request)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, &lease))
}

/// The id in the path is read as a UUID, so any case finds the lease.
async fn release(
    State(app): State<SharedApp>,
    Path(dataset_id): Path<String>,
) -> Result<Response, ApiError> {
    let dataset_id: DatasetId =
        dataset_id.parse().map_err(|_| ApiError::BadPathUuid { what: "dataset_id" })?;
    let lease = blocking(&app, move |s| s.release_lease(&dataset_id)).await?;
    Ok(json(StatusCode::OK, &lease))
}
