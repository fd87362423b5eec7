//! Setting up the node's btrfs pool when the agent starts: find it mounted, or mount it from
//! its device or from a file of ours on a loop device, formatting only what holds nothing, and
//! turn quotas on (a dataset's `maximum_size` is a qgroup limit). I/O only; every step can be
//! repeated, so a restart after a crash at any point carries on.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flocker_host::mounts::MountTable;
use nix::mount::MsFlags;

use super::super::loopback::{Loopback, attach_loop_device};
use super::super::{BackendError, path_str};
use crate::command::{self, CommandError};
use crate::config::PoolSource;

const QUICK: Duration = Duration::from_secs(30);
/// mkfs.btrfs discards (TRIMs) the whole device first.
const FORMAT: Duration = Duration::from_secs(600);

/// What a device holds, as `blkid -p` finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Blank,
    Btrfs,
    /// Another file system, or a partition table: never formatted.
    Other(String),
}

/// Makes `pool` (made, 0700, if missing) a mounted btrfs with quotas on, from `source`; the
/// pool's path as the mount table has it (canonical).
pub fn set_up(pool: &Path, source: &PoolSource) -> Result<PathBuf, BackendError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(pool)
        .map_err(BackendError::io("create", pool))?;
    let pool = &fs::canonicalize(pool).map_err(BackendError::io("resolve", pool))?;
    let mounts = mount_table()?;
    if let Some(mount) = mounts.at(pool) {
        if mount.fs_type != "btrfs" {
            let problem = format!("a {} file system is mounted there, not btrfs", mount.fs_type);
            return Err(refused(pool, problem));
        }
        check_mounted_source(pool, &mount.source, source)?;
    } else {
        let device = match source {
            PoolSource::Mounted => {
                let problem = "is not a mounted btrfs: mount one there, or give pool_device or \
                               pool_file in agent.yml";
                return Err(refused(pool, problem.into()));
            }
            PoolSource::Device(device) => device.clone(),
            PoolSource::File { path, size } => {
                make_pool_file(path, *size)?;
                loop_device_of(path)?
            }
        };
        match content(&device)? {
            Content::Blank => format(&device)?,
            Content::Btrfs => {}
            Content::Other(kind) => {
                let problem = format!(
                    "holds {kind}, not btrfs: it is never formatted (give a blank device, or \
                     one holding the pool)"
                );
                return Err(refused(&device, problem));
            }
        }
        mount(&device, pool)?;
    }
    command::run("btrfs", &["quota", "enable", path_str(pool)?], QUICK)?;
    Ok(pool.clone())
}

/// A pool mounted already must be the one configured: a pool file mounted from another file
/// is refused (a wrong pool would show other volumes); a device is only compared by name,
/// since a btrfs of several devices names just one of them in the mount table.
fn check_mounted_source(
    pool: &Path,
    mounted: &str,
    source: &PoolSource,
) -> Result<(), BackendError> {
    match source {
        PoolSource::Mounted => Ok(()),
        PoolSource::Device(device) => {
            let same = fs::canonicalize(device).ok() == fs::canonicalize(mounted).ok();
            if !same {
                log::warn!(
                    "{} is mounted from {mounted}, not from pool_device {}; using it as it is",
                    pool.display(),
                    device.display()
                );
            }
            Ok(())
        }
        PoolSource::File { path, .. } => {
            let file = fs::canonicalize(path).map_err(BackendError::io("resolve", path))?;
            let devices = Loopback::loop_devices().remove(&file).unwrap_or_default();
            if devices.iter().any(|d| Path::new(mounted) == d) {
                Ok(())
            } else {
                let problem = format!(
                    "a btrfs from {mounted} is mounted there, not from pool_file {}",
                    path.display()
                );
                Err(refused(pool, problem))
            }
        }
    }
}

/// Creates the pool file, sparse, readable by root alone, unless it is there.
fn make_pool_file(path: &Path, size: u64) -> Result<(), BackendError> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(BackendError::io("create", parent))?;
    }
    let file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let metadata = fs::metadata(path).map_err(BackendError::io("inspect", path))?;
            if !metadata.is_file() {
                return Err(refused(path, "is not a regular file".into()));
            }
            if metadata.len() != size {
                log::warn!(
                    "{} has {} bytes, not pool_size {size}; it is used as it is",
                    path.display(),
                    metadata.len()
                );
            }
            return Ok(());
        }
        Err(e) => return Err(BackendError::io("create", path)(e)),
    };
    file.set_len(size).and_then(|()| file.sync_all()).map_err(BackendError::io("size", path))
}

/// The loop device serving `file`: the one a previous run attached, or a free one now.
fn loop_device_of(file: &Path) -> Result<PathBuf, BackendError> {
    let canonical = fs::canonicalize(file).map_err(BackendError::io("resolve", file))?;
    let attached = Loopback::loop_devices().remove(&canonical).and_then(|d| d.into_iter().next());
    match attached {
        Some(device) => {
            log::info!("{} is on {} already", file.display(), device.display());
            Ok(device)
        }
        None => attach_loop_device(&canonical),
    }
}

/// What `device` holds, from `blkid -p` (the device itself, never blkid's cache).
pub fn content(device: &Path) -> Result<Content, BackendError> {
    match command::run("blkid", &["-p", "-o", "export", path_str(device)?], QUICK) {
        Ok(export) => Ok(parse_blkid(&export)),
        // blkid's "nothing found"
        Err(CommandError::Failed { code: Some(2), .. }) => Ok(Content::Blank),
        Err(error) => Err(error.into()),
    }
}

/// `blkid -o export`: `KEY=value` lines. Anything found that is not a btrfs counts as data.
fn parse_blkid(export: &str) -> Content {
    let value = |key: &str| {
        export.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('=')).map(str::trim)
    };
    match (value("TYPE"), value("PTTYPE")) {
        (Some("btrfs"), _) => Content::Btrfs,
        (Some(kind), _) => Content::Other(format!("a file system ({kind})")),
        (None, Some(table)) => Content::Other(format!("a partition table ({table})")),
        (None, None) => Content::Other(format!("something blkid recognises ({})", export.trim())),
    }
}

/// `mkfs.btrfs` without `-f`: it refuses by itself, too, to overwrite a file system it finds.
fn format(device: &Path) -> Result<(), BackendError> {
    log::info!("{} is blank: making a btrfs on it", device.display());
    command::run("mkfs.btrfs", &["-q", "-L", "flocker", path_str(device)?], FORMAT)?;
    Ok(())
}

/// Mounts the pool at `pool`, never over files already there.
fn mount(device: &Path, pool: &Path) -> Result<(), BackendError> {
    if fs::read_dir(pool).map_err(BackendError::io("read", pool))?.next().is_some() {
        return Err(refused(
            pool,
            "is not empty: a pool mounted there would hide its files".into(),
        ));
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    nix::mount::mount(Some(device), pool, Some("btrfs"), flags, None::<&str>)
        .map_err(|errno| BackendError::io("mount the btrfs pool at", pool)(errno.into()))?;
    log::info!("btrfs pool {} mounted from {}", pool.display(), device.display());
    Ok(())
}

pub(super) fn mount_table() -> Result<MountTable, BackendError> {
    MountTable::read().map_err(BackendError::io("read", Path::new("/proc/self/mountinfo")))
}

fn refused(path: &Path, problem: String) -> BackendError {
    BackendError::Refused { path: path.to_owned(), problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_blkid_finds_nothing_on_is_blank_and_only_btrfs_is_the_pool() {
        let btrfs =
            "DEVNAME=/dev/loop2\nUUID=2ead79d9\nBLOCK_SIZE=4096\nTYPE=btrfs\nUSAGE=filesystem\n";
        assert_eq!(parse_blkid(btrfs), Content::Btrfs);
        let ext4 = "DEVNAME=/dev/loop3\nUUID=1\nTYPE=ext4\nUSAGE=filesystem\n";
        assert_eq!(parse_blkid(ext4), Content::Other("a file system (ext4)".into()));
        let gpt = "DEVNAME=/dev/sdb\nPTUUID=abc\nPTTYPE=gpt\n";
        assert_eq!(parse_blkid(gpt), Content::Other("a partition table (gpt)".into()));
        assert!(matches!(parse_blkid("DEVNAME=/dev/sdc\nPART_ENTRY_NAME=x\n"), Content::Other(_)));
    }
}
