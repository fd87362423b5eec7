//! Reading a request body as JSON, within the limits: a declared length over the limit is
//! refused before a byte is read, a body that grows past it is cut off, a stalled one times out.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::BodyLimits;
use crate::error::ApiError;

pub async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<Value, ApiError> {
    let too_large = ApiError::TooLarge { limit: limits.max_bytes };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_bytes as u64) {
        return Err(too_large);
    }
    let reading = Limited::new(body, limits.max_bytes).collect();
    let bytes = match tokio::time::timeout(limits.timeout, reading).await {
        Err(_) => return Err(ApiError::BodyTimeout),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large);
        }
        Ok(Err(_)) => return Err(ApiError::Undecodable),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    serde_json::from_slice(&bytes).map_err(|_| ApiError::Undecodable)
}
