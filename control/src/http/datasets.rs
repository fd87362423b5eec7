//! E2–E5: the datasets of the desired configuration.
//!
//! The tag condition is checked before the body is read (Flocker answered 412 before any other
//! check), and again under the lock when the write happens.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use flocker_api::client::{IF_MATCHES_HEADER, NAME_QUERY, TAG_HEADER};
use flocker_api::validate;

use super::body::read_json;
use super::query;
use super::{SharedApp, blocking, json};
use crate::error::{ApiError, json_response};

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/v1/configuration/datasets", get(list).post(create))
        .route("/v1/configuration/datasets/{dataset_id}", post(update).delete(delete))
}

/// Every dataset, or with `?name=…` (ours) those the name names, tombstones included.
async fn list(State(app): State<SharedApp>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let name = query::name(raw.as_deref(), NAME_QUERY)?;
    let (body, tag) = blocking(&app, move |service| {
        Ok(match name {
            Some(name) => {
                let (datasets, tag) = service.datasets_named(&name);
                (serde_json::to_vec(&datasets).map_err(ApiError::internal)?.into(), tag)
            }
            None => service.datasets_body(),
        })
    })
    .await?;
    let mut response = json_response(StatusCode::OK, body);
    let tag = HeaderValue::from_str(&tag.0).map_err(ApiError::internal)?;
    response.headers_mut().insert(TAG_HEADER, tag);
    Ok(response)
}

async fn create(
    State(app): State<SharedApp>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (if_matches, request) = conditional(&app, &headers, body, validate::create_dataset).await?;
    let dataset = blocking(&app, move |s| s.create_dataset(&if_matches, request)).await?;
    Ok(json(StatusCode::CREATED, &dataset))
}

async fn update(
    State(app): State<SharedApp>,
    Path(dataset_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (if_matches, request) = conditional(&app, &headers, body, validate::update_dataset).await?;
    let dataset =
        blocking(&app, move |s| s.move_dataset(&if_matches, &dataset_id, &request)).await?;
    Ok(json(StatusCode::OK, &dataset))
}

/// The tag condition (checked first: Flocker answered 412 before reading anything) and the
/// body, checked against the schema.
async fn conditional<T>(
    app: &SharedApp,
    headers: &HeaderMap,
    body: Body,
    schema: fn(&serde_json::Value) -> Result<T, validate::SchemaErrors>,
) -> Result<(Vec<String>, T), ApiError> {
    let if_matches = conditions(headers);
    app.service.check_tag(&if_matches)?;
    let value = read_json(headers, body, app.rest_body).await?;
    let request = schema(&value).map_err(|e| ApiError::Schema(e.0))?;
    Ok((if_matches, request))
}

/// The body of a DELETE is never read.
async fn delete(
    State(app): State<SharedApp>,
    Path(dataset_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_matches = conditions(&headers);
    app.service.check_tag(&if_matches)?;
    let dataset = blocking(&app, move |s| s.delete_dataset(&if_matches, &dataset_id)).await?;
    Ok(json(StatusCode::OK, &dataset))
}

/// Every `X-If-Configuration-Matches` value; any one that matches passes.
fn conditions(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(IF_MATCHES_HEADER)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect()
}
