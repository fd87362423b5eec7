//! The btrfs backend with real agents, a real control service and a real btrfs (root): each
//! node's pool is a file of its own on a loop device, a dataset a subvolume limited to its size.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flocker_api::DatasetId;
use flocker_testkit::{
    AgentProcess, BackendKind, ClusterCertificates, LocalCluster, SMALL, agent_binary,
    release_mounts_and_loop_devices, require_root, run_agent_to_exit,
};

/// The file system type and per-mount options of whatever is mounted exactly at `path`.
fn mount_at(path: &Path) -> Option<(String, String)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-")?;
        (Path::new(fields[4]) == path)
            .then(|| (fields[separator + 1].to_owned(), fields[5].to_owned()))
    })
}

fn start(nodes: usize) -> LocalCluster {
    require_root();
    LocalCluster::start(BackendKind::Btrfs, nodes, &["--node-expiry", "2"])
}

/// Where node `index` keeps its pool.
fn pool(cluster: &LocalCluster, index: usize) -> PathBuf {
    cluster.shared_root.join(&cluster.agents[index].name).join("pool")
}

fn is_subvolume(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

/// Writes `mebibytes` MiB into `path`, syncing; the error that stopped it, if any.
fn write_mebibytes(path: &Path, mebibytes: usize) -> Result<(), std::io::Error> {
    let mut file = fs::File::create(path)?;
    let chunk = vec![0x5a_u8; 1 << 20];
    for _ in 0..mebibytes {
        file.write_all(&chunk)?;
    }
    file.sync_all()
}

#[test]
fn a_dataset_is_a_subvolume_mounted_nosuid_nodev_and_limited_to_its_size() {
    let cluster = start(1);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    assert_eq!(path, cluster.agents[0].mount_point(&dataset.to_string()));
    let (kind, options) = mount_at(&path).expect("the dataset is a mount point");
    assert_eq!(kind, "btrfs");
    assert!(options.contains("nosuid") && options.contains("nodev"), "{options}");
    let volume = cluster.volume_path(&dataset, Some(0));
    assert!(is_subvolume(&volume), "{} is not a subvolume", volume.display());
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::read_dir(&path).unwrap().count(), 0, "a new volume holds nothing");

    fs::write(path.join("hello.txt"), b"in the subvolume").unwrap();
    assert_eq!(fs::read(volume.join("hello.txt")).unwrap(), b"in the subvolume");

    assert_eq!(SMALL, 64 << 20);
    let refused = write_mebibytes(&path.join("big.bin"), 80).expect_err("80 MiB fit in 64 MiB");
    assert_eq!(refused.raw_os_error(), Some(nix::libc::EDQUOT), "{refused}");
}

#[test]
fn a_restart_keeps_the_mounted_volume_and_after_a_reboot_mounts_it_again_without_creating() {
    let mut cluster = start(1);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    fs::write(path.join("kept.txt"), b"across restarts").unwrap();
    let mount_before = mount_at(&path);

    cluster.agents[0].kill();
    let log_before = cluster.agents[0].log().len();
    cluster.agents[0].restart().unwrap();
    cluster.wait_for("the restarted agent to report", Duration::from_secs(30), || {
        cluster.agents[0].log()[log_before..].contains("btrfs backend")
    });
    assert_eq!(cluster.wait_mounted(&dataset, 0), path);
    assert_eq!(mount_at(&path), mount_before, "mounted again instead of kept");

    // As after a reboot: no mount, no loop device.
    cluster.agents[0].kill();
    release_mounts_and_loop_devices(&cluster.agents[0].mount_root);
    release_mounts_and_loop_devices(&cluster.shared_root.join(&cluster.agents[0].name));
    assert!(mount_at(&pool(&cluster, 0)).is_none(), "the pool is still mounted");
    cluster.wait_for("the killed agent's node to leave the state", Duration::from_secs(30), || {
        cluster.states(&dataset).iter().all(|s| s.path.is_none())
    });
    let log_before = cluster.agents[0].log().len();
    cluster.agents[0].restart().unwrap();
    assert_eq!(cluster.wait_mounted(&dataset, 0), path);
    assert_eq!(fs::read(path.join("kept.txt")).unwrap(), b"across restarts");
    let after = cluster.agents[0].log()[log_before..].to_owned();
    assert!(after.contains(": Mount"), "the volume was not mounted again:\n{after}");
    for words in [": Create", "is blank"] {
        assert!(!after.contains(words), "the restarted agent logged {words:?}:\n{after}");
    }
}

#[test]
fn deleting_a_dataset_unmounts_it_and_deletes_its_subvolume() {
    let cluster = start(1);
    let dataset = cluster.create_dataset(0).dataset_id;
    let path = cluster.wait_mounted(&dataset, 0);
    let volume = cluster.volume_path(&dataset, Some(0));
    cluster.client.delete_dataset(&dataset, None).unwrap();
    // The state may show it gone while its subvolume is still being deleted (set aside in
    // `.deleting`): the step runs beside the loop's reports.
    let pool = pool(&cluster, 0);
    let empty = |leftovers: &str| fs::read_dir(pool.join(leftovers)).unwrap().count() == 0;
    cluster.wait_for("the subvolume to be deleted", Duration::from_secs(30), || {
        !volume.exists() && cluster.states(&dataset).is_empty() && empty(".deleting")
    });
    assert!(mount_at(&path).is_none(), "still mounted");
    assert!(!path.exists(), "the mount point stays behind");
    for leftovers in [".creating", ".deleting", "volumes"] {
        assert!(empty(leftovers), "{leftovers}");
    }
}

#[test]
fn a_link_planted_at_the_mount_point_is_never_followed() {
    let cluster = start(1);
    let dataset = DatasetId::random();
    let victim = cluster.certificates.root().join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("precious"), b"keep").unwrap();
    let target = cluster.agents[0].mount_point(&dataset.to_string());
    fs::create_dir_all(&cluster.agents[0].mount_root).unwrap();
    std::os::unix::fs::symlink(&victim, &target).unwrap();

    cluster.create_dataset_with_id(0, Some(dataset)).unwrap();
    cluster.wait_for("the agent to refuse the link", Duration::from_secs(30), || {
        cluster.agents[0].log().contains(&format!("dataset {dataset}: Mount failed"))
    });
    assert!(mount_at(&victim).is_none() && mount_at(&target).is_none(), "mounted through it");
    assert!(fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 1);
    assert!(cluster.volume_path(&dataset, Some(0)).exists(), "the volume itself was made");

    fs::remove_file(&target).unwrap();
    assert_eq!(cluster.wait_mounted(&dataset, 0), target);
    assert_eq!(mount_at(&target).map(|(kind, _)| kind).as_deref(), Some("btrfs"));
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).split(' ').next().unwrap_or_default().to_owned()
}

/// Releases the loop device and mounts under `root` even when the test fails.
struct Released(PathBuf);

impl Drop for Released {
    fn drop(&mut self) {
        release_mounts_and_loop_devices(&self.0);
    }
}

#[test]
fn a_pool_device_or_file_holding_ext4_is_refused_and_left_intact() {
    require_root();
    let certificates = ClusterCertificates::new();
    let _released = Released(certificates.root().to_owned());
    // A configured agent, not started: only its directory and certificates are used.
    let directory = AgentProcess::start(
        &agent_binary(),
        &certificates,
        "node-x",
        9,
        BackendKind::DirectorySymlink,
        &certificates.root().join("shared"),
    )
    .unwrap()
    .directory
    .clone();
    let image = certificates.root().join("ext4.img");
    fs::File::create(&image).unwrap().set_len(300 << 20).unwrap();
    let made = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image).status().unwrap();
    assert!(made.success());
    let before = sha256(&image);
    let losetup = Command::new("losetup").args(["--find", "--show"]).arg(&image).output().unwrap();
    assert!(losetup.status.success(), "{}", String::from_utf8_lossy(&losetup.stderr));
    let device = String::from_utf8_lossy(&losetup.stdout).trim().to_owned();
    let pool = certificates.root().join("pool");

    for (source, named) in [
        (format!("pool_device: {device}"), device.clone()),
        (format!("pool_file: {}, pool_size: {}", image.display(), 300 << 20), String::new()),
    ] {
        fs::write(
            directory.join("agent.yml"),
            format!(
                "version: 1\ncontrol-service: {{hostname: 127.0.0.1, port: 9}}\n\
                 dataset: {{backend: btrfs, pool: {}, {source}}}\n",
                pool.display()
            ),
        )
        .unwrap();
        let message = run_agent_to_exit(&directory);
        assert!(message.contains("holds a file system (ext4)"), "{message}");
        assert!(message.contains("never formatted"), "{message}");
        assert!(message.contains(&named), "{named}: {message}");
        assert!(mount_at(&pool).is_none(), "mounted");
        assert_eq!(sha256(&image), before, "the ext4 image changed");
    }
}

/// What a crash left of a copy (a receive or a promotion cut short: writable subvolumes among a
/// dataset's snapshots) is deleted when the agent starts; complete snapshots are kept.
#[test]
fn at_start_an_unfinished_copy_is_deleted_and_snapshots_are_kept() {
    let mut cluster = start(1);
    let dataset = cluster.create_dataset(0).dataset_id;
    let volume = cluster.wait_mounted(&dataset, 0);
    cluster.agents[0].kill();
    let snapshots = pool(&cluster, 0).join("snapshots").join(dataset.to_string());
    fs::create_dir_all(&snapshots).unwrap();
    let (unfinished, complete) = (snapshots.join("0000000002"), snapshots.join("0000000001"));
    let btrfs = |arguments: &[&str]| {
        let status = Command::new("btrfs").args(arguments).status().unwrap();
        assert!(status.success(), "btrfs {arguments:?}");
    };
    btrfs(&[
        "-q",
        "subvolume",
        "snapshot",
        "-r",
        volume.to_str().unwrap(),
        complete.to_str().unwrap(),
    ]);
    btrfs(&["-q", "subvolume", "create", unfinished.to_str().unwrap()]);

    cluster.agents[0].restart().unwrap();
    // The log says so once it is done: the path alone also vanishes while the restarted agent
    // mounts its pool again.
    cluster.wait_for("the agent to delete the unfinished copy", Duration::from_secs(30), || {
        cluster.agents[0].log().contains("a copy a crash left unfinished")
    });
    assert!(!unfinished.exists(), "the unfinished copy is still there");
    assert!(is_subvolume(&complete), "the complete snapshot was deleted");
}
