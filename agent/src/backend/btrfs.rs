//! The btrfs backend: a subvolume per dataset in the node's own btrfs pool, its size a qgroup
//! limit, bind-mounted at `<mount_root>/<dataset_id>`. Needs root.
//!
//! ```text
//! <pool>/volumes/<dataset_id>_<bytes>   a dataset's subvolume (the size in the name, as loopback)
//! <pool>/.creating/<name>               being made: published by a rename once whole
//! <pool>/.deleting/<name>               being destroyed
//! ```
//!
//! The pool is this node's alone, so a volume is always attached here: there is nothing to
//! attach or detach, and a volume reaches another node by a copy (`btrfs send`/`receive`, not
//! in this backend yet), never by moving the storage. Until it is copied it stays here.

mod pool;

use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flocker_api::DatasetId;
use flocker_host::mounts::MountTable;
use flocker_host::no_replace;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, fstat};

use super::layout::sync_directory;
use super::{
    Attachment, Backend, BackendError, Filesystem, VOLUME_ROOT_MODE, Volume, mount_point, path_str,
};
use crate::command;
use crate::config::PoolSource;

const QUICK: Duration = Duration::from_secs(30);
/// Deleting a subvolume only unlinks it (the kernel frees its blocks later), but waits for
/// the transaction in progress.
const DELETE: Duration = Duration::from_secs(120);

/// The inode number of a subvolume's root directory on btrfs (`BTRFS_FIRST_FREE_OBJECTID`).
pub(crate) const SUBVOLUME_ROOT_INODE: u64 = 256;

pub struct Btrfs {
    /// Where the pool is mounted, canonical as in the mount table.
    pool: PathBuf,
}

impl Btrfs {
    /// Sets up the pool (see [`pool::set_up`]) and its directories, and deletes what a crash
    /// left half-made or half-destroyed.
    pub fn new(pool: &Path, source: &PoolSource) -> Result<Self, BackendError> {
        let backend = Self { pool: pool::set_up(pool, source)? };
        for directory in [backend.volumes(), backend.creating(), backend.deleting()] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&directory)
                .or_else(|e| if e.kind() == ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })
                .map_err(BackendError::io("create", &directory))?;
        }
        for leftovers in [backend.creating(), backend.deleting()] {
            let entries = fs::read_dir(&leftovers).map_err(BackendError::io("read", &leftovers))?;
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                log::info!("deleting {}, left by an agent that stopped half-way", path.display());
                delete_subvolume(&path)?;
            }
        }
        // Receives and promotions a crash cut short: never a copy to build on.
        match crate::transfer::cleanup_incoming(&crate::transfer::Pool::new(&backend.pool)) {
            Ok(deleted) => deleted.iter().for_each(|path| {
                log::info!("deleted {}, a copy a crash left unfinished", path.display())
            }),
            Err(error) => log::warn!("cannot look for unfinished copies: {error}"),
        }
        Ok(backend)
    }

    fn volumes(&self) -> PathBuf {
        self.pool.join("volumes")
    }

    fn creating(&self) -> PathBuf {
        self.pool.join(".creating")
    }

    fn deleting(&self) -> PathBuf {
        self.pool.join(".deleting")
    }

    fn path_of(&self, volume: &Volume) -> PathBuf {
        self.volumes().join(name(&volume.dataset_id, volume.size))
    }

    /// Whether `path` is one of our volumes: a subvolume directly under `volumes/`.
    fn is_our_volume(&self, path: &Path) -> bool {
        path.parent() == Some(self.volumes().as_path()) && is_subvolume(path)
    }

    fn mount_showing<'a>(&self, path: &Path, mounts: &'a MountTable) -> Option<&'a Path> {
        mount_showing(&self.pool, path, mounts)
    }

    /// Where the pool is mounted.
    pub fn pool(&self) -> &Path {
        &self.pool
    }
}

/// A mount in this mount namespace that shows the subvolume at `path` in the pool mounted at
/// `pool`, if any.
pub(crate) fn mount_showing<'a>(
    pool: &Path,
    path: &Path,
    mounts: &'a MountTable,
) -> Option<&'a Path> {
    let pool_mount = mounts.at(pool)?;
    let root = pool_mount.root.join(path.strip_prefix(pool).ok()?);
    mounts
        .under(Path::new("/"))
        .find(|mount| mount.device == pool_mount.device && mount.root == root)
        .map(|mount| mount.mount_point.as_path())
}

/// `<dataset_id>_<bytes>`.
pub(crate) fn name(dataset_id: &DatasetId, size: u64) -> String {
    format!("{dataset_id}_{size}")
}

pub(crate) fn parse_name(name: &str) -> Option<(DatasetId, u64)> {
    let (id, size) = name.split_once('_')?;
    Some((id.parse().ok()?, size.parse().ok()?))
}

fn is_subvolume(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOLUME_ROOT_INODE)
}

/// Deletes a subvolume of ours; a plain empty directory (a `subvolume create` cut short) is
/// removed, and anything else is refused.
fn delete_subvolume(path: &Path) -> Result<(), BackendError> {
    if is_subvolume(path) {
        command::run("btrfs", &["subvolume", "delete", path_str(path)?], DELETE)?;
        return Ok(());
    }
    fs::remove_dir(path).map_err(BackendError::io("remove", path))
}

impl Backend for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn moves_by_copy(&self) -> bool {
        true
    }

    fn blockdevice_id(&self, dataset_id: &DatasetId) -> String {
        format!("btrfs-{dataset_id}")
    }

    /// Every subvolume under `volumes/`, attached here; other names are passed over.
    fn list(&self) -> Result<Vec<Volume>, BackendError> {
        let volumes = self.volumes();
        let entries = fs::read_dir(&volumes).map_err(BackendError::io("read", &volumes))?;
        let mut found = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let parsed = entry.file_name().to_str().and_then(parse_name);
            match parsed {
                Some((dataset_id, size)) if is_subvolume(&path) => found.push(Volume {
                    dataset_id,
                    size,
                    attachment: Attachment::Here { source: Some(path) },
                }),
                _ => log::debug!("{} is not a volume of ours; passed over", path.display()),
            }
        }
        found.sort();
        Ok(found)
    }

    /// Made under `.creating/`, limited, then renamed into `volumes/`: a crash leaves no volume
    /// or a whole one (a btrfs transaction holds the rename with what came before it).
    fn create(&self, dataset_id: &DatasetId, size: u64) -> Result<(), BackendError> {
        let name = name(dataset_id, size);
        let temporary = self.creating().join(&name);
        if fs::symlink_metadata(&temporary).is_ok() {
            delete_subvolume(&temporary)?; // an earlier attempt's, failed half-way
        }
        command::run("btrfs", &["subvolume", "create", path_str(&temporary)?], QUICK)?;
        let made = (|| {
            fs::set_permissions(&temporary, fs::Permissions::from_mode(VOLUME_ROOT_MODE))
                .map_err(BackendError::io("set the mode of", &temporary))?;
            let limit = size.to_string();
            command::run("btrfs", &["qgroup", "limit", &limit, path_str(&temporary)?], QUICK)?;
            let published = self.volumes().join(&name);
            no_replace::rename(&temporary, &published).map_err(|e| {
                if e.kind() == ErrorKind::AlreadyExists {
                    BackendError::WouldReplace { from: temporary.clone(), to: published.clone() }
                } else {
                    BackendError::io("rename", &temporary)(e)
                }
            })?;
            sync_directory(&self.volumes())
        })();
        if made.is_err() {
            // Ours alone, never published: nobody else knows the name.
            let _ = delete_subvolume(&temporary);
        }
        made
    }

    /// Nothing to do: a volume in this node's pool is attached here from its creation.
    fn attach(&self, volume: &Volume) -> Result<(), BackendError> {
        match &volume.attachment {
            Attachment::Here { .. } => Ok(()),
            other => Err(BackendError::Refused {
                path: self.path_of(volume),
                problem: format!("a btrfs volume is always here, not {other:?}"),
            }),
        }
    }

    /// Nothing to do: the pool is not shared, so there is nothing to let go of. The plan never
    /// asks (a volume that moves away is kept until it is copied; see `calculate`).
    fn detach(&self, _volume: &Volume) -> Result<(), BackendError> {
        Ok(())
    }

    /// Renamed out of `volumes/` first (atomic), then deleted; refused while this namespace
    /// still shows it somewhere.
    fn destroy(&self, volume: &Volume) -> Result<(), BackendError> {
        let path = self.path_of(volume);
        if !self.is_our_volume(&path) {
            let problem = "is not a subvolume of ours; it is never deleted".into();
            return Err(BackendError::Refused { path, problem });
        }
        if let Some(shown) = self.mount_showing(&path, &pool::mount_table()?) {
            return Err(BackendError::Busy { path: shown.to_owned() });
        }
        let doomed = self.deleting().join(name(&volume.dataset_id, volume.size));
        if fs::symlink_metadata(&doomed).is_ok() {
            delete_subvolume(&doomed)?;
        }
        no_replace::rename(&path, &doomed).map_err(BackendError::io("rename", &path))?;
        sync_directory(&self.volumes())?;
        delete_subvolume(&doomed)
    }

    fn filesystem(&self, source: &Path) -> Result<Filesystem, BackendError> {
        Ok(if self.is_our_volume(source) {
            Filesystem::Ours
        } else {
            Filesystem::Foreign("not a subvolume of the btrfs pool".into())
        })
    }

    /// A subvolume is whole from its creation; nothing else is ever formatted.
    fn format(&self, source: &Path) -> Result<(), BackendError> {
        Err(BackendError::Refused {
            path: source.to_owned(),
            problem: "the btrfs backend never formats: a volume is a subvolume made whole by \
                      create"
                .into(),
        })
    }

    /// A bind mount, `nosuid,nodev`, made through a descriptor of the mount point opened
    /// without following a link, so a link put there is never mounted over.
    fn mount(&self, source: &Path, target: &Path) -> Result<(), BackendError> {
        if !self.is_our_volume(source) {
            let problem = "is not a subvolume of ours; it is never mounted".into();
            return Err(BackendError::Refused { path: source.to_owned(), problem });
        }
        mount_point::prepare(target)?;
        let point = open_mount_point(target)?;
        nix::mount::mount(
            Some(source),
            &fd_path(&point),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|errno| BackendError::io("bind-mount", target)(errno.into()))?;
        // A bind mount takes no flags of its own: they come with a remount of the new mount,
        // reached by opening the mount point again (the first descriptor shows what is below).
        let mounted = open_mount_point(target)?;
        let (shown, wanted) = (fstat(&mounted), fs::metadata(source));
        let same = match (&shown, &wanted) {
            (Ok(shown), Ok(wanted)) => shown.st_dev == wanted.dev() && shown.st_ino == wanted.ino(),
            _ => false,
        };
        if !same {
            let problem = "the mount point changed while the volume was mounted on it".into();
            return Err(BackendError::Refused { path: target.to_owned(), problem });
        }
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        nix::mount::mount(None::<&str>, &fd_path(&mounted), None::<&str>, flags, None::<&str>)
            .map_err(|errno| BackendError::io("make nosuid,nodev", target)(errno.into()))
    }

    /// `umount`, never forced nor lazy, never through a link.
    fn unmount(&self, target: &Path) -> Result<(), BackendError> {
        match nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => mount_point::remove(target),
            Err(Errno::EBUSY) => Err(BackendError::Busy { path: target.to_owned() }),
            Err(errno) => Err(BackendError::io("unmount", target)(errno.into())),
        }
    }

    /// Whether the mount at `target` is of the pool's file system with the subvolume `source`
    /// as its root.
    fn is_mounted(&self, source: &Path, target: &Path, mounts: &MountTable) -> bool {
        let (Some(mount), Some(pool)) = (mounts.at(target), mounts.at(&self.pool)) else {
            return false;
        };
        let Ok(relative) = source.strip_prefix(&self.pool) else { return false };
        mount.device == pool.device && mount.root == pool.root.join(relative)
    }
}

/// The directory at `target`, opened without following a link there; its parent (the
/// operator's `mount_root`) is trusted.
fn open_mount_point(target: &Path) -> Result<OwnedFd, BackendError> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        let problem = "is not a directory to mount on".into();
        return Err(BackendError::Refused { path: target.to_owned(), problem });
    };
    let directory = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = open(parent, directory, Mode::empty())
        .map_err(|errno| BackendError::io("open", parent)(errno.into()))?;
    match openat(&root, name, directory | OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP | Errno::ENOTDIR) => Err(BackendError::Refused {
            path: target.to_owned(),
            problem: "is a symbolic link or not a directory; it is never followed".into(),
        }),
        Err(errno) => Err(BackendError::io("open", target)(errno.into())),
    }
}

/// The path the kernel resolves to exactly the directory `fd` holds.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_name_carries_its_dataset_and_size_and_strays_are_not_volumes() {
        let id = DatasetId::random();
        assert_eq!(parse_name(&name(&id, 1 << 26)), Some((id, 1 << 26)));
        assert_eq!(parse_name(&format!("{id}")), None);
        assert_eq!(parse_name("lost+found"), None);
        assert_eq!(parse_name(&format!("{id}_big")), None);
    }

    #[test]
    fn a_link_at_the_mount_point_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = dir.path().join("d1");
        std::os::unix::fs::symlink(elsewhere.path(), &target).unwrap();
        let refused = open_mount_point(&target).unwrap_err();
        assert!(refused.to_string().contains("never followed"), "{refused}");
        fs::remove_file(&target).unwrap();
        fs::create_dir(&target).unwrap();
        open_mount_point(&target).unwrap();
    }
}
