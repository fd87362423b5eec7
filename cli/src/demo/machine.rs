//! Facts of this machine the demo checks: who we are, what is mounted, which loop devices are
//! attached, which processes run — and letting go of mounts and loop devices under a directory,
//! so that even a demo that failed half-way leaves the machine as it found it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use flocker_host::mounts::{Mount, MountTable};

/// Whether this process runs as root: the owner of `/proc/self` is its effective user (the
/// crate forbids `unsafe`, so no `geteuid`).
pub fn is_root() -> anyhow::Result<bool> {
    let metadata = std::fs::metadata("/proc/self").context("cannot read /proc/self")?;
    Ok(metadata.uid() == 0)
}

/// Whether `program` is an executable file in a directory of the PATH.
pub fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
}

/// Every mount at or under `directory` (none if mountinfo cannot be read).
pub fn mounts_under(directory: &Path) -> Vec<Mount> {
    let table = MountTable::read().unwrap_or_default();
    table.under(directory).cloned().collect()
}

/// The mount exactly at `path`, if any (the top one where mounts are stacked).
pub fn mount_at(path: &Path) -> Option<Mount> {
    MountTable::read().ok()?.at(path).cloned()
}

/// A loop device whose backing file is under a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    pub device: PathBuf,
    pub backing_file: String,
}

/// Every loop device backed by a file under `directory`, from
/// `/sys/block/loop*/loop/backing_file` (what `losetup -a` reads too).
pub fn loop_devices_under(directory: &Path) -> Vec<LoopDevice> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            let backing_file = backing.trim().to_owned();
            Path::new(&backing_file).starts_with(directory).then(|| LoopDevice {
                device: Path::new("/dev").join(entry.file_name()),
                backing_file,
            })
        })
        .collect()
}

/// Processes other than this one whose command line names `directory` or whose working
/// directory is under it: the demo's services and tasks, if any survived.
pub fn processes_under(directory: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let needle = directory.to_string_lossy().into_owned();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let proc = Path::new("/proc").join(pid.to_string());
            let raw = std::fs::read(proc.join("cmdline")).unwrap_or_default();
            let command = String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_owned();
            let cwd = std::fs::read_link(proc.join("cwd")).unwrap_or_default();
            (command.contains(&needle) || cwd.starts_with(directory)).then_some((pid, command))
        })
        .collect()
}

/// What the demo found under its work directory once everything had stopped.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub mounts: Vec<Mount>,
    pub loop_devices: Vec<LoopDevice>,
    pub processes: Vec<(u32, String)>,
    /// Set once the directory was to be removed and is still there.
    pub directory_remains: bool,
}

impl Leftovers {
    pub fn find(directory: &Path) -> Self {
        Self {
            mounts: mounts_under(directory),
            loop_devices: loop_devices_under(directory),
            processes: processes_under(directory),
            directory_remains: false,
        }
    }

    /// Each leftover in a few words; empty if there is none.
    pub fn describe(&self) -> Vec<String> {
        let mounts = self.mounts.iter().map(|m| format!("mount at {}", m.mount_point.display()));
        let loops = self
            .loop_devices
            .iter()
            .map(|l| format!("loop device {} backed by {}", l.device.display(), l.backing_file));
        let processes = self.processes.iter().map(|(pid, command)| {
            format!("process {pid} ({})", command.chars().take(60).collect::<String>())
        });
        let directory = self.directory_remains.then(|| "the work directory".to_owned());
        mounts.chain(loops).chain(processes).chain(directory).collect()
    }
}

/// Unmounts everything mounted under `directory` (deepest first), then detaches every loop
/// device backed by a file under it. Failures are logged: this runs on the way out.
pub fn release(directory: &Path) {
    let mut mounts = mounts_under(directory);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_point.as_os_str().len()));
    for mount in mounts {
        log::warn!("unmounting {}, left mounted", mount.mount_point.display());
        quietly("umount", &[mount.mount_point.as_os_str()]);
    }
    for device in loop_devices_under(directory) {
        log::warn!("detaching {}, left attached", device.device.display());
        quietly("losetup", &["--detach".as_ref(), device.device.as_os_str()]);
    }
}

fn quietly(program: &str, args: &[&std::ffi::OsStr]) {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => log::warn!("{program} {args:?}: {status}"),
        Err(error) => log::warn!("cannot run {program}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_left_under_a_fresh_directory() {
        let directory = tempfile::tempdir().unwrap();
        let found = Leftovers::find(directory.path());
        assert!(found.describe().is_empty(), "{:?}", found.describe());
    }

    #[test]
    fn a_process_working_under_the_directory_is_found() {
        let directory = tempfile::tempdir().unwrap();
        let mut child =
            Command::new("sleep").arg("5").current_dir(directory.path()).spawn().unwrap();
        let found = processes_under(directory.path());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.iter().any(|(pid, _)| *pid == child.id()), "{found:?}");
    }
}
