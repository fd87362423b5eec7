//! The transfer port as an attacker meets it: only a node of the cluster gets a TLS session,
//! only a node the control service says holds a dataset moving here may push it, and what it
//! pushes is kept only if it is one complete, verified snapshot of the right size. Real agents,
//! a real control service, real btrfs pools (root).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flocker_api::DatasetId;
use flocker_dataset_agent::peer::Promote;
use flocker_dataset_agent::peer::client::{PeerClient, PeerError};
use flocker_testkit::btrfs::BtrfsPool;
use flocker_testkit::{BackendKind, ClusterCertificates, LocalCluster, require_root};

/// The port node `index` takes pushes on, from its log.
fn transfer_address(cluster: &LocalCluster, index: usize) -> String {
    let log = cluster.agents[index].log();
    let line = log
        .lines()
        .find(|line| line.contains("taking pushes of volumes from other nodes on port"))
        .unwrap_or_else(|| panic!("no transfer port in the log:\n{log}"));
    format!("127.0.0.1:{}", line.rsplit(' ').next().unwrap_or_default())
}

/// A client presenting `certificate` and `key`, trusting `cluster`.
fn client(directory: &Path, cluster: &Path, certificate: &Path, key: &Path) -> PeerClient {
    fs::create_dir_all(directory).unwrap();
    fs::copy(cluster, directory.join("cluster.crt")).unwrap();
    fs::copy(certificate, directory.join("node.crt")).unwrap();
    fs::copy(key, directory.join("node.key")).unwrap();
    PeerClient::new(directory).unwrap()
}

fn run(program: &str, arguments: &[&str]) {
    let output = Command::new(program).args(arguments).output().unwrap();
    assert!(output.status.success(), "{program} {arguments:?}: {output:?}");
}

/// A `btrfs send` stream of a read-only snapshot named `name` holding `mebibytes` MiB.
fn stream(pool: &BtrfsPool, name: &str, mebibytes: usize) -> Vec<u8> {
    let volume = pool.path().join(format!("volume-{name}"));
    run("btrfs", &["subvolume", "create", volume.to_str().unwrap()]);
    fs::write(volume.join("data"), vec![0x42u8; mebibytes << 20]).unwrap();
    let snapshot = pool.path().join(name);
    run(
        "btrfs",
        &["subvolume", "snapshot", "-r", volume.to_str().unwrap(), snapshot.to_str().unwrap()],
    );
    let file = pool.path().join(format!("{name}.stream"));
    run("btrfs", &["-q", "send", "-f", file.to_str().unwrap(), snapshot.to_str().unwrap()]);
    fs::read(file).unwrap()
}

fn with_digest(mut stream: Vec<u8>) -> Vec<u8> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&stream);
    stream.extend_from_slice(&digest);
    stream
}

fn subvolumes_in(directory: &Path) -> Vec<PathBuf> {
    fs::read_dir(directory)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn refused_with(result: Result<impl std::fmt::Debug, PeerError>, status: u16, words: &str) {
    match result {
        Err(PeerError::Refused { status: got, description, .. }) => {
            assert_eq!(got, status, "{description}");
            assert!(description.contains(words), "{description}");
        }
        other => panic!("expected a {status} ({words}), got {other:?}"),
    }
}

#[test]
fn only_nodes_of_the_cluster_talk_and_only_the_holder_pushes_and_only_whole_verified_snapshots_stay()
 {
    require_root();
    let mut cluster = LocalCluster::start(BackendKind::Btrfs, 2, &["--node-expiry", "60"]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    fs::write(path.join("kept.txt"), b"the only copy").unwrap();
    // Node 0 goes quiet, its report standing: the dataset is "arriving" from it, and nobody
    // pushes it while the test speaks as node 0 and as others.
    cluster.agents[0].kill();
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    let (b, address) = (cluster.node(1), transfer_address(&cluster, 1));
    let work = cluster.certificates.root().join("attackers");
    let cluster_crt = cluster.certificates.cluster_certificate();
    let holder = cluster.agents[0].node.clone();
    let as_holder = client(&work.join("holder"), &cluster_crt, &holder.certificate, &holder.key);
    cluster.wait_for("node-1 to expect the dataset from node-0", Duration::from_secs(30), || {
        as_holder.holding(b, &address, &dataset).is_ok_and(|h| h.refuses.is_none())
    });

    // Another cluster's node: no TLS session.
    let other = ClusterCertificates::new();
    let stranger = other.node();
    let outsider = client(
        &work.join("outsider"),
        &other.cluster_certificate(),
        &stranger.certificate,
        &stranger.key,
    );
    assert!(matches!(outsider.holding(b, &address, &dataset), Err(PeerError::Unreachable { .. })));
    // This cluster's API user: a session, then nothing (its CN names no node).
    let (user_crt, user_key) = cluster.certificates.user("plugin");
    let user = client(&work.join("user"), &cluster_crt, &user_crt, &user_key);
    assert!(user.holding(b, &address, &dataset).is_err());
    // The receiver must be the node the caller means: node-1's port is not node-0.
    assert!(as_holder.holding(holder.uuid, &address, &dataset).is_err());
    // A node of the cluster that does not hold the dataset: may ask, may not push.
    let bystander = cluster.certificates.node();
    let as_bystander =
        client(&work.join("bystander"), &cluster_crt, &bystander.certificate, &bystander.key);
    let holding = as_bystander.holding(b, &address, &dataset).unwrap();
    assert!(holding.refuses.as_deref().is_some_and(|r| r.contains("does not say")), "{holding:?}");
    let pool = BtrfsPool::new(1 << 30);
    let good = with_digest(stream(&pool, "0000000001", 1));
    refused_with(as_bystander.push(b, &address, &dataset, &good[..], 1 << 20), 403, "does not say");
    // A dataset not moving here, even from the holder.
    refused_with(
        as_holder.push(b, &address, &DatasetId::random(), &good[..], 1 << 20),
        403,
        "not to be on this node",
    );

    // From the holder: garbage, a snapshot not named as ours, a wrong digest, too much.
    let incoming = cluster.root_path(1).join("node-1/pool/snapshots").join(dataset.to_string());
    refused_with(
        as_holder.push(b, &address, &dataset, &b"not a stream at all"[..], 20),
        400,
        "not one btrfs snapshot",
    );
    let evil = with_digest(stream(&pool, "evil", 1));
    refused_with(as_holder.push(b, &address, &dataset, &evil[..], 1 << 20), 400, "not a snapshot");
    let mut wrong = stream(&pool, "0000000002", 1);
    wrong.extend_from_slice(&[0u8; 32]);
    refused_with(as_holder.push(b, &address, &dataset, &wrong[..], 1 << 20), 400, "SHA-256");
    let huge = with_digest(stream(&pool, "0000000003", 150)); // the dataset holds 64 MiB
    let error = as_holder.push(b, &address, &dataset, &huge[..], 150 << 20);
    assert!(error.is_err(), "a stream past the dataset's size was taken");
    assert_eq!(subvolumes_in(&incoming), Vec::<PathBuf>::new(), "something was kept");
    refused_with(
        as_holder.promote(b, &address, &dataset, &Promote { origin: uuid::Uuid::new_v4() }),
        409,
        "no complete snapshot",
    );
    assert!(as_holder.holding(b, &address, &dataset).unwrap().volume.is_none());

    // The real node 0 comes back and pushes: the bytes arrive.
    cluster.agents[0].restart().unwrap();
    let moved = cluster.wait_mounted(&dataset, 1);
    assert_eq!(fs::read(moved.join("kept.txt")).unwrap(), b"the only copy");
}
