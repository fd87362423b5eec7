//! `release/bin/flocker-node-ready`, the readiness check the release tarball installs (mesos-agent
//! waits for it): run against a real control service and agent, with this build's flockerctl.

use std::path::Path;
use std::process::{Command, Output};

use flocker_testkit::{BackendKind, LocalCluster};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../release/bin/flocker-node-ready");

/// An `/etc/flocker` as an agent node has it: the cluster's certificate, the node's, the
/// isolator's API user, and an `agent.yml` naming the control service.
fn etc_flocker(cluster: &LocalCluster, node_certificate: &Path, directory: &Path) {
    let (plugin_certificate, plugin_key) = cluster.certificates.user("plugin");
    let copies = [
        (cluster.certificates.cluster_certificate(), "cluster.crt"),
        (node_certificate.to_owned(), "node.crt"),
        (plugin_certificate, "plugin.crt"),
        (plugin_key, "plugin.key"),
    ];
    for (from, name) in copies {
        std::fs::copy(&from, directory.join(name)).expect("copy a certificate");
    }
    let agent_yml = format!(
        "version: 1\ncontrol-service: {{hostname: 127.0.0.1, port: {}}}\n",
        cluster.control.agent.port()
    );
    std::fs::write(directory.join("agent.yml"), agent_yml).expect("agent.yml");
}

fn node_ready(cluster: &LocalCluster, directory: &Path, timeout: &str) -> Output {
    Command::new(SCRIPT)
        .env("FLOCKER_CERTS_PATH", directory)
        .env("FLOCKER_CONTROL_PORT", cluster.control.rest.port().to_string())
        .env("FLOCKER_READY_TIMEOUT", timeout)
        .env("FLOCKERCTL", env!("CARGO_BIN_EXE_flockerctl"))
        .env_remove("FLOCKER_USER")
        .env_remove("FLOCKER_CONTROL_SERVICE")
        .output()
        .expect("cannot run flocker-node-ready")
}

#[test]
fn a_node_whose_agent_said_hello_is_ready() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let etc = tempfile::tempdir().expect("tempdir");
    etc_flocker(&cluster, &cluster.agents[0].node.certificate, etc.path());
    let output = node_ready(&cluster, etc.path(), "30");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("node {} is registered", cluster.node(0))), "{stdout}");
}

#[test]
fn a_node_without_an_agent_is_not_ready_and_says_why() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let etc = tempfile::tempdir().expect("tempdir");
    let stranger = cluster.certificates.node(); // a node whose agent never started
    etc_flocker(&cluster, &stranger.certificate, etc.path());
    let output = node_ready(&cluster, etc.path(), "1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("node {} is not ready after 1 s", stranger.uuid))
            && stderr.contains("is flocker-dataset-agent running?"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_control_service_is_named_in_the_failure() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let etc = tempfile::tempdir().expect("tempdir");
    etc_flocker(&cluster, &cluster.agents[0].node.certificate, etc.path());
    let output = Command::new(SCRIPT)
        .env("FLOCKER_CERTS_PATH", etc.path())
        .env("FLOCKER_CONTROL_PORT", "1")
        .env("FLOCKER_READY_TIMEOUT", "0")
        .env("FLOCKERCTL", env!("CARGO_BIN_EXE_flockerctl"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("nothing answers at 127.0.0.1:1"), "{stderr}");
}

#[test]
fn a_certificate_that_is_not_a_node_s_is_refused() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let etc = tempfile::tempdir().expect("tempdir");
    let (plugin_certificate, _) = cluster.certificates.user("plugin");
    etc_flocker(&cluster, &plugin_certificate, etc.path());
    let output = node_ready(&cluster, etc.path(), "1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("is not a node certificate"), "{stderr}");
}
