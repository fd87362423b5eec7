//! `ApiError`: every way a request can fail, each with the status and `description` text of
//! the Flocker v1 API. Handlers and the model return it; it renders itself as
//! `{"description": …}` with `content-type: application/json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flocker_api::ErrorBody;

/// The upstream text for an undecodable body, embedded newline included.
pub const UNDECODABLE: &str =
    "The request body could not be decoded according to the value of the\nContent-Type header.";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 412: `X-If-Configuration-Matches` named another configuration.
    #[error("Tag doesn't match. Required: {required}, current: {current}")]
    TagMismatch { required: String, current: String },
    /// 400: the body is not JSON.
    #[error("{UNDECODABLE}")]
    Undecodable,
    /// 400: the body is JSON that breaks the schema.
    #[error("The provided JSON doesn't match the required schema.")]
    Schema(Vec<String>),
    /// 400: a bound of this service (see `limits`): the reason names it and its flag.
    #[error("{reason}")]
    OverLimit { reason: String },
    /// 400: a query string our lookups do not take (Flocker ignored every query).
    #[error("The query is not one this endpoint takes: {problem}")]
    BadQuery { problem: String },
    /// 400: a path segment that must be a UUID is not one (Flocker answered 500 here).
    #[error("The {what} in the path is not a UUID.")]
    BadPathUuid { what: &'static str },
    /// 404
    #[error("Dataset not found.")]
    DatasetNotFound,
    /// 405: moving a tombstone.
    #[error("The dataset has been deleted.")]
    DatasetDeleted,
    /// 409
    #[error("The provided dataset_id is already in use.")]
    DatasetIdInUse,
    /// 409: another node holds the lease.
    #[error("Lease already held.")]
    LeaseHeld,
    /// 404
    #[error("Lease not found.")]
    LeaseNotFound,
    /// 404
    #[error("No node found with given era.")]
    NoNodeForEra,
    /// 409 (agent API): the dataset already has another block device.
    #[error("The dataset already has a block device: {existing}.")]
    AlreadyOwned { existing: String },
    /// 409 (agent API): a node that has not said hello, or whose record expired.
    #[error("Unknown node: say hello first.")]
    UnknownNode,
    /// 403 (agent API): the client certificate's CN is `node-` and then not a UUID.
    #[error("The client certificate's CN is not node-<uuid>.")]
    NotANodeCertificate,
    /// 413: the body is larger than the service reads.
    #[error("The request body is larger than {limit} bytes.")]
    TooLarge { limit: usize },
    /// 408: the client stopped sending its body.
    #[error("The request body did not arrive in time.")]
    BodyTimeout,
    /// 404: no such endpoint.
    #[error("Not found.")]
    NoRoute,
    /// 405: the endpoint exists, not with this method.
    #[error("Method not allowed.")]
    MethodNotAllowed,
    /// 500: the configuration could not be stored; nothing was changed.
    #[error(
        "The configuration could not be saved; nothing was changed. See the control service's log."
    )]
    StoreFailed,
    /// 507: the configuration could not be saved for lack of space (ENOSPC, EDQUOT) under the
    /// data path; nothing was changed, and writes succeed again once space is freed. (Other
    /// store failures stay 500: they are faults to look into, not a condition to wait out.)
    #[error(
        "There is no space left to save the configuration; nothing was changed. Try again once \
         space is freed on the control service's node."
    )]
    InsufficientStorage,
    /// 503: a shared store (ZooKeeper) cannot be reached, its quorum lost: nothing was
    /// changed, and another control service may be able to make the change. Reads still answer,
    /// from the last view (see `X-Flocker-View-Age`).
    #[error(
        "The configuration store is not available ({reason}); nothing was changed. Try again \
         shortly, or through another control service."
    )]
    StoreUnavailable { reason: String },
    /// 504: a shared store took the change and did not confirm it: it may or may not be made.
    #[error(
        "The configuration store did not confirm the change ({reason}); it may or may not have \
         been made. Read the configuration before trying again."
    )]
    StoreUnconfirmed { reason: String },
    /// 503: other control services kept changing the configuration first; nothing was changed.
    #[error(
        "The configuration kept changing while this change was being made; nothing was changed. \
         Try again."
    )]
    StoreBusy,
    /// 500: a bug; the cause is logged under `incident`.
    #[error("Internal error (incident {incident}); see the control service's log.")]
    Internal { incident: String },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            TagMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            Undecodable | Schema(_) | OverLimit { .. } | BadQuery { .. } | BadPathUuid { .. } => {
                StatusCode::BAD_REQUEST
            }
            DatasetNotFound | LeaseNotFound | NoNodeForEra | NoRoute => StatusCode::NOT_FOUND,
            DatasetDeleted | MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            DatasetIdInUse | LeaseHeld | AlreadyOwned { .. } | UnknownNode => StatusCode::CONFLICT,
            NotANodeCertificate => StatusCode::FORBIDDEN,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            StoreFailed | Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            StoreUnavailable { .. } | StoreBusy => StatusCode::SERVICE_UNAVAILABLE,
            StoreUnconfirmed { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short, stable name of the variant, for the metrics' `errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        use ApiError::*;
        match self {
            TagMismatch { .. } => "tag_mismatch",
            Undecodable => "undecodable",
            Schema(_) => "schema",
            OverLimit { .. } => "over_limit",
            BadQuery { .. } => "bad_query",
            BadPathUuid { .. } => "bad_path_uuid",
            DatasetNotFound => "dataset_not_found",
            DatasetDeleted => "dataset_deleted",
            DatasetIdInUse => "dataset_id_in_use",
            LeaseHeld => "lease_held",
            LeaseNotFound => "lease_not_found",
            NoNodeForEra => "no_node_for_era",
            AlreadyOwned { .. } => "already_owned",
            UnknownNode => "unknown_node",
            NotANodeCertificate => "not_a_node_certificate",
            TooLarge { .. } => "too_large",
            BodyTimeout => "body_timeout",
            NoRoute => "no_route",
            MethodNotAllowed => "method_not_allowed",
            StoreFailed => "store_failed",
            InsufficientStorage => "insufficient_storage",
            StoreUnavailable { .. } => "store_unavailable",
            StoreUnconfirmed { .. } => "store_unconfirmed",
            StoreBusy => "store_busy",
            Internal { .. } => "internal",
        }
    }

    /// A 500 for a bug: logs `cause` with a fresh incident id and answers with only the id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let incident = uuid::Uuid::new_v4().simple().to_string();
        log::error!("internal error, incident {incident}: {cause}");
        Self::Internal { incident }
    }

    pub fn body(&self) -> ErrorBody {
        let errors = match self {
            Self::Schema(errors) => Some(errors.clone()),
            _ => None,
        };
        ErrorBody { description: self.to_string(), errors }
    }
}

/// Carried by the response of every error answered, so that the metrics count it by kind
/// ([`ApiError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredError(pub &'static str);

/// A JSON response with the right content type.
pub fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = json_response(self.status(), body);
        response.extensions_mut().insert(AnsweredError(self.kind()));
        if matches!(self, Self::TooLarge { .. } | Self::BodyTimeout) {
            // The rest of the body was never read: the connection cannot carry another request.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
