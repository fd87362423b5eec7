//! Where volumes live, behind one trait: [`loopback`] (a sparse file, a loop device, ext4),
//! [`directory`] (a plain directory) and [`btrfs`] (a subvolume in the node's own pool, see
//! there). The first two keep Flocker's layout under `root_path`:
//!
//! ```text
//! <root_path>/unattached/<volume>                       exists, attached to no node
//! <root_path>/attached/<compute_instance_id>/<volume>   attached to that node
//! ```
//!
//! A volume's name carries its dataset and size (`block-<dataset_id>_<bytes>` for loopback).
//! Attaching and detaching are renames between those directories, atomic on one file system, so
//! when `root_path` is shared by several nodes a move is a detach on one and an attach on the
//! other, with real block-device semantics: a volume is attached to one node at a time.

pub mod btrfs;
pub mod directory;
mod layout;
pub mod loopback;
mod mount_point;

use std::path::{Path, PathBuf};

use flocker_api::DatasetId;

use crate::command::CommandError;
use flocker_host::PathError;
use flocker_host::mounts::MountTable;

/// The mode of a new volume's root: its owner, the agent's user (root), writes; others may
/// only read and enter.
pub const VOLUME_ROOT_MODE: u32 = 0o755;

/// A volume as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Volume {
    pub dataset_id: DatasetId,
    pub size: u64,
    pub attachment: Attachment,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attachment {
    Unattached,
    /// Attached to another node (its compute instance id).
    Elsewhere(String),
    /// Attached to this node: `source` is what to format and mount, `None` while the attachment
    /// is half done (the file moved, no loop device yet).
    Here {
        source: Option<PathBuf>,
    },
}

/// What an attached volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filesystem {
    /// Nothing: it may be formatted.
    Empty,
    /// The file system we mount.
    Ours,
    /// Something else: never formatted, never mounted.
    Foreign(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{} is busy: something still uses the volume", path.display())]
    Busy { path: PathBuf },
    #[error("{}: {problem}", path.display())]
    Refused { path: PathBuf, problem: String },
    /// A move found its new name taken: another node put a volume there.
    #[error(
        "{} exists, and a volume is never replaced: {} stays where it is (if both are volumes of \
         one dataset, keep the one that holds its data and move the other out of root_path)",
        to.display(),
        from.display()
    )]
    WouldReplace { from: PathBuf, to: PathBuf },
    #[error(
        "the volumes under {} kept moving while they were listed ({listings} listings in a row \
         differed); looking again",
        root.display()
    )]
    Unsettled { root: PathBuf, listings: usize },
}

impl BackendError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let at = PathError::at(action, path);
        move |source| Self::Io(at(source))
    }
}

/// `Sync`: the step workers ([`crate::steps`]) share one backend, each working on another
/// dataset's volume at a time. A backend holds only its paths; what two steps share is on disk
/// and in the kernel (directories, loop devices), where each change is atomic or retried.
pub trait Backend: Send + Sync {
    /// `loopback`, `directory`, `btrfs`.
    fn name(&self) -> &'static str;

    /// Whether a volume reaches another node as a copy, its storage being this node's alone
    /// (btrfs), rather than by a detach here and an attach there on shared storage. Such a
    /// volume is never detached, and is kept here until it has been copied.
    fn moves_by_copy(&self) -> bool {
        false
    }

    /// The id under which the control service records a dataset's volume.
    fn blockdevice_id(&self, dataset_id: &DatasetId) -> String;

    /// Every volume this node can see.
    fn list(&self) -> Result<Vec<Volume>, BackendError>;

    /// Makes a new, unattached volume holding an empty file system, all at once: a crash leaves
    /// either no volume or a complete one.
    fn create(&self, dataset_id: &DatasetId, size: u64) -> Result<(), BackendError>;

    /// Attaches a volume to this node, or completes a half-done attachment.
    fn attach(&self, volume: &Volume) -> Result<(), BackendError>;

    /// Detaches a volume from this node (it must not be mounted).
    fn detach(&self, volume: &Volume) -> Result<(), BackendError>;

    /// Destroys an unattached volume and the data in it.
    fn destroy(&self, volume: &Volume) -> Result<(), BackendError>;

    /// What an attached volume's source holds.
    fn filesystem(&self, source: &Path) -> Result<Filesystem, BackendError>;

    /// Makes a file system on an attached source; refuses if it already holds one.
    fn format(&self, source: &Path) -> Result<(), BackendError>;

    /// Makes `source` appear at `target`.
    fn mount(&self, source: &Path, target: &Path) -> Result<(), BackendError>;

    /// Undoes [`Backend::mount`]; [`BackendError::Busy`] while something uses it.
    fn unmount(&self, target: &Path) -> Result<(), BackendError>;

    /// Whether `target` really shows `source` now.
    fn is_mounted(&self, source: &Path, target: &Path, mounts: &MountTable) -> bool;
}

/// A path as a command's argument: the tools take UTF-8 here.
pub(crate) fn path_str(path: &Path) -> Result<&str, BackendError> {
    path.to_str().ok_or_else(|| BackendError::Refused {
        path: path.to_owned(),
        problem: "the path is not UTF-8".into(),
    })
}
