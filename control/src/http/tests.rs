use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

async fn call(router: &Router, path: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::builder().uri(path).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn panics() -> &'static str {
    panic!("a bug")
}

#[tokio::test]
async fn a_handler_that_panics_answers_500_and_the_next_request_is_served() {
    let router = finish(
        Router::new().route("/panics", get(panics)).route("/works", get(|| async { "fine" })),
    );
    let (status, body) = call(&router, "/panics").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["description"].as_str().unwrap().starts_with("Internal error (incident "));
    let request = Request::builder().uri("/works").body(Body::empty()).unwrap();
    assert_eq!(router.clone().oneshot(request).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_answer_json() {
    let router = finish(Router::new().route("/works", get(|| async { "fine" })));
    assert_eq!(
        call(&router, "/nothing").await,
        (StatusCode::NOT_FOUND, serde_json::json!({"description": "Not found."}))
    );
}
