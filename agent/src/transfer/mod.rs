//! Moving a btrfs volume's bytes to another node by push and handoff (Flocker's 2-phase push):
//! the owner sends a read-only snapshot while the task still writes ([`plan::Phase::PreCopy`]),
//! then, after the unmount, a last snapshot's difference ([`plan::Phase::Final`]); the receiver
//! makes a volume only of a complete, verified copy ([`promote`]). Local only: the bytes go to any
//! `Write` and come from any `Read`.
//!
//! - [`plan`] decides what to send (pure);
//! - [`stream`] hashes the stream and follows its framing (pure);
//! - [`snapshots`] takes, lists, promotes and removes subvolumes; [`send()`] and [`receive()`]
//!   run `btrfs send` and `btrfs receive`.
//!
//! In a pool (a mounted btrfs), this module owns one directory per dataset:
//!
//! ```text
//! <pool>/snapshots/<dataset_id>/<generation>   read-only snapshots, taken here (no received_uuid)
//!                                              or received (read-only with a received_uuid
//!                                              once complete), under the sender's name
//! <pool>/snapshots/<dataset_id>/promoting-<volume>   a volume being made, until renamed into
//! <pool>/volumes/<volume>                      a writable volume (the backend's)
//! ```
//!
//! Taken and received snapshots live side by side because `btrfs receive` runs confined to the
//! dataset's directory (`-C`, a chroot): a stream comes from another node, and its paths and
//! links must not reach anything else. A difference's parent must then be in that directory,
//! whether it was received (a move on) or taken here (a move back). A received snapshot cannot
//! be moved elsewhere anyway: btrfs refuses to move a read-only subvolume to another directory
//! (its `..` would change), and it must stay read-only to be the parent of the next difference.
//! Everything writable in a dataset's directory is a leftover of a receive or a promotion; one
//! lock per dataset (`flock` on that directory) keeps a receive, a promotion and
//! [`cleanup_incoming`] from meeting there.

mod child;
pub mod duties;
pub mod incoming;
pub mod outgoing;
pub mod plan;
mod receive;
mod send;
pub mod snapshots;
pub mod stream;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flocker_api::DatasetId;
use flocker_host::PathError;

use crate::command::CommandError;

pub use receive::{Received, receive, receive_trailed};
pub use send::{Sent, send};
pub use snapshots::{Snapshot, cleanup_incoming, promote, remove_snapshot, take_snapshot};

/// Snapshot, delete, show: metadata operations that return at once.
const QUICK: Duration = Duration::from_secs(60);
/// A sync writes whatever is dirty, and listing a large volume's extents takes a while.
const SLOW: Duration = Duration::from_secs(600);

/// A mounted btrfs file system holding volumes, and where this module keeps things in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    root: PathBuf,
}

impl Pool {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_owned() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where every snapshot of the pool's datasets is kept.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Where `dataset`'s snapshots are kept, taken and received, and where it is received.
    pub fn snapshots_of(&self, dataset: &DatasetId) -> PathBuf {
        self.snapshots().join(dataset.to_string())
    }

    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// `dataset`'s writable volume in `volumes/` (the backend's `<dataset_id>_<bytes>`), if any.
    pub fn volume_of(&self, dataset: &DatasetId) -> Result<Option<PathBuf>, TransferError> {
        let volumes = self.volumes();
        let entries = match std::fs::read_dir(&volumes) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PathError::new("list", &volumes, e).into()),
        };
        let ours = |name: &std::ffi::OsStr| {
            name.to_str()
                .and_then(crate::backend::btrfs::parse_name)
                .is_some_and(|(id, _)| id == *dataset)
        };
        Ok(entries.filter_map(Result::ok).find(|e| ours(&e.file_name())).map(|e| e.path()))
    }
}

/// A transfer step that did not happen; nothing half done is left behind (see each variant).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("cannot write the stream of {} after {bytes} bytes; btrfs send was stopped", snapshot.display())]
    Write {
        snapshot: PathBuf,
        bytes: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the stream for dataset {dataset} after {bytes} bytes; nothing was kept")]
    Read {
        dataset: DatasetId,
        bytes: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "the stream for dataset {dataset} stopped after {bytes} bytes, before its end (was the \
         sender stopped?); nothing was kept"
    )]
    Truncated { dataset: DatasetId, bytes: u64 },
    #[error("the stream for dataset {dataset} is not one btrfs snapshot; nothing was kept")]
    Malformed {
        dataset: DatasetId,
        #[source]
        problem: stream::Malformed,
    },
    #[error("the stream for dataset {dataset} makes '{name}', not a snapshot (ten digits)")]
    BadName { dataset: DatasetId, name: String },
    #[error(
        "the stream for dataset {dataset} has SHA-256 {actual}, not the sender's {expected}; the \
         copy was deleted"
    )]
    DigestMismatch { dataset: DatasetId, expected: stream::Digest, actual: stream::Digest },
    #[error("btrfs receive into {} failed; the partial copy was deleted", directory.display())]
    Receive {
        directory: PathBuf,
        #[source]
        source: CommandError,
    },
    #[error("{} is there already (received, or taken here); a snapshot is never replaced", path.display())]
    AlreadyReceived { path: PathBuf },
    #[error("{} is not a complete received snapshot ({problem}); it was deleted", path.display())]
    Incomplete { path: PathBuf, problem: String },
    #[error("{} exists, and a volume is never replaced", path.display())]
    VolumeExists { path: PathBuf },
    #[error("{} is in use by another transfer of the same dataset", path.display())]
    Busy { path: PathBuf },
    #[error("'{name}' is not a volume name (one path component)")]
    BadVolumeName { name: String },
    #[error("cannot understand `btrfs subvolume show {}`: {problem}", path.display())]
    Unparsable { path: PathBuf, problem: String },
}

/// How far a send has come: "412 MiB of 1 GiB".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub sent: u64,
    /// What [`snapshots::estimate`] expects the stream to carry, if known.
    pub estimate: Option<u64>,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&flocker_api::units::progress(self.sent, self.estimate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_people_say_it() {
        let progress = Progress { sent: 412 << 20, estimate: Some(1 << 30) };
        assert_eq!(progress.to_string(), "412 MiB of 1 GiB");
        let progress = Progress { sent: 3 << 29, estimate: None };
        assert_eq!(progress.to_string(), "1.5 GiB");
        assert_eq!(Progress { sent: 10, estimate: Some(2048) }.to_string(), "10 B of 2 KiB");
    }
}
