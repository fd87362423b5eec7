//! Leaving the machine as a test found it, even when the test failed half-way: whatever is
//! mounted or attached as a loop device under the test's directory is let go.

use std::path::Path;
use std::process::Command;

/// Fails the test, loudly, unless it runs as root (loop devices and mounts need it).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (loop devices, mounts): run it as root, as CI does"
    );
}

/// Unmounts everything mounted under `root` (deepest first) and detaches every loop device
/// whose backing file is under it; then unmounts again what those devices kept busy (a FUSE
/// `root_path`).
pub fn release_mounts_and_loop_devices(root: &Path) {
    unmount_everything_under(root);
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return };
    for entry in entries.filter_map(Result::ok) {
        let backing =
            std::fs::read_to_string(entry.path().join("loop/backing_file")).unwrap_or_default();
        if Path::new(backing.trim()).starts_with(root) {
            let device = Path::new("/dev").join(entry.file_name());
            let _ = Command::new("losetup").arg("--detach").arg(device).status();
        }
    }
    unmount_everything_under(root);
}

/// Unmounts whatever is mounted under `root`, deepest first; lazily what is busy.
pub(crate) fn unmount_everything_under(root: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounted: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| point.replace("\\040", " "))
        .filter(|point| Path::new(point).starts_with(root))
        .collect();
    // Deepest first; a point mounted twice is listed twice and unmounted twice.
    mounted.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in mounted {
        let quiet = |arguments: &[&str]| {
            Command::new("umount")
                .args(arguments)
                .arg(&point)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !quiet(&[]) {
            quiet(&["--lazy"]);
        }
    }
}
