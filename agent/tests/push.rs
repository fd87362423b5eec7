//! Moves between nodes' own disks (btrfs): real agents push a volume to each other over mutual
//! TLS, a real control service tells them what goes where, and each node's pool is a btrfs on a
//! loop file of its own (root). Kills are `kill -9`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flocker_api::{AcquireLease, CreateDataset, DatasetId};
use flocker_testkit::{BackendKind, LocalCluster, require_root};
use rand::RngCore;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
/// Room in a test pool (512 MiB) for the volume, its snapshots and a copy arriving.
const VOLUME_SIZE: u64 = 320 * MIB;

fn start(nodes: usize) -> LocalCluster {
    require_root();
    LocalCluster::start(BackendKind::Btrfs, nodes, &["--node-expiry", "5"])
}

fn create(cluster: &LocalCluster, index: usize, size: u64) -> DatasetId {
    let request = CreateDataset {
        primary: cluster.node(index),
        dataset_id: None,
        maximum_size: Some(size),
        metadata: Default::default(),
    };
    cluster.client.create_dataset(&request, None).unwrap().dataset_id
}

fn pool(cluster: &LocalCluster, index: usize) -> PathBuf {
    cluster.shared_root.join(&cluster.agents[index].name).join("pool")
}

/// Writes `mebibytes` MiB of random bytes to `path`, synced.
fn write_random(path: &Path, mebibytes: u64) {
    let mut file = fs::File::create(path).unwrap();
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..mebibytes {
        rand::rng().fill_bytes(&mut chunk);
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
}

/// Every regular file under `root` and its SHA-256, by relative path.
fn contents(root: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut directories = vec![root.to_owned()];
    while let Some(directory) = directories.pop() {
        for entry in fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                directories.push(path);
            } else {
                let digest = Sha256::digest(fs::read(&path).unwrap());
                let name = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                found.push((name, format!("{digest:x}")));
            }
        }
    }
    found.sort();
    found
}

/// What a node holds of a dataset in its pool: its volume, a copy set aside, its snapshots.
fn held(cluster: &LocalCluster, index: usize, dataset: &DatasetId) -> Vec<PathBuf> {
    let pool = pool(cluster, index);
    let mut held = Vec::new();
    held.extend(volume(cluster, index, dataset));
    let snapshots = pool.join("snapshots").join(dataset.to_string());
    held.extend(snapshots.exists().then_some(snapshots));
    if let Ok(nodes) = fs::read_dir(pool.join("handoff")) {
        for node in nodes.filter_map(Result::ok) {
            for entry in fs::read_dir(node.path()).unwrap().filter_map(Result::ok) {
                if entry.file_name().to_string_lossy().starts_with(&dataset.to_string()) {
                    held.push(entry.path());
                }
            }
        }
    }
    held
}

/// The volume of `dataset` in node `index`'s pool, if it has one (`<dataset>_<bytes>`).
fn volume(cluster: &LocalCluster, index: usize, dataset: &DatasetId) -> Option<PathBuf> {
    let volumes = fs::read_dir(pool(cluster, index).join("volumes")).ok()?;
    let prefix = format!("{dataset}_");
    let mut found = volumes
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix));
    found.next().map(|entry| entry.path())
}

/// Whether `directory` holds a complete received snapshot (read-only: `btrfs receive` sets it
/// at the very end), not merely one arriving.
fn has_complete_snapshot(directory: &Path) -> bool {
    let Ok(entries) = fs::read_dir(directory) else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        let output = std::process::Command::new("btrfs")
            .args(["property", "get", "-ts"])
            .arg(entry.path())
            .arg("ro")
            .output();
        output.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "ro=true")
    })
}

fn is_mount_point(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().any(|line| line.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

fn wait_until_only_on(cluster: &LocalCluster, dataset: &DatasetId, index: usize) {
    let other = 1 - index;
    cluster.wait_for(
        &format!("node-{other} to let go of everything of {dataset}"),
        Duration::from_secs(60),
        || held(cluster, other, dataset).is_empty(),
    );
    cluster.wait_for(
        &format!("node-{index} to delete the snapshots of {dataset} once done"),
        Duration::from_secs(60),
        || {
            held(cluster, index, dataset)
                == volume(cluster, index, dataset).into_iter().collect::<Vec<_>>()
        },
    );
}

#[test]
fn a_volume_moves_to_another_node_with_its_bytes_and_leaves_nothing_behind() {
    let cluster = start(2);
    let dataset = create(&cluster, 0, VOLUME_SIZE);
    let path = cluster.wait_mounted(&dataset, 0);
    fs::create_dir(path.join("data")).unwrap();
    write_random(&path.join("data/big"), 40);
    fs::write(path.join("small.txt"), b"hello from node 0").unwrap();
    std::os::unix::fs::symlink("data/big", path.join("link")).unwrap();
    let before = contents(&path);

    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    let moved = cluster.wait_mounted(&dataset, 1);
    assert_eq!(contents(&moved), before, "the bytes on node-1 are node-0's");
    assert_eq!(fs::read_link(moved.join("link")).unwrap(), Path::new("data/big"));
    assert!(!is_mount_point(&path), "node-0 still has it mounted");
    wait_until_only_on(&cluster, &dataset, 1);

    // And back: the same way, into the node it came from.
    fs::write(moved.join("small.txt"), b"hello from node 1").unwrap();
    let before = contents(&moved);
    cluster.client.move_dataset(&dataset, &cluster.node(0), None).unwrap();
    let back = cluster.wait_mounted(&dataset, 0);
    assert_eq!(contents(&back), before);
    wait_until_only_on(&cluster, &dataset, 0);
}

/// Appends a numbered, synced line to `file` every few milliseconds until told to stop; the
/// number of lines written.
fn keep_appending(file: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut log = fs::OpenOptions::new().create(true).append(true).open(file).unwrap();
        let mut lines = 0;
        while !stop.load(Ordering::Relaxed) {
            lines += 1;
            writeln!(log, "line {lines}").unwrap();
            log.sync_data().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        lines
    })
}

#[test]
fn under_a_lease_the_bulk_is_copied_while_the_task_writes_and_the_handoff_carries_the_last_write() {
    let cluster = start(2);
    let dataset = create(&cluster, 0, VOLUME_SIZE);
    let path = cluster.wait_mounted(&dataset, 0);
    write_random(&path.join("bulk"), 100);
    let lease = AcquireLease { dataset_id: dataset, node_uuid: cluster.node(0), expires: None };
    cluster.client.acquire_lease(&lease).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_appending(path.join("journal"), stop.clone());

    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    let received = pool(&cluster, 1).join("snapshots").join(dataset.to_string());
    cluster.wait_for("node-1 to receive a pre-copy", Duration::from_secs(60), || {
        has_complete_snapshot(&received)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_mount_point(&path), "node-0 unmounted a volume its lease holds");
    assert!(cluster.mounted_path(&dataset, 1).is_none(), "node-1 mounted before the handoff");
    assert!(volume(&cluster, 1, &dataset).is_none(), "node-1 made a volume early");

    stop.store(true, Ordering::Relaxed);
    let lines = writer.join().unwrap();
    let before = contents(&path);
    let released = Instant::now();
    cluster.client.release_lease(&dataset).unwrap();
    let moved = cluster.wait_mounted(&dataset, 1);
    let downtime = released.elapsed();
    println!("handoff downtime (lease released → mounted on node-1): {downtime:?}");
    if std::env::var_os("FLOCKER_SHOW_LOGS").is_some() {
        println!("{}", cluster.logs());
    }
    assert_eq!(contents(&moved), before);
    let journal = fs::read_to_string(moved.join("journal")).unwrap();
    assert_eq!(journal.lines().last(), Some(format!("line {lines}").as_str()), "the last write");
    wait_until_only_on(&cluster, &dataset, 1);
}

#[test]
fn a_full_target_pool_fails_the_move_with_its_reason_and_the_volume_stays_intact() {
    let cluster = start(2);
    let filler = create(&cluster, 1, 1024 * MIB); // more than the pool holds
    let full = cluster.wait_mounted(&filler, 1);
    let mut file = fs::File::create(full.join("filler")).unwrap();
    let chunk = vec![0x5au8; MIB as usize];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();

    let dataset = create(&cluster, 0, VOLUME_SIZE);
    let path = cluster.wait_mounted(&dataset, 0);
    write_random(&path.join("precious"), 120);
    let before = contents(&path);
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    let mut problem = String::new();
    cluster.wait_for("node-1 to report why the copy fails", Duration::from_secs(60), || {
        let problems = cluster.problems(&dataset);
        problem = problems.first().map(|p| p.problem.clone()).unwrap_or_default();
        !problem.is_empty()
    });
    assert!(problem.contains("No space left on device"), "{problem}");
    assert!(
        problem.contains(&cluster.node(0).to_string()),
        "names the node it came from: {problem}"
    );
    assert!(volume(&cluster, 1, &dataset).is_none());
    let kept = volume(&cluster, 0, &dataset).expect("node-0 keeps its volume");
    assert_eq!(contents(&kept), before, "node-0's volume is untouched");
    assert!(
        held(&cluster, 1, &dataset)
            .iter()
            .all(|p| !p.exists() || fs::read_dir(p).unwrap().next().is_none()),
        "node-1 kept a partial copy"
    );
}

/// kill -9 of `victim` once `moment` holds, a restart, and the move completes with the bytes.
fn killed_during(victim: usize, moment: &str) {
    let cluster = start(2);
    let mut cluster = cluster;
    let dataset = create(&cluster, 0, VOLUME_SIZE);
    let path = cluster.wait_mounted(&dataset, 0);
    write_random(&path.join("bulk"), 150);
    let lease = AcquireLease { dataset_id: dataset, node_uuid: cluster.node(0), expires: None };
    let received = pool(&cluster, 1).join("snapshots").join(dataset.to_string());
    let aside = pool(&cluster, 0).join("handoff").join(cluster.node(1).to_string());
    if moment == "handoff" {
        // A pre-copy under a lease, then a large last difference.
        cluster.client.acquire_lease(&lease).unwrap();
        cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
        cluster
            .wait_for("a pre-copy", Duration::from_secs(60), || has_complete_snapshot(&received));
        write_random(&path.join("late"), 100);
        let before = contents(&path);
        cluster.client.release_lease(&dataset).unwrap();
        cluster.wait_for("the handoff to begin", Duration::from_secs(60), || {
            fs::read_dir(&aside).is_ok_and(|mut entries| entries.next().is_some())
        });
        finish_after_kill(&mut cluster, victim, &dataset, &before);
    } else {
        let before = contents(&path);
        cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
        cluster.wait_for("the pre-copy to begin", Duration::from_secs(60), || {
            fs::read_dir(&received).is_ok_and(|mut entries| entries.next().is_some())
        });
        finish_after_kill(&mut cluster, victim, &dataset, &before);
    }
}

fn finish_after_kill(
    cluster: &mut LocalCluster,
    victim: usize,
    dataset: &DatasetId,
    before: &[(String, String)],
) {
    cluster.agents[victim].kill();
    std::thread::sleep(Duration::from_millis(300));
    cluster.agents[victim].restart().unwrap();
    let moved = cluster.wait_mounted(dataset, 1);
    assert_eq!(contents(&moved), before, "the bytes after a kill -9 of node-{victim}");
    wait_until_only_on(cluster, dataset, 1);
}

#[test]
fn the_sender_killed_during_the_pre_copy_restarts_and_the_move_completes() {
    killed_during(0, "pre-copy");
}

#[test]
fn the_receiver_killed_during_the_pre_copy_restarts_and_the_move_completes() {
    killed_during(1, "pre-copy");
}

#[test]
fn the_sender_killed_during_the_handoff_restarts_and_the_move_completes() {
    killed_during(0, "handoff");
}

#[test]
fn the_receiver_killed_during_the_handoff_restarts_and_the_move_completes() {
    killed_during(1, "handoff");
}
