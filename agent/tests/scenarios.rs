//! The scenarios every backend must pass, with real agents, a real control service, real loop
//! devices and mounts (root), two nodes sharing one `root_path` on this machine.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use flocker_api::{AcquireLease, DatasetId};
use flocker_testkit::{BackendKind, LocalCluster, require_root};
use rand::RngCore;

/// The mount ID and file system type of whatever is mounted exactly at `path`.
fn mount_at(path: &Path) -> Option<(String, String)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-")?;
        (Path::new(fields[4]) == path)
            .then(|| (fields[0].to_owned(), fields[separator + 1].to_owned()))
    })
}

/// Asserts that `path` shows the dataset as the backend promises: a mount point of the right
/// kind, or our link.
fn assert_really_mounted(cluster: &LocalCluster, path: &Path) {
    match cluster.backend {
        BackendKind::Loopback => {
            let (_, kind) =
                mount_at(path).unwrap_or_else(|| panic!("{} is not a mount point", path.display()));
            assert_eq!(kind, "ext4");
        }
        BackendKind::Btrfs => {
            let (_, kind) =
                mount_at(path).unwrap_or_else(|| panic!("{} is not a mount point", path.display()));
            assert_eq!(kind, "btrfs");
        }
        BackendKind::Directory => {
            assert!(mount_at(path).is_some(), "{} is not a mount point", path.display())
        }
        BackendKind::DirectorySymlink => {
            let target = fs::read_link(path).unwrap();
            assert!(target.starts_with(&cluster.shared_root), "{}", target.display());
        }
    }
}

fn assert_not_mounted(cluster: &LocalCluster, path: &Path) {
    assert!(mount_at(path).is_none(), "{} is still mounted", path.display());
    if cluster.backend == BackendKind::DirectorySymlink {
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{} still links to the volume",
            path.display()
        );
    }
}

fn write_random_file(path: &Path) -> Vec<u8> {
    let mut bytes = vec![0u8; 1 << 20];
    rand::rng().fill_bytes(&mut bytes);
    let mut file = fs::File::create(path.join("data.bin")).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
    bytes
}

fn lease(cluster: &LocalCluster, dataset: DatasetId, index: usize) {
    let request =
        AcquireLease { dataset_id: dataset, node_uuid: cluster.node(index), expires: None };
    cluster.client.acquire_lease(&request).unwrap();
}

/// Long enough for both agents to have acted on a change, were they going to.
const SETTLE: Duration = Duration::from_secs(2);

fn start(backend: BackendKind, control_options: &[&str]) -> LocalCluster {
    if backend != BackendKind::DirectorySymlink {
        require_root();
    }
    LocalCluster::start(backend, 2, control_options)
}

fn create_mounts_the_dataset_on_its_node(backend: BackendKind) {
    let cluster = start(backend, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    assert_eq!(path, cluster.agents[0].mount_point(&dataset.to_string()));
    assert_really_mounted(&cluster, &path);
    // Never more access than asked: a new volume is empty, and only the agent's user (root, or
    // whoever runs the symlink agents) may write its root; the isolator gives it to the task.
    let root = fs::metadata(&path).unwrap();
    assert_eq!(root.permissions().mode() & 0o7777, 0o755, "the mode of a new volume's root");
    assert_eq!(root.uid(), nix::unistd::geteuid().as_raw(), "the owner of a new volume's root");
    assert_eq!(fs::read_dir(&path).unwrap().count(), 0, "a new volume holds nothing");
    assert!(cluster.volume_path(&dataset, Some(0)).exists());
    assert!(cluster.mounted_path(&dataset, 1).is_none());
}

fn a_move_keeps_every_byte_and_leaves_nothing_behind(backend: BackendKind) {
    let cluster = start(backend, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let on_a = cluster.wait_mounted(&dataset, 0);
    let written = write_random_file(&on_a);
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    let on_b = cluster.wait_mounted(&dataset, 1);
    assert_really_mounted(&cluster, &on_b);
    assert_eq!(
        fs::read(on_b.join("data.bin")).unwrap(),
        written,
        "the bytes differ after the move"
    );
    assert_not_mounted(&cluster, &on_a);
    assert!(!on_a.exists(), "the mount point stays behind on A");
    assert!(!cluster.volume_path(&dataset, Some(0)).exists(), "still attached to A");
    assert!(cluster.volume_path(&dataset, Some(1)).exists(), "not attached to B");
}

fn a_lease_holds_a_moved_dataset_until_it_is_released(backend: BackendKind) {
    let cluster = start(backend, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let on_a = cluster.wait_mounted(&dataset, 0);
    let written = write_random_file(&on_a);
    lease(&cluster, dataset, 0);
    cluster.client.move_dataset(&dataset, &cluster.node(1), None).unwrap();
    std::thread::sleep(SETTLE);
    assert_eq!(
        cluster.mounted_path(&dataset, 0),
        Some(on_a.clone()),
        "the lease did not hold it on A"
    );
    assert_really_mounted(&cluster, &on_a);
    cluster.client.release_lease(&dataset).unwrap();
    let on_b = cluster.wait_mounted(&dataset, 1);
    assert_eq!(fs::read(on_b.join("data.bin")).unwrap(), written);
}

fn a_lease_holds_a_deleted_dataset_until_it_is_released(backend: BackendKind) {
    let cluster = start(backend, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let on_a = cluster.wait_mounted(&dataset, 0);
    lease(&cluster, dataset, 0);
    cluster.client.delete_dataset(&dataset, None).unwrap();
    std::thread::sleep(SETTLE);
    assert_really_mounted(&cluster, &on_a);
    cluster.client.release_lease(&dataset).unwrap();
    cluster.wait_for("the deleted dataset's volume to go", Duration::from_secs(30), || {
        !cluster.volume_path(&dataset, None).exists()
            && !cluster.volume_path(&dataset, Some(0)).exists()
    });
    assert_not_mounted(&cluster, &on_a);
}

fn a_restart_finds_the_mount_and_formats_nothing(backend: BackendKind) {
    let mut cluster = start(backend, &["--node-expiry", "2"]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    let written = write_random_file(&path);
    let mount_before = mount_at(&path);
    cluster.agents[0].kill();
    cluster.wait_for("the killed agent's node to leave the state", Duration::from_secs(30), || {
        cluster.states(&dataset).iter().all(|s| s.path.is_none())
    });
    let log_before = cluster.agents[0].log().len();
    cluster.agents[0].restart().unwrap();
    assert_eq!(cluster.wait_mounted(&dataset, 0), path, "the state was not reported again");
    assert_eq!(mount_at(&path), mount_before, "the dataset was mounted again instead of kept");
    assert_eq!(fs::read(path.join("data.bin")).unwrap(), written);
    let after = cluster.agents[0].log()[log_before..].to_owned();
    for step in ["Create", "Format", "Mount", "Attach"] {
        assert!(!after.contains(&format!(": {step}")), "the restarted agent ran {step}:\n{after}");
    }
}

fn a_delete_removes_the_volume_and_its_id_is_never_reused(backend: BackendKind) {
    let cluster = start(backend, &[]);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    cluster.client.delete_dataset(&dataset, None).unwrap();
    cluster.wait_for("the volume to be destroyed", Duration::from_secs(30), || {
        !cluster.volume_path(&dataset, None).exists()
            && !cluster.volume_path(&dataset, Some(0)).exists()
    });
    cluster.wait_for("the state to forget the dataset", Duration::from_secs(30), || {
        cluster.states(&dataset).is_empty()
    });
    assert_not_mounted(&cluster, &path);
    let losetup = std::process::Command::new("losetup").arg("--all").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&losetup.stdout).contains(&dataset.to_string()),
        "a loop device is left"
    );
    let again = cluster.create_dataset_with_id(0, Some(dataset)).unwrap_err();
    assert_eq!(again.status(), Some(409));
}

macro_rules! scenarios {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn create_mounts_the_dataset_on_its_node() {
                super::create_mounts_the_dataset_on_its_node($kind);
            }

            #[test]
            fn a_move_keeps_every_byte_and_leaves_nothing_behind() {
                super::a_move_keeps_every_byte_and_leaves_nothing_behind($kind);
            }

            #[test]
            fn a_lease_holds_a_moved_dataset_until_it_is_released() {
                super::a_lease_holds_a_moved_dataset_until_it_is_released($kind);
            }

            #[test]
            fn a_lease_holds_a_deleted_dataset_until_it_is_released() {
                super::a_lease_holds_a_deleted_dataset_until_it_is_released($kind);
            }

            #[test]
            fn a_restart_finds_the_mount_and_formats_nothing() {
                super::a_restart_finds_the_mount_and_formats_nothing($kind);
            }

            #[test]
            fn a_delete_removes_the_volume_and_its_id_is_never_reused() {
                super::a_delete_removes_the_volume_and_its_id_is_never_reused($kind);
            }
        }
    };
}

scenarios!(loopback, BackendKind::Loopback);
scenarios!(directory, BackendKind::Directory);
scenarios!(directory_with_links, BackendKind::DirectorySymlink);
scenarios!(btrfs, BackendKind::Btrfs);
