//! The loader against the library `cargo build` made: it loads, refuses what the library
//! refuses with the library's own words, and answers a prepare through the callback.

use std::path::PathBuf;
use std::time::Duration;

use flocker_isolator_loader::{CallError, Library, LoadError};
use flocker_testkit::ClusterCertificates;

const WAIT: Duration = Duration::from_secs(30);

/// `target/<profile>/libflocker_isolator.so`, beside this test's `deps/`.
fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let library = path.join("libflocker_isolator.so");
    assert!(library.exists(), "{} is missing: run `cargo build --workspace`", library.display());
    library
}

fn fixture(name: &str) -> String {
    let path =
        format!("{}/../../tests/fixtures/container-config/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Parameters with real certificates and a control service nobody listens for: the calls
/// tested here never reach it.
fn parameters(certificates: &ClusterCertificates) -> String {
    let (certificate, key) = certificates.user("plugin");
    serde_json::json!({
        "control_service_host": "127.0.0.1",
        "control_service_port": "1",
        "node_uuid": "6c4f2e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
        "state_dir": certificates.root().join("state"),
        "cluster_certificate": certificates.cluster_certificate(),
        "client_certificate": certificate,
        "client_key": key,
    })
    .to_string()
}

#[test]
fn the_version_is_the_workspace_version() {
    let library = Library::open(&built_library()).expect("load");
    assert_eq!(library.version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_missing_library_names_its_path() {
    let error = Library::open(&PathBuf::from("/nonexistent/libflocker_isolator.so")).err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.starts_with("cannot load /nonexistent/libflocker_isolator.so"), "{message}");
}

#[test]
fn a_bad_parameter_is_refused_in_the_library_s_words() {
    let library = Library::open(&built_library()).expect("load");
    match library.isolator(r#"{"control_service_host": "x", "colour": "blue"}"#, WAIT) {
        Err(LoadError::Refused(message)) => assert!(message.contains("colour"), "{message}"),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("an unknown parameter was accepted"),
    }
}

#[test]
fn a_container_without_flocker_variables_prepares_to_nothing() {
    let certificates = ClusterCertificates::new();
    let library = Library::open(&built_library()).expect("load");
    let isolator = library.isolator(&parameters(&certificates), WAIT).expect("isolator");
    let id = r#"{"value": "not-flocker-1"}"#;
    assert_eq!(isolator.prepare(id, &fixture("not-flocker.json")).expect("prepare"), None);
    isolator.cleanup(id).expect("cleanup");
}

#[test]
fn a_failed_prepare_answers_with_the_isolator_s_message() {
    let certificates = ClusterCertificates::new();
    let library = Library::open(&built_library()).expect("load");
    let isolator = library.isolator(&parameters(&certificates), WAIT).expect("isolator");
    match isolator.prepare(r#"{"value": "half"}"#, &fixture("bad-half-pair.json")) {
        Err(CallError::Failed(message)) => assert!(message.contains("FLOCKER_"), "{message}"),
        other => panic!("expected the isolator's refusal, got {other:?}"),
    }
}

#[test]
fn a_container_id_that_is_not_json_is_a_failure_not_a_crash() {
    let certificates = ClusterCertificates::new();
    let library = Library::open(&built_library()).expect("load");
    let isolator = library.isolator(&parameters(&certificates), WAIT).expect("isolator");
    assert!(matches!(isolator.cleanup("{not json"), Err(CallError::Failed(_))));
}
