//! The btrfs backend's pools: each node's own btrfs, a sparse file in its directory that its
//! agent puts on a free loop device, formats and mounts at `pool/` when it starts. An agent
//! never unmounts its pool (on a host it holds the node's volumes for good), so the demo lets
//! go of both once the agents stopped: it unmounts each pool and detaches its loop device.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::demo::workdir::WorkDir;
use crate::demo::{Node, machine};

/// How long the kernel may take to let go of a loop device once detached.
const DETACH_WAIT: Duration = Duration::from_secs(5);

/// A node's pool as the agent set it up: mounted at `pool/` from a loop device on `pool.img`.
pub fn describe(work: &WorkDir, node: Node) -> anyhow::Result<String> {
    let pool = work.pool(node);
    let mount = machine::mount_at(&pool)
        .with_context(|| format!("{node}'s pool is not mounted at {}", pool.display()))?;
    ensure!(mount.fs_type == "btrfs", "{node}'s pool is {}, not btrfs", mount.fs_type);
    let file = work.pool_file(node);
    let devices = loop_devices_of(&file);
    ensure!(!devices.is_empty(), "no loop device serves {}", file.display());
    let size =
        std::fs::metadata(&file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(format!(
        "its pool {}: btrfs on {}, a loop device on {} ({}, sparse)",
        work.show(&pool),
        mount.source,
        work.show(&file),
        flocker_api::units::binary_size(size.len())
    ))
}

/// Unmounts both pools and detaches their loop devices: a line per node on what it did. An
/// error if a pool stays mounted or its loop device attached.
pub fn release(work: &WorkDir) -> anyhow::Result<Vec<String>> {
    Node::BOTH.iter().map(|node| release_pool(work, *node, Wait::ForDetach)).collect()
}

/// [`release`] on the way out of a failed demo, where a volume may still be mounted from a
/// pool and keep its loop device busy: the device then goes once that mount does (the demo's
/// clean-up unmounts it, and says it was left behind). What cannot be let go of is logged.
pub fn release_quietly(work: &WorkDir) {
    for node in Node::BOTH {
        if let Err(error) = release_pool(work, node, Wait::No) {
            log::warn!("{node}'s pool: {error:#}");
        }
    }
}

/// Whether to wait until the kernel let go of a detached loop device.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    ForDetach,
    No,
}

fn release_pool(work: &WorkDir, node: Node, wait: Wait) -> anyhow::Result<String> {
    let (pool, file) = (work.pool(node), work.pool_file(node));
    let mut done = Vec::new();
    if let Some(mount) = machine::mount_at(&pool) {
        run("umount", &[pool.as_os_str()])?;
        done.push(format!("unmounted from {}", work.show(&pool)));
        log::debug!("{} unmounted (it was {} on {})", pool.display(), mount.fs_type, mount.source);
    }
    for device in loop_devices_of(&file) {
        run("losetup", &["--detach".as_ref(), device.as_os_str()])?;
        done.push(format!("{} detached", device.display()));
    }
    // A device still in use is only marked to go when its last user lets go of it.
    let deadline = Instant::now() + DETACH_WAIT;
    while let Some(device) = loop_devices_of(&file).first().filter(|_| wait == Wait::ForDetach) {
        ensure!(
            Instant::now() < deadline,
            "{} still serves {} {DETACH_WAIT:?} after it was detached",
            device.display(),
            file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(mount) = machine::mount_at(&pool) {
        anyhow::bail!("{} is still mounted (from {})", pool.display(), mount.source);
    }
    Ok(match done.is_empty() {
        true => format!("{node}'s pool: neither mounted nor on a loop device any more"),
        false => format!("{node}'s pool: {}", done.join(", ")),
    })
}

/// Runs `program` with `args`; an error with what it said if it fails.
fn run(program: &str, args: &[&OsStr]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    ensure!(
        output.status.success(),
        "`{program} {}` failed ({}): {}",
        shown.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// The loop devices backed by `file`.
fn loop_devices_of(file: &Path) -> Vec<PathBuf> {
    machine::loop_devices_under(file)
        .into_iter()
        .filter(|d| Path::new(&d.backing_file) == file)
        .map(|d| d.device)
        .collect()
}
