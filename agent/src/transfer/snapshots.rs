//! Subvolumes as this module keeps them: snapshots taken, snapshots received, volumes promoted
//! from them, and what a crash left in a dataset's directory.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flocker_api::DatasetId;
use flocker_host::{PathError, no_replace};
use nix::fcntl::{Flock, FlockArg};
use uuid::Uuid;

use super::plan::{Generation, Held};
use super::{Pool, QUICK, SLOW, TransferError};
use crate::backend::btrfs::SUBVOLUME_ROOT_INODE;
use crate::command;

/// What `btrfs subvolume show` says of a subvolume, the part we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvolume {
    pub uuid: Uuid,
    /// The `uuid` of the subvolume it is a snapshot of, if any.
    pub parent: Option<Uuid>,
    /// The sender's `uuid`, set by `btrfs receive` once the whole stream arrived.
    pub received_uuid: Option<Uuid>,
    pub readonly: bool,
    /// The transaction that created it ("Gen at creation"): extents written later are newer.
    pub created: u64,
}

impl Subvolume {
    /// Whether a received subvolume is whole: `btrfs receive` sets both at its very end.
    pub fn is_complete_receive(&self) -> bool {
        self.readonly && self.received_uuid.is_some()
    }

    /// Whether it is a snapshot taken here: read-only from birth, and never received.
    pub fn is_taken_here(&self) -> bool {
        self.readonly && self.received_uuid.is_none()
    }
}

/// A read-only snapshot of a dataset, taken here or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    pub dataset_id: DatasetId,
    pub generation: Generation,
    pub subvolume: Subvolume,
}

impl Snapshot {
    /// Its identity across nodes (see [`super::plan`]).
    pub fn held(&self) -> Held {
        let origin = self.subvolume.received_uuid.unwrap_or(self.subvolume.uuid);
        Held { generation: self.generation, origin }
    }
}

/// Takes read-only snapshot `generation` (chosen by [`super::plan::push_step`]) of the volume at
/// `volume`, durably: the kernel flushes the volume's dirty data into it and commits it, and the
/// sync that follows makes its name durable too.
pub fn take_snapshot(
    pool: &Pool,
    volume: &Path,
    dataset: &DatasetId,
    generation: Generation,
) -> Result<Snapshot, TransferError> {
    let directory = pool.snapshots_of(dataset);
    fs::create_dir_all(&directory).map_err(PathError::at("create", &directory))?;
    let path = directory.join(generation.to_string());
    command::run("btrfs", &["subvolume", "snapshot", "-r", text(volume)?, text(&path)?], QUICK)?;
    sync(pool)?;
    Ok(Snapshot { subvolume: show(&path)?, path, dataset_id: *dataset, generation })
}

/// The snapshots taken here of `dataset`, oldest first.
pub fn taken(pool: &Pool, dataset: &DatasetId) -> Result<Vec<Snapshot>, TransferError> {
    let all = list(&pool.snapshots_of(dataset), dataset)?;
    Ok(all.into_iter().filter(|s| s.subvolume.is_taken_here()).collect())
}

/// The complete snapshots of `dataset` received here, oldest first.
pub fn received(pool: &Pool, dataset: &DatasetId) -> Result<Vec<Snapshot>, TransferError> {
    let all = list(&pool.snapshots_of(dataset), dataset)?;
    Ok(all.into_iter().filter(|s| s.subvolume.is_complete_receive()).collect())
}

/// Every complete snapshot of `dataset` here, taken or received, oldest first: what this node
/// can send from or receive a difference onto.
pub fn complete(pool: &Pool, dataset: &DatasetId) -> Result<Vec<Snapshot>, TransferError> {
    let all = list(&pool.snapshots_of(dataset), dataset)?;
    Ok(all
        .into_iter()
        .filter(|s| s.subvolume.is_taken_here() || s.subvolume.is_complete_receive())
        .collect())
}

/// Deletes every snapshot of `dataset` and its directory, unless a transfer holds it now
/// ([`TransferError::Busy`]).
pub fn remove_all(pool: &Pool, dataset: &DatasetId) -> Result<(), TransferError> {
    let directory = pool.snapshots_of(dataset);
    if directory.symlink_metadata().is_err() {
        return Ok(());
    }
    let _lock = lock(&directory)?;
    for entry in fs::read_dir(&directory).map_err(PathError::at("list", &directory))? {
        let path = entry.map_err(PathError::at("list", &directory))?.path();
        let metadata = path.symlink_metadata().map_err(PathError::at("inspect", &path))?;
        if metadata.is_dir() && metadata.ino() == SUBVOLUME_ROOT_INODE {
            delete_subvolume(&path)?;
        } else {
            log::warn!("{} is not a subvolume; left alone", path.display());
            return Ok(());
        }
    }
    fs::remove_dir(&directory).map_err(PathError::at("remove", &directory))?;
    Ok(())
}

/// The datasets that have a directory of snapshots here.
pub fn datasets_with_snapshots(pool: &Pool) -> Result<Vec<DatasetId>, TransferError> {
    let directory = pool.snapshots();
    let entries = match fs::read_dir(&directory) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PathError::new("list", &directory, e).into()),
    };
    let names = entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok());
    Ok(names.filter_map(|name| name.parse().ok()).collect())
}

fn list(directory: &Path, dataset: &DatasetId) -> Result<Vec<Snapshot>, TransferError> {
    let entries = match fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PathError::new("list", directory, e).into()),
    };
    let mut snapshots = Vec::new();
    for entry in entries {
        let entry = entry.map_err(PathError::at("list", directory))?;
        let Some(generation) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue; // a promotion under way, or not ours
        };
        let path = entry.path();
        snapshots.push(Snapshot {
            subvolume: show(&path)?,
            path,
            dataset_id: *dataset,
            generation,
        });
    }
    snapshots.sort_by_key(|snapshot| snapshot.generation);
    Ok(snapshots)
}

/// Deletes a snapshot (taken or received); the space comes back in the background.
pub fn remove_snapshot(snapshot: &Snapshot) -> Result<(), TransferError> {
    delete_subvolume(&snapshot.path)
}

/// Makes `<pool>/volumes/<volume>` a writable snapshot of `received`, its quota group limited to
/// `limit` bytes if given (the backend limits each volume to its `maximum_size`). It is made and
/// limited under a temporary name in the dataset's directory, then renamed without replacing, so a crash
/// leaves either no volume or the whole one, never an unlimited one, and an existing volume is
/// never touched.
pub fn promote(
    pool: &Pool,
    received: &Snapshot,
    volume: &str,
    limit: Option<u64>,
) -> Result<PathBuf, TransferError> {
    if volume.is_empty() || volume.starts_with('.') || volume.contains('/') {
        return Err(TransferError::BadVolumeName { name: volume.to_owned() });
    }
    let volumes = pool.volumes();
    fs::create_dir_all(&volumes).map_err(PathError::at("create", &volumes))?;
    let target = volumes.join(volume);
    if target.symlink_metadata().is_ok() {
        return Err(TransferError::VolumeExists { path: target });
    }
    let _lock = lock(&pool.snapshots_of(&received.dataset_id))?;
    let temporary = pool.snapshots_of(&received.dataset_id).join(format!("promoting-{volume}"));
    if temporary.symlink_metadata().is_ok() {
        delete_subvolume(&temporary)?; // a crash's leftover: we hold the lock
    }
    let (from, to) = (text(&received.path)?, text(&temporary)?);
    command::run("btrfs", &["subvolume", "snapshot", from, to], QUICK)?;
    if let Some(limit) = limit {
        let limited = command::run("btrfs", &["qgroup", "limit", &limit.to_string(), to], QUICK);
        if let Err(e) = limited {
            discard(&temporary);
            return Err(e.into());
        }
    }
    if let Err(e) = no_replace::rename(&temporary, &target) {
        discard(&temporary);
        return Err(match e.kind() {
            io::ErrorKind::AlreadyExists => TransferError::VolumeExists { path: target },
            _ => PathError::new("rename a new volume to", &target, e).into(),
        });
    }
    sync(pool)?;
    Ok(target)
}

/// Deletes what a crash left under `<pool>/snapshots/`: receives that did not complete and
/// volumes half promoted, the only writable subvolumes there. Snapshots taken here and complete
/// receives stay (they are parents of the next difference), and so does a dataset's directory
/// that a transfer holds now. Returns what it deleted.
pub fn cleanup_incoming(pool: &Pool) -> Result<Vec<PathBuf>, TransferError> {
    let incoming = pool.snapshots();
    let datasets = match fs::read_dir(&incoming) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PathError::new("list", &incoming, e).into()),
    };
    let mut deleted = Vec::new();
    for dataset in datasets {
        let directory = dataset.map_err(PathError::at("list", &incoming))?.path();
        let _lock = match lock(&directory) {
            Ok(lock) => lock,
            Err(TransferError::Busy { .. }) => continue,
            Err(e) => return Err(e),
        };
        for entry in fs::read_dir(&directory).map_err(PathError::at("list", &directory))? {
            let path = entry.map_err(PathError::at("list", &directory))?.path();
            let metadata = path.symlink_metadata().map_err(PathError::at("inspect", &path))?;
            if !metadata.is_dir() || metadata.ino() != SUBVOLUME_ROOT_INODE {
                log::warn!("{} is not a subvolume; left alone", path.display());
                continue;
            }
            if !show(&path)?.readonly {
                delete_subvolume(&path)?;
                deleted.push(path);
            }
        }
    }
    Ok(deleted)
}

/// What `dataset`'s snapshot is expected to put in a stream, for [`super::Progress`]: the bytes
/// of file extents written since `parent` was taken (all of them without one), as `btrfs
/// subvolume find-new` lists them. Chosen over the quota group's "referenced" bytes, which needs
/// quotas on (a cost on every write, off in most pools), counts metadata, and says nothing of a
/// difference; and over `du`, which reads every inode. Unchanged files cost nothing here, and the
/// figure is the data the stream carries, less its small metadata.
pub fn estimate(snapshot: &Snapshot, parent: Option<&Snapshot>) -> Result<u64, TransferError> {
    // Extents of the parent's own transaction belong to it; newer ones are the difference.
    let since = parent.map_or(0, |parent| parent.subvolume.created + 1).to_string();
    let listing =
        command::run("btrfs", &["subvolume", "find-new", text(&snapshot.path)?, &since], SLOW)?;
    Ok(extent_bytes(&listing))
}

/// The sum of `len` over `find-new`'s lines ("inode 257 file offset 0 len 8388608 disk start …").
fn extent_bytes(listing: &str) -> u64 {
    let length = |line: &str| {
        let mut words = line.split_whitespace();
        words.find(|word| *word == "len")?;
        words.next()?.parse::<u64>().ok()
    };
    listing.lines().filter_map(length).sum()
}

/// The subvolume at `path`, from `btrfs subvolume show`.
pub fn show(path: &Path) -> Result<Subvolume, TransferError> {
    let output = command::run("btrfs", &["subvolume", "show", text(path)?], QUICK)?;
    parse_show(&output)
        .map_err(|problem| TransferError::Unparsable { path: path.to_owned(), problem })
}

fn parse_show(output: &str) -> Result<Subvolume, String> {
    let field = |name: &str| {
        output
            .lines()
            .take_while(|line| !line.trim_start().starts_with("Snapshot(s)"))
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim())
            .ok_or_else(|| format!("no {name}"))
    };
    let uuid = |name: &str| -> Result<Option<Uuid>, String> {
        match field(name)? {
            "-" => Ok(None),
            value => value.parse().map(Some).map_err(|_| format!("{name} '{value}'")),
        }
    };
    let created = field("Gen at creation")?;
    Ok(Subvolume {
        uuid: uuid("UUID")?.ok_or("no UUID")?,
        parent: uuid("Parent UUID")?,
        received_uuid: uuid("Received UUID")?,
        readonly: field("Flags")?
            .split(|c: char| c == ',' || c.is_whitespace())
            .any(|f| f == "readonly"),
        created: created.parse().map_err(|_| format!("Gen at creation '{created}'"))?,
    })
}

pub(super) fn delete_subvolume(path: &Path) -> Result<(), TransferError> {
    command::run("btrfs", &["subvolume", "delete", text(path)?], QUICK)?;
    Ok(())
}

/// Deletes a subvolume while another failure is being reported: that failure is the news, and a
/// leftover is found again by [`cleanup_incoming`] at the next start.
pub(super) fn discard(path: &Path) {
    if path.symlink_metadata().is_ok()
        && let Err(e) = delete_subvolume(path)
    {
        log::error!(
            "{:#}",
            anyhow::Error::new(e).context(format!("cannot delete {}", path.display()))
        );
    }
}

/// Commits the pool's transaction: what was made is on disk, and its name with it.
pub(super) fn sync(pool: &Pool) -> Result<(), TransferError> {
    command::run("btrfs", &["filesystem", "sync", text(pool.root())?], SLOW)?;
    Ok(())
}

/// Holds a dataset's directory under `snapshots/` for one transfer (created if need be).
pub(super) fn lock(directory: &Path) -> Result<Flock<File>, TransferError> {
    fs::create_dir_all(directory).map_err(PathError::at("create", directory))?;
    let file = File::open(directory).map_err(PathError::at("open", directory))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => TransferError::Busy { path: directory.to_owned() },
        errno => PathError::new("lock", directory, errno.into()).into(),
    })
}

pub(super) fn text(path: &Path) -> Result<&str, TransferError> {
    path.to_str().ok_or_else(|| {
        let problem = io::Error::new(io::ErrorKind::InvalidInput, "the path is not UTF-8");
        PathError::new("name", path, problem).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIVED: &str = "incoming/d/0000000001
	Name: 			0000000001
	UUID: 			e7a2a846-2502-5a44-87ce-7be49e844d19
	Parent UUID: 		-
	Received UUID: 		f42d0044-b377-3049-9f14-24d499915742
	Creation time: 		2026-12-05 01:14:02 +0000
	Subvolume ID: 		256
	Generation: 		7
	Gen at creation: 	7
	Flags: 			readonly
	Snapshot(s):
				volumes/x
";

    #[test]
    fn a_received_snapshot_is_read_from_btrfs_subvolume_show() {
        let subvolume = parse_show(RECEIVED).unwrap();
        assert_eq!(
            subvolume.uuid,
            Uuid::parse_str("e7a2a846-2502-5a44-87ce-7be49e844d19").unwrap()
        );
        assert_eq!(
            subvolume.received_uuid,
            Uuid::parse_str("f42d0044-b377-3049-9f14-24d499915742").ok()
        );
        assert_eq!(subvolume.created, 7);
        assert!(subvolume.is_complete_receive());
    }

    #[test]
    fn a_receive_under_way_is_not_complete() {
        let partial =
            RECEIVED.replace("f42d0044-b377-3049-9f14-24d499915742", "-").replace("readonly", "-");
        let subvolume = parse_show(&partial).unwrap();
        assert_eq!(subvolume.received_uuid, None);
        assert!(!subvolume.readonly && !subvolume.is_complete_receive());
    }

    #[test]
    fn output_without_a_uuid_is_not_understood() {
        assert_eq!(parse_show("Name: x\n"), Err("no Gen at creation".to_owned()));
    }

    #[test]
    fn an_estimate_adds_the_lengths_of_the_listed_extents() {
        let listing =
            "inode 257 file offset 0 len 8388608 disk start 13631488 offset 0 gen 9 flags NONE f
inode 257 file offset 8388608 len 2097152 disk start 63963136 offset 0 gen 10 flags NONE f
transid marker was 10
";
        assert_eq!(extent_bytes(listing), 10 << 20);
    }
}
