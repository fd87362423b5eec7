//! The directories under `root_path` and the names of volumes in them, shared by both backends.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use flocker_api::DatasetId;

use super::{Attachment, BackendError, Volume};

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
        Ok(Self { root, instance: instance.to_owned(), prefix })
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
