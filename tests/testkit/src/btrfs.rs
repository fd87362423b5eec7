//! A btrfs file system of its own for a test: a sparse file in a temporary directory, on a free
//! loop device, mounted in that directory, with quotas on (as pools may have them). Dropping it
//! unmounts and detaches it, even after a failed assertion.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cleanup::release_mounts_and_loop_devices;

pub struct BtrfsPool {
    directory: tempfile::TempDir,
    device: PathBuf,
    mount_point: PathBuf,
}

impl BtrfsPool {
    /// A new, empty pool of `size` bytes (at least 256 MiB, mkfs.btrfs's smallest is 114 MiB).
    pub fn new(size: u64) -> Self {
        let directory = tempfile::tempdir().expect("cannot make a temporary directory");
        let image = directory.path().join("pool.img");
        fs::File::create(&image)
            .and_then(|file| file.set_len(size))
            .expect("cannot make the pool's sparse file");
        let mount_point = directory.path().join("pool");
        fs::create_dir(&mount_point).expect("cannot make the mount point");
        // losetup takes the first free device and retries if another process takes it first.
        let device = run("losetup", &["--find", "--show", text(&image)]);
        let device = PathBuf::from(device.trim());
        let pool = Self { directory, device, mount_point };
        run("mkfs.btrfs", &["-q", text(&pool.device)]);
        run("mount", &["-t", "btrfs", text(&pool.device), text(&pool.mount_point)]);
        run("btrfs", &["quota", "enable", text(&pool.mount_point)]);
        pool
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    pub fn device(&self) -> &Path {
        &self.device
    }
}

impl Drop for BtrfsPool {
    fn drop(&mut self) {
        release_mounts_and_loop_devices(self.directory.path());
    }
}

fn run(program: &str, arguments: &[&str]) -> String {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
