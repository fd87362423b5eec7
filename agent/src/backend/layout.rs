//! The directories under `root_path` and the names of volumes in them, shared by both backends.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use flocker_api::DatasetId;

use super::{Attachment, BackendError, Volume};

/// How old a temporary file must be before it is taken for a crash's leftover.
const STALE: std::time::Duration = std::time::Duration::from_secs(3600);

/// `<root>/unattached`, `<root>/attached/<instance>`; volumes named `<prefix><id>_<size>`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    instance: String,
    prefix: &'static str,
}

impl Layout {
    /// Creates the directories if needed. The root is made canonical, as the kernel reports the
    /// backing files of loop devices.
    pub fn new(root: &Path, instance: &str, prefix: &'static str) -> Result<Self, BackendError> {
        for directory in [root.join("unattached"), root.join("attached").join(instance)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&directory)
                .map_err(BackendError::io("create", &directory))?;
        }
        let root = root.canonicalize().map_err(BackendError::io("resolve", root))?;
        let layout = Self { root, instance: instance.to_owned(), prefix };
        layout.remove_stale_temporaries();
        Ok(layout)
    }

    /// A crash can leave a volume half-made (`.creating-*`) or half-destroyed (`.destroying-*`).
    /// Those an hour old are nobody's work in progress, even with a shared root: remove them.
    fn remove_stale_temporaries(&self) {
        let stale = |path: &Path| {
            fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > STALE))
        };
        for directory in [self.root.clone(), self.unattached()] {
            for name in read_names(&directory).unwrap_or_default() {
                let path = directory.join(&name);
                if (name.starts_with(".creating-") || name.starts_with(".destroying-"))
                    && stale(&path)
                {
                    log::info!("removing {}, left by an interrupted operation", path.display());
                    let removed = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    if let Err(error) = removed {
                        log::warn!("cannot remove {}: {error}", path.display());
                    }
                }
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn name(&self, dataset_id: &DatasetId, size: u64) -> String {
        format!("{}{dataset_id}_{size}", self.prefix)
    }

    pub fn unattached(&self) -> PathBuf {
        self.root.join("unattached")
    }

    pub fn attached_here(&self) -> PathBuf {
        self.root.join("attached").join(&self.instance)
    }

    /// Where a volume is now: attached here, or unattached.
    pub fn path_of(&self, volume: &Volume) -> PathBuf {
        let directory = match volume.attachment {
            Attachment::Here { .. } => self.attached_here(),
            _ => self.unattached(),
        };
        directory.join(self.name(&volume.dataset_id, volume.size))
    }

    /// Every volume, with where it is attached; `here` finds the source of one attached here.
    pub fn list(
        &self,
        mut here: impl FnMut(&Path) -> Option<PathBuf>,
    ) -> Result<Vec<Volume>, BackendError> {
        let mut volumes = Vec::new();
        for (dataset_id, size, _) in self.entries(&self.unattached())? {
            volumes.push(Volume { dataset_id, size, attachment: Attachment::Unattached });
        }
        let attached = self.root.join("attached");
        for instance in read_names(&attached)? {
            for (dataset_id, size, path) in self.entries(&attached.join(&instance))? {
                let attachment = if instance == self.instance {
                    Attachment::Here { source: here(&path) }
                } else {
                    Attachment::Elsewhere(instance.clone())
                };
                volumes.push(Volume { dataset_id, size, attachment });
            }
        }
        Ok(volumes)
    }

    /// The volumes in one directory; other names (temporary files, strays) are passed over.
    fn entries(&self, directory: &Path) -> Result<Vec<(DatasetId, u64, PathBuf)>, BackendError> {
        Ok(read_names(directory)?
            .into_iter()
            .filter_map(|name| {
                let (id, size) = name.strip_prefix(self.prefix)?.split_once('_')?;
                Some((id.parse().ok()?, size.parse().ok()?, directory.join(&name)))
            })
            .collect())
    }

    /// Moves a volume between the two directories, durably.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), BackendError> {
        fs::rename(from, to).map_err(BackendError::io("move", from))?;
        for directory in [from.parent(), to.parent()].into_iter().flatten() {
            sync_directory(directory)?;
        }
        Ok(())
    }
}

fn read_names(directory: &Path) -> Result<Vec<String>, BackendError> {
    let entries = match fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackendError::io("read", directory)(e)),
    };
    Ok(entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
}

pub fn sync_directory(directory: &Path) -> Result<(), BackendError> {
    fs::File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(BackendError::io("sync", directory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn volumes_are_listed_with_their_attachment_and_strays_are_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        let (mine, theirs, free) = (DatasetId::random(), DatasetId::random(), DatasetId::random());
        fs::write(layout.attached_here().join(layout.name(&mine, 1024)), b"").unwrap();
        let other = layout.root().join("attached").join("node-b");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join(layout.name(&theirs, 2048)), b"").unwrap();
        fs::write(layout.unattached().join(layout.name(&free, 4096)), b"").unwrap();
        for stray in ["lost+found", ".creating-block-x_1", "block-notauuid_1", "block-ok"] {
            fs::write(layout.unattached().join(stray), b"").unwrap();
        }
        let mut volumes = layout.list(|path| Some(path.with_extension("dev"))).unwrap();
        volumes.sort_by_key(|v| v.size);
        let attachments: Vec<_> =
            volumes.iter().map(|v| (v.dataset_id, v.size, v.attachment.clone())).collect();
        let source = layout.attached_here().join(layout.name(&mine, 1024)).with_extension("dev");
        assert_eq!(
            attachments,
            [
                (mine, 1024, Attachment::Here { source: Some(source) }),
                (theirs, 2048, Attachment::Elsewhere("node-b".into())),
                (free, 4096, Attachment::Unattached),
            ]
        );
    }

    #[test]
    fn only_temporaries_an_hour_old_are_taken_for_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        let (old, fresh) = (
            layout.unattached().join(".creating-old"),
            layout.unattached().join(".creating-fresh"),
        );
        for path in [&old, &fresh] {
            fs::write(path, b"").unwrap();
        }
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        Layout::new(dir.path(), "node-a", "block-").unwrap();
        assert!(!old.exists());
        assert!(fresh.exists(), "another node may be creating it right now");
    }
}
