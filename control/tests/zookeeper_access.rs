//! With `--store-credentials`, the configuration's znodes are the control services' alone: a
//! Mesos task (or anything else) that reaches ZooKeeper can neither read nor change them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flocker_testkit::{ClusterCertificates, ControlProcess, ZooKeeperEnsemble};
use serde_json::json;
use zookeeper_client as zk;

fn start(certificates: &ClusterCertificates, name: &str, extra: &[&str]) -> ControlProcess {
    let data = certificates.root().join(name);
    ControlProcess::start(
        env!("CARGO_BIN_EXE_flocker-control").as_ref(),
        certificates,
        &data,
        extra,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn secret(directory: &Path, text: &str, mode: u32) -> String {
    let path = directory.join(format!("zookeeper-{mode:o}.secret"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

/// What a client of ZooKeeper authenticated as `digest` (if given, and not the services')
/// gets reading and writing under the store's root.
fn outsider(servers: &str, digest: Option<&str>) -> (Result<(), zk::Error>, Result<(), zk::Error>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut connector = zk::Client::connector();
        if let Some(digest) = digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        let client = connector.connect(servers).await.expect("connect to ZooKeeper");
        let read = client.get_data("/flocker/head").await.map(drop);
        let written = client.set_data("/flocker/head", b"{\"generation\":0}", None).await.map(drop);
        (read, written)
    })
}

#[test]
fn with_credentials_nothing_else_can_read_or_change_the_configuration() {
    let ensemble = ZooKeeperEnsemble::start(3);
    let certificates = ClusterCertificates::new();
    let url = format!("zk://{}/flocker", ensemble.connect_string());
    let credentials = secret(certificates.root(), "flocker:s3cret\n", 0o600);
    let a = start(&certificates, "a", &["--store", &url, "--store-credentials", &credentials]);
    let client = certificates.client(a.rest, "alice");
    let body = json!({"primary": flocker_api::NodeUuid::random().to_string()}).to_string();
    let created = client.send("POST", "/v1/configuration/datasets", &[], Some(body.as_bytes()));
    assert_eq!(created.unwrap().status, 201, "{}", a.log());

    for digest in [None, Some("flocker:guess"), Some("mesos:task")] {
        let (read, written) = outsider(&ensemble.connect_string(), digest);
        assert_eq!(read, Err(zk::Error::NoAuth), "reading as {digest:?}");
        assert_eq!(written, Err(zk::Error::NoAuth), "writing as {digest:?}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let read = runtime.block_on(async {
        let connector = zk::Client::connector().with_auth("digest", b"flocker:s3cret");
        let client = connector.connect(&ensemble.connect_string()).await.expect("connect");
        client.get_data("/flocker/head").await.map(drop)
    });
    assert_eq!(read, Ok(()), "the control services' own credentials read it");

    let b = start(&certificates, "b", &["--store", &url, "--store-credentials", &credentials]);
    let listed = certificates.client(b.rest, "alice").list_datasets().unwrap().0;
    assert_eq!(listed.len(), 1, "{}\n---- a:\n{}", b.log(), a.log());
}

#[test]
fn a_credentials_file_others_can_read_stops_the_service_before_it_starts() {
    let ensemble = ZooKeeperEnsemble::start(1);
    let certificates = ClusterCertificates::new();
    let url = format!("zk://{}/flocker", ensemble.connect_string());
    let credentials = secret(certificates.root(), "flocker:s3cret\n", 0o644);
    let data = certificates.root().join("a");
    let error = ControlProcess::start(
        env!("CARGO_BIN_EXE_flocker-control").as_ref(),
        &certificates,
        &data,
        &["--store", &url, "--store-credentials", &credentials],
    )
    .map(drop)
    .unwrap_err();
    assert!(error.contains("chmod 600"), "{error}");
}
