//! What the isolator has done for each container, kept on persistent disk and written before
//! every side effect, so that after a crash — of the agent or of the machine — recover knows what
//! to keep and what to undo.
//!
//! ```text
//! <state_dir>/checkpoints.journal   one checksummed record per change: a container's volumes
//!                                   (put) or its end (remove); the last record of each wins
//! <state_dir>/quarantine/           the journal as found, when part of it could not be read
//! ```
//!
//! A change is one append, made durable by `fdatasync` before it is acknowledged. Changes made
//! at the same moment share one `fdatasync` (group commit): a crowd of containers starting at
//! once costs a few disk flushes, not one per container — a file per container cost two
//! flushes each, and fifty at once took 86 ms on this machine's disk. Every few thousand records
//! the journal is rewritten with only the current entries (temporary file, fsync, rename,
//! fsync of the directory).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use flocker_host::durable::write_atomically;
use flocker_host::records::{frame, unframe};
use serde::{Deserialize, Serialize};

use crate::container::ContainerId;
use crate::request::{FlockerId, TaskPath};

const FORMAT_VERSION: u32 = 1;
const JOURNAL: &str = "checkpoints.journal";
/// Rewrite the journal once it holds this many records.
const COMPACT_AFTER: usize = 4096;

/// One container's volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub container_id: ContainerId,
    pub volumes: Vec<CheckpointedVolume>,
}

/// A volume a container asked for. Written before anything is done for it, and enough to undo
/// all of it: the lease is found again by the FLOCKER_ID (and released only if this node holds
/// it), the link by its path (and removed only if it is still ours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointedVolume {
    pub flocker_id: FlockerId,
    pub path: TaskPath,
    /// The symbolic link the volume gets on the host, if it gets one.
    #[serde(default)]
    pub link: Option<PathBuf>,
    /// The `host_path_roots` entry the link is made beneath: it is walked from there, never
    /// following a link. Absent in checkpoints older than roots: the link's own directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_root: Option<PathBuf>,
    /// The directories made (or about to be made) for the link, shallowest first: removed at
    /// cleanup, each if empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub made_directories: Vec<PathBuf>,
}

impl CheckpointedVolume {
    /// Where the link is walked from.
    pub fn link_root(&self) -> Option<&Path> {
        let link = self.link.as_deref()?;
        self.link_root.as_deref().or(link.parent())
    }
}

impl Checkpoint {
    pub fn new(container_id: ContainerId, volumes: Vec<CheckpointedVolume>) -> Self {
        Self { version: FORMAT_VERSION, container_id, volumes }
    }
}

/// A journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Put { checkpoint: Checkpoint },
    Remove { container_id: ContainerId },
}

/// What failed in the state directory, and where.
pub use flocker_host::PathError as CheckpointError;

struct Journal {
    file: File,
    /// Bytes ever appended, and how many of them are known to be on disk (counters that only
    /// grow, across rewrites of the file).
    appended: u64,
    durable: u64,
    flushing: bool,
    records: usize,
    entries: BTreeMap<ContainerId, Checkpoint>,
    /// Set when a flush failed: the kernel may have dropped what was written.
    failed: Option<String>,
}

pub struct Checkpoints {
    path: PathBuf,
    quarantine: PathBuf,
    journal: Mutex<Journal>,
    flushed: Condvar,
}

impl Checkpoints {
    /// Opens (creating) the journal under `state_dir` and reads it. A damaged record is skipped
    /// and the journal as found copied to the quarantine; only an unusable directory fails.
    pub fn open(state_dir: &Path) -> Result<Self, CheckpointError> {
        let quarantine = state_dir.join("quarantine");
        for directory in [state_dir, &quarantine] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(directory)
                .map_err(CheckpointError::at("create", directory))?;
        }
        let path = state_dir.join(JOURNAL);
        let (entries, records) = load(&path, Some(&quarantine))?;
        let this = Self {
            journal: Mutex::new(Journal {
                file: open_for_append(&path)?,
                appended: 0,
                durable: 0,
                flushing: false,
                records,
                entries,
                failed: None,
            }),
            path,
            quarantine,
            flushed: Condvar::new(),
        };
        this.compact(&mut this.lock())?; // a fresh journal holds only what is current
        Ok(this)
    }

    /// Records a container's volumes, durably, replacing what was recorded before.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        self.append(Record::Put { checkpoint: checkpoint.clone() })
    }

    /// Forgets a container, durably. Forgetting an unknown one writes nothing.
    pub fn remove(&self, id: &ContainerId) -> Result<(), CheckpointError> {
        if !self.lock().entries.contains_key(id) {
            return Ok(());
        }
        self.append(Record::Remove { container_id: id.clone() })
    }

    /// A container's checkpoint, if it has one.
    pub fn read(&self, id: &ContainerId) -> Option<Checkpoint> {
        self.lock().entries.get(id).cloned()
    }

    /// Every checkpoint, in container order.
    pub fn all(&self) -> Vec<Checkpoint> {
        self.lock().entries.values().cloned().collect()
    }

    /// The other containers whose checkpoints name `flocker_id`: while there are any, the
    /// volume is in use on this node.
    pub fn users(&self, flocker_id: &FlockerId, except: &ContainerId) -> Vec<ContainerId> {
        self.lock()
            .entries
            .values()
            .filter(|c| {
                c.container_id != *except && c.volumes.iter().any(|v| v.flocker_id == *flocker_id)
            })
            .map(|c| c.container_id.clone())
            .collect()
    }

    /// How many distinct volumes the checkpoints name.
    pub fn volumes_in_use(&self) -> usize {
        let journal = self.lock();
        let volumes: BTreeSet<&FlockerId> = journal
            .entries
            .values()
            .flat_map(|c| c.volumes.iter().map(|v| &v.flocker_id))
            .collect();
        volumes.len()
    }

    /// Appends a record and waits until it is on disk.
    fn append(&self, record: Record) -> Result<(), CheckpointError> {
        let mut journal = self.lock();
        if let Some(reason) = &journal.failed {
            return Err(CheckpointError::new(
                "write",
                &self.path,
                io::Error::other(reason.clone()),
            ));
        }
        let bytes = frame(&record)
            .map_err(|e| CheckpointError::new("encode", &self.path, io::Error::other(e)))?;
        if let Err(source) = journal.file.write_all(&bytes) {
            journal.failed = Some(source.to_string());
            return Err(CheckpointError::new("append to", &self.path, source));
        }
        journal.appended += bytes.len() as u64;
        journal.records += 1;
        apply(&mut journal.entries, record);
        let target = journal.appended;
        let mut journal = self.flush(journal, target)?;
        if journal.records >= COMPACT_AFTER && !journal.flushing {
            self.compact(&mut journal)?;
        }
        Ok(())
    }

    /// Waits until everything up to `target` is on disk: the first writer to find no flush under
    /// way flushes for everyone who appended before it started.
    fn flush<'a>(
        &'a self,
        mut journal: MutexGuard<'a, Journal>,
        target: u64,
    ) -> Result<MutexGuard<'a, Journal>, CheckpointError> {
        loop {
            if let Some(reason) = &journal.failed {
                return Err(CheckpointError::new(
                    "flush",
                    &self.path,
                    io::Error::other(reason.clone()),
                ));
            }
            if journal.durable >= target {
                return Ok(journal);
            }
            if journal.flushing {
                journal = self.flushed.wait(journal).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            journal.flushing = true;
            let upto = journal.appended;
            let file = journal.file.try_clone();
            drop(journal);
            let synced = file.and_then(|file| file.sync_data());
            journal = self.lock();
            journal.flushing = false;
            match synced {
                Ok(()) => journal.durable = journal.durable.max(upto),
                Err(source) => journal.failed = Some(source.to_string()),
            }
            self.flushed.notify_all();
        }
    }

    /// Replaces the journal with one holding only the current entries.
    fn compact(&self, journal: &mut Journal) -> Result<(), CheckpointError> {
        let mut bytes = Vec::new();
        for checkpoint in journal.entries.values() {
            let record = Record::Put { checkpoint: checkpoint.clone() };
            bytes
                .extend(frame(&record).map_err(|e| {
                    CheckpointError::new("encode", &self.path, io::Error::other(e))
                })?);
        }
        write_atomically(&self.path, &bytes, 0o600)
            .map_err(CheckpointError::at("rewrite", &self.path))?;
        journal.file = open_for_append(&self.path)?;
        journal.records = journal.entries.len();
        journal.durable = journal.appended; // all of it is in the new file, on disk
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where damaged journals are kept.
    pub fn quarantine(&self) -> &Path {
        &self.quarantine
    }
}

/// The checkpoints in a state directory, read without touching anything (for tools and tests;
/// the isolator itself opens the journal with [`Checkpoints::open`]).
pub fn peek(state_dir: &Path) -> Result<Vec<Checkpoint>, CheckpointError> {
    let (entries, _) = load(&state_dir.join(JOURNAL), None)?;
    Ok(entries.into_values().collect())
}

fn apply(entries: &mut BTreeMap<ContainerId, Checkpoint>, record: Record) {
    match record {
        Record::Put { checkpoint } => {
            entries.insert(checkpoint.container_id.clone(), checkpoint);
        }
        Record::Remove { container_id } => {
            entries.remove(&container_id);
        }
    }
}

/// Reads the journal: the current entries and how many records it holds. A record that cannot
/// be read is skipped with a message, after the journal is copied to the quarantine; an
/// unterminated last record is a write a crash cut short, never acknowledged.
fn load(
    path: &Path,
    quarantine: Option<&Path>,
) -> Result<(BTreeMap<ContainerId, Checkpoint>, usize), CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((BTreeMap::new(), 0)),
        Err(source) => return Err(CheckpointError::new("read", path, source)),
    };
    let (mut entries, mut records, mut damaged) = (BTreeMap::new(), 0, false);
    for (number, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let Some(line) = line.strip_suffix(b"\n") else {
            log::warn!(
                "{}: the last record was cut short by a crash; it was never acknowledged",
                path.display()
            );
            break;
        };
        match unframe::<Record>(line) {
            Ok(Record::Put { checkpoint }) if checkpoint.version != FORMAT_VERSION => {
                log::error!(
                    "{} line {}: checkpoint format {} is not {FORMAT_VERSION}; skipped",
                    path.display(),
                    number + 1,
                    checkpoint.version
                );
                damaged = true;
            }
            Ok(record) => {
                apply(&mut entries, record);
                records += 1;
            }
            Err(problem) => {
                log::error!("{} line {}: {problem}; skipped", path.display(), number + 1);
                damaged = true;
            }
        }
    }
    if let Some(quarantine) = quarantine.filter(|_| damaged) {
        let copy = quarantine.join(format!("{JOURNAL}.{}", uuid::Uuid::new_v4().simple()));
        match fs::write(&copy, &bytes) {
            Ok(()) => log::error!("the checkpoint journal as found is kept in {}", copy.display()),
            Err(e) => log::error!(
                "cannot keep a copy of the checkpoint journal in {}: {e}",
                copy.display()
            ),
        }
    }
    Ok((entries, records))
}

fn open_for_append(path: &Path) -> Result<File, CheckpointError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(CheckpointError::at("open", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn id(value: &str) -> ContainerId {
        ContainerId { value: value.to_owned(), parent: None }
    }

    fn volume(name: &str) -> Vec<CheckpointedVolume> {
        let (flocker_id, path) = (name.parse().unwrap(), "/tmp/data".parse().unwrap());
        vec![CheckpointedVolume {
            flocker_id,
            path,
            link: Some("/tmp/data".into()),
            link_root: Some("/tmp".into()),
            made_directories: Vec::new(),
        }]
    }

    #[test]
    fn checkpoints_outlive_the_process_and_removals_too() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let mut first = Checkpoint::new(id("c1"), volume("webapp-data"));
        checkpoints.write(&first).unwrap();
        first.volumes[0].link = None;
        checkpoints.write(&first).unwrap();
        checkpoints.write(&Checkpoint::new(id("c2"), volume("other"))).unwrap();
        checkpoints.remove(&id("c2")).unwrap();
        checkpoints.remove(&id("c2")).unwrap();
        drop(checkpoints);
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(again.all(), [first]);
    }

    #[test]
    fn users_of_a_volume_are_the_other_containers_that_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.write(&Checkpoint::new(id("a"), volume("shared"))).unwrap();
        checkpoints.write(&Checkpoint::new(id("b"), volume("shared"))).unwrap();
        checkpoints.write(&Checkpoint::new(id("c"), volume("other"))).unwrap();
        let shared: FlockerId = "shared".parse().unwrap();
        assert_eq!(checkpoints.users(&shared, &id("a")), [id("b")]);
    }

    #[test]
    fn volumes_in_use_counts_each_checkpointed_volume_once_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(checkpoints.volumes_in_use(), 0);
        checkpoints.write(&Checkpoint::new(id("a"), volume("shared"))).unwrap();
        checkpoints.write(&Checkpoint::new(id("b"), volume("shared"))).unwrap();
        checkpoints.write(&Checkpoint::new(id("c"), volume("other"))).unwrap();
        assert_eq!(checkpoints.volumes_in_use(), 2, "two containers share one volume");
        checkpoints.remove(&id("c")).unwrap();
        drop(checkpoints);
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(again.volumes_in_use(), 1);
    }

    #[test]
    fn a_damaged_record_is_skipped_kept_in_quarantine_and_the_rest_loads() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.write(&Checkpoint::new(id("bad"), volume("v"))).unwrap();
        checkpoints.write(&Checkpoint::new(id("good"), volume("w"))).unwrap();
        drop(checkpoints);
        let path = dir.path().join(JOURNAL);
        let mut bytes = fs::read(&path).unwrap();
        let spot = bytes.iter().position(|b| *b == b'v').unwrap();
        bytes[spot] = b'x';
        bytes.extend_from_slice(b"0000"); // and a torn last record
        fs::write(&path, bytes).unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(
            checkpoints.all().iter().map(|c| c.container_id.value.as_str()).collect::<Vec<_>>(),
            ["good"]
        );
        assert_eq!(fs::read_dir(checkpoints.quarantine()).unwrap().count(), 1);
    }

    #[test]
    fn writers_at_the_same_moment_all_land_and_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Arc::new(Checkpoints::open(dir.path()).unwrap());
        let writers: Vec<_> = (0..32)
            .map(|n| {
                let checkpoints = checkpoints.clone();
                std::thread::spawn(move || {
                    checkpoints.write(&Checkpoint::new(id(&format!("c{n}")), volume("v"))).unwrap()
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        drop(checkpoints);
        assert_eq!(Checkpoints::open(dir.path()).unwrap().all().len(), 32);
    }

    #[test]
    fn the_journal_is_rewritten_with_only_what_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        for n in 0..COMPACT_AFTER + 10 {
            checkpoints.write(&Checkpoint::new(id(&format!("c{}", n % 3)), volume("v"))).unwrap();
        }
        let lines = fs::read_to_string(dir.path().join(JOURNAL)).unwrap().lines().count();
        assert!(lines < 20, "{lines} records after compaction");
        assert_eq!(checkpoints.all().len(), 3);
    }
}
