//! The directory backend: a plain directory per dataset (`dataset-<dataset_id>_<bytes>`, the size
//! only recorded), for laptops and quick starts. It appears at `<mount_root>/<dataset_id>` by a
//! bind mount (as root) or a symbolic link (otherwise). There is no file system to make and no
//! quota: the size is what the dataset asked for, not a limit.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flocker_api::DatasetId;
use nix::mount::MsFlags;

use super::layout::{Layout, NEEDS_NOREPLACE, sync_directory};
use super::loopback::unmount;
use super::{Attachment, Backend, BackendError, Filesystem, VOLUME_ROOT_MODE, Volume, mount_point};
use crate::config::MountMode;
use flocker_host::mounts::MountTable;

pub struct Directory {
    layout: Layout,
    mode: MountMode,
}

impl Directory {
    pub fn new(root: &Path, instance: &str, mode: MountMode) -> Result<Self, BackendError> {
        let layout = Layout::new(root, instance, "dataset-")?;
        if layout.without_noreplace {
            let problem = NEEDS_NOREPLACE.to_owned();
            return Err(BackendError::Refused { path: layout.root().to_owned(), problem });
        }
        Ok(Self { layout, mode })
    }

    /// Points `target` at `source` atomically (a temporary link renamed into place). Only an
    /// absent target, or a link of ours, is replaced.
    fn link(&self, source: &Path, target: &Path) -> Result<(), BackendError> {
        mount_point::make_root(target)?;
        match fs::symlink_metadata(target) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Ok(_) if self.is_our_link(target) => {}
            Ok(_) => {
                let problem = "something that is not our link is in the way".into();
                return Err(BackendError::Refused { path: target.to_owned(), problem });
            }
            Err(e) => return Err(BackendError::io("inspect", target)(e)),
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let root = target.parent().unwrap_or(Path::new("/"));
        let temporary: PathBuf = root.join(format!(".linking-{name}"));
        let _ = fs::remove_file(&temporary);
        std::os::unix::fs::symlink(source, &temporary)
            .map_err(BackendError::io("link", &temporary))?;
        fs::rename(&temporary, target).map_err(BackendError::io("link", target))?;
        sync_directory(root)
    }

    /// Whether `path` is a symbolic link into this backend's root (so ours to remove).
    fn is_our_link(&self, path: &Path) -> bool {
        fs::read_link(path).is_ok_and(|target| target.starts_with(self.layout.root()))
    }
}

/// A new, empty volume directory, as on a fresh loopback volume: the agent's user (root) owns
/// it and alone may write it (0755), so a task gets no more access than it asked for (the
/// isolator gives a fresh volume's root to the task's user). Created exclusively, so a name in
/// use is never taken over.
fn make_volume_directory(path: &Path) -> Result<(), BackendError> {
    fs::DirBuilder::new()
        .mode(VOLUME_ROOT_MODE)
        .create(path)
        .map_err(BackendError::io("create", path))?;
    // Whatever the umask.
    fs::set_permissions(path, fs::Permissions::from_mode(VOLUME_ROOT_MODE))
        .map_err(BackendError::io("set the mode of", path))
}

impl Backend for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn blockdevice_id(&self, dataset_id: &DatasetId) -> String {
        format!("dataset-{dataset_id}")
    }

    fn list(&self) -> Result<Vec<Volume>, BackendError> {
        self.layout.list(|path| Some(path.to_owned()))
    }

    fn create(&self, dataset_id: &DatasetId, size: u64) -> Result<(), BackendError> {
        let temporary = self.layout.temporary_for_creating(dataset_id, size);
        let made = make_volume_directory(&temporary)
            .and_then(|()| self.layout.publish(&temporary, dataset_id, size));
        if made.is_err() {
            // Ours alone and still empty: nobody else knows the name.
            let _ = fs::remove_dir(&temporary);
        }
        made
    }

    fn attach(&self, volume: &Volume) -> Result<(), BackendError> {
        match &volume.attachment {
            Attachment::Unattached => self.layout.attach(volume).map(drop),
            Attachment::Here { .. } => Ok(()),
            Attachment::Elsewhere(other) => Err(BackendError::Refused {
                path: self.layout.path_of(volume),
                problem: format!("attached to {other}"),
            }),
        }
    }

    fn detach(&self, volume: &Volume) -> Result<(), BackendError> {
        if !matches!(volume.attachment, Attachment::Here { .. }) {
            return Ok(());
        }
        self.layout.detach(volume)
    }

    /// Moves the directory out of sight first (atomic), then deletes it.
    fn destroy(&self, volume: &Volume) -> Result<(), BackendError> {
        if volume.attachment != Attachment::Unattached {
            let path = self.layout.path_of(volume);
            return Err(BackendError::Refused { path, problem: "still attached".into() });
        }
        let doomed = self.layout.hide_for_destruction(volume)?;
        fs::remove_dir_all(&doomed).map_err(BackendError::io("remove", &doomed))
    }

    fn filesystem(&self, _source: &Path) -> Result<Filesystem, BackendError> {
        Ok(Filesystem::Ours)
    }

    fn format(&self, _source: &Path) -> Result<(), BackendError> {
        Ok(())
    }

    fn mount(&self, source: &Path, target: &Path) -> Result<(), BackendError> {
        match self.mode {
            MountMode::Bind => {
                mount_point::prepare(target)?;
                nix::mount::mount(
                    Some(source),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| BackendError::io("bind-mount", target)(errno.into()))
            }
            MountMode::Symlink => self.link(source, target),
        }
    }

    fn unmount(&self, target: &Path) -> Result<(), BackendError> {
        match self.mode {
            MountMode::Bind => unmount(target),
            MountMode::Symlink if self.is_our_link(target) => {
                fs::remove_file(target).map_err(BackendError::io("remove", target))
            }
            MountMode::Symlink => Ok(()),
        }
    }

    fn is_mounted(&self, source: &Path, target: &Path, mounts: &MountTable) -> bool {
        match self.mode {
            MountMode::Bind => {
                let identity = |path: &Path| fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
                mounts.at(target).is_some()
                    && identity(target).is_some()
                    && identity(target) == identity(source)
            }
            MountMode::Symlink => fs::read_link(target).is_ok_and(|to| to == source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_volume_directory_is_its_owners_alone_to_write_and_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("dataset-new");
        make_volume_directory(&volume).unwrap();
        let metadata = fs::metadata(&volume).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o7777, 0o755);
        assert_eq!(metadata.uid(), nix::unistd::geteuid().as_raw(), "the agent's user owns it");
        assert!(make_volume_directory(&volume).is_err(), "a name in use is not taken over");
    }
}
