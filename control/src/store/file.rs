//! The file store: a snapshot and a journal under `--data-path`.
//!
//! ```text
//! <data-path>/
//!   control.lock             held (flock) while a control service uses the store
//!   configuration.snapshot   one record: the whole configuration at some generation G
//!   configuration.journal    a header record (base generation B ≤ G), then one record per
//!                            change: G+1, G+2, …, each fsynced before it is acknowledged
//! ```
//!
//! A change costs one small append and one `fdatasync`, whatever the size of the cluster. Every
//! few thousand changes the store writes a new snapshot (temporary file, fsync, rename, fsync
//! the directory) and starts an empty journal the same way; a crash between the two leaves an
//! old journal whose records the snapshot already holds, which loading skips.
//!
//! Loading refuses anything damaged — a bad checksum, a gap in the generations, a missing file
//! that the other one proves existed — with one exception: an unterminated last record of the
//! journal. That record's write was interrupted (a crash or power loss), so it was never
//! acknowledged; it is dropped, after the journal is copied aside for inspection.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::flocker_import::{self, FLOCKER_CONFIGURATION};
use super::{Store, StoreError, Stored};
use crate::model::{Change, Configuration};
use flocker_host::PathError;
use flocker_host::durable::{sync_directory, write_atomically};
use flocker_host::records::{frame, unframe};

const SNAPSHOT: &str = "configuration.snapshot";
const JOURNAL: &str = "configuration.journal";
const LOCK: &str = "control.lock";
const SNAPSHOT_FORMAT: &str = "flocker-rs-configuration-snapshot";
const JOURNAL_FORMAT: &str = "flocker-rs-configuration-journal";
/// Version 2 added the record of the datasets whose volume agents reported; a store of version
/// 1 is read, and rewritten as version 2 when it is opened, so no older release reads a journal
/// holding records it does not know.
const FORMAT_VERSION: u32 = 2;
const OLDEST_READABLE_VERSION: u32 = 1;

/// Compact once the journal holds this many changes or bytes.
const COMPACT_AFTER_CHANGES: u64 = 20_000;
const COMPACT_AFTER_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    format: String,
    version: u32,
    generation: u64,
    configuration: Configuration,
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalHeader {
    format: String,
    version: u32,
    base_generation: u64,
}

/// One change; written from a borrowed change, read back as an owned one.
#[derive(Debug, Serialize, Deserialize)]
struct JournalEntry<C = Change> {
    generation: u64,
    change: C,
}

/// A journal as read from disk.
struct JournalContents {
    version: u32,
    base_generation: u64,
    entries: Vec<JournalEntry>,
    /// Bytes up to the end of the last complete record.
    complete_length: u64,
    /// An unterminated last record follows `complete_length`.
    torn: bool,
}

/// The journal, open for appending.
struct OpenJournal {
    file: File,
    length: u64,
    changes: u64,
}

pub struct FileStore {
    directory: PathBuf,
    /// Compact once the journal holds this many changes or bytes.
    compact_after: (u64, u64),
    /// Held for the store's whole life: two services on one store would lose writes.
    _lock: File,
    journal: Option<OpenJournal>,
    /// Set once a write fails: the page cache may no longer match the disk.
    failed: Option<String>,
}

impl FileStore {
    /// Opens (creating if needed) the store in `directory` and locks it.
    pub fn open(directory: &Path) -> Result<Self, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)
            .map_err(|source| io_error("create", directory, source))?;
        let lock_path = directory.join(LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| io_error("open", &lock_path, source))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(io_error("lock", &lock_path, source));
            }
        }
        Ok(Self {
            directory: directory.to_owned(),
            compact_after: (COMPACT_AFTER_CHANGES, COMPACT_AFTER_BYTES),
            _lock: lock,
            journal: None,
            failed: None,
        })
    }

    /// Compacts after `changes` journal records or `bytes` of journal instead of the defaults.
    pub fn compact_after(mut self, changes: u64, bytes: u64) -> Self {
        self.compact_after = (changes, bytes);
        self
    }

    fn snapshot_path(&self) -> PathBuf {
        self.directory.join(SNAPSHOT)
    }

    fn journal_path(&self) -> PathBuf {
        self.directory.join(JOURNAL)
    }

    fn read_snapshot(&self) -> Result<Option<SnapshotRecord>, StoreError> {
        let path = self.snapshot_path();
        let Some(bytes) = read_if_present(&path)? else { return Ok(None) };
        let line = bytes
            .strip_suffix(b"\n")
            .ok_or_else(|| damaged(&path, "it is truncated: its record is unterminated"))?;
        let snapshot: SnapshotRecord = unframe(line).map_err(|problem| damaged(&path, &problem))?;
        check_format(&path, &snapshot.format, SNAPSHOT_FORMAT, snapshot.version)?;
        Ok(Some(snapshot))
    }

    fn read_journal(&self) -> Result<Option<JournalContents>, StoreError> {
        let path = self.journal_path();
        let Some(bytes) = read_if_present(&path)? else { return Ok(None) };
        let mut lines = bytes.split_inclusive(|b| *b == b'\n');
        let (header, header_length): (JournalHeader, usize) = match lines.next() {
            Some(line) if line.ends_with(b"\n") => (
                unframe(&line[..line.len() - 1])
                    .map_err(|problem| damaged(&path, &format!("header: {problem}")))?,
                line.len(),
            ),
            _ => return Err(damaged(&path, "its header is missing or truncated")),
        };
        check_format(&path, &header.format, JOURNAL_FORMAT, header.version)?;
        let mut contents = JournalContents {
            version: header.version,
            base_generation: header.base_generation,
            entries: Vec::new(),
            complete_length: header_length as u64,
            torn: false,
        };
        for (index, line) in lines.enumerate() {
            let Some(record) = line.strip_suffix(b"\n") else {
                contents.torn = true; // only the last piece can lack its newline
                break;
            };
            let entry = unframe(record)
                .map_err(|problem| damaged(&path, &format!("line {}: {problem}", index + 2)))?;
            contents.entries.push(entry);
            contents.complete_length += line.len() as u64;
        }
        Ok(Some(contents))
    }

    /// Keeps a copy of a journal whose last record was torn, then cuts that record off.
    fn drop_torn_record(&self, complete_length: u64) -> Result<(), StoreError> {
        let path = self.journal_path();
        let copy = self.directory.join(format!(
            "{JOURNAL}.torn-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        ));
        fs::copy(&path, &copy).map_err(|source| io_error("copy", &copy, source))?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| io_error("open", &path, source))?;
        file.set_len(complete_length)
            .and_then(|()| file.sync_all())
            .and_then(|()| sync_directory(&self.directory))
            .map_err(|source| io_error("truncate", &path, source))?;
        log::warn!(
            "{}: dropped an unterminated last record, a write that was interrupted before it was \
             acknowledged; the journal as found is kept in {}",
            path.display(),
            copy.display()
        );
        Ok(())
    }

    /// Starts an empty journal whose records follow `base_generation`.
    fn start_journal(&mut self, base_generation: u64) -> Result<(), StoreError> {
        let path = self.journal_path();
        let header = JournalHeader {
            format: JOURNAL_FORMAT.to_owned(),
            version: FORMAT_VERSION,
            base_generation,
        };
        let bytes = frame(&header).map_err(|e| io_error("encode", &path, io::Error::other(e)))?;
        self.journal = None;
        write_atomically(&path, &bytes, 0o600)
            .map_err(|source| io_error("write", &path, source))?;
        self.open_journal(0)
    }

    fn open_journal(&mut self, changes: u64) -> Result<(), StoreError> {
        let path = self.journal_path();
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| io_error("open", &path, source))?;
        let length = file.metadata().map_err(|source| io_error("stat", &path, source))?.len();
        self.journal = Some(OpenJournal { file, length, changes });
        Ok(())
    }

    fn write_snapshot(
        &self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        let path = self.snapshot_path();
        let snapshot = SnapshotRecord {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: FORMAT_VERSION,
            generation,
            configuration: configuration.clone(),
        };
        let bytes = frame(&snapshot).map_err(|e| io_error("encode", &path, io::Error::other(e)))?;
        write_atomically(&path, &bytes, 0o600).map_err(|source| io_error("write", &path, source))
    }

    /// A new store: empty, or holding what Flocker's control service left in the same
    /// directory (which is left as it was).
    fn create(&mut self) -> Result<Stored, StoreError> {
        let flocker = self.directory.join(FLOCKER_CONFIGURATION);
        if !flocker.exists() {
            self.start_journal(0)?;
            return Ok(Stored::default());
        }
        let configuration = flocker_import::import(&flocker)
            .map_err(|problem| damaged(&flocker, &format!("{problem}; it was not imported")))?;
        self.write_snapshot(&configuration, 0)?;
        self.start_journal(0)?;
        log::info!(
            "imported {} datasets, {} leases and {} block devices from Flocker's {}; that file is \
             left as it was and no longer read",
            configuration.datasets.len(),
            configuration.leases.len(),
            configuration.blockdevice_ownership.len(),
            flocker.display()
        );
        Ok(Stored { configuration, generation: 0 })
    }

    fn compact(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        self.write_snapshot(configuration, generation)?;
        self.start_journal(generation)
    }
}

impl Store for FileStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        let snapshot = self.read_snapshot()?;
        let journal = self.read_journal()?;
        let (snapshot, journal) = match (snapshot, journal) {
            (None, None) => return self.create(),
            (Some(snapshot), None) => {
                let mut why = "it is missing, though the snapshot beside it exists".to_owned();
                if snapshot.generation == 0 {
                    why += " (if the service was stopped while it first imported Flocker's \
                            configuration, remove the snapshot and start it again)";
                }
                return Err(damaged(&self.journal_path(), &why));
            }
            (snapshot, Some(journal)) => (snapshot, journal),
        };
        let outdated = journal.version < FORMAT_VERSION
            || snapshot.as_ref().is_some_and(|s| s.version < FORMAT_VERSION);
        let (mut configuration, snapshot_generation) = match snapshot {
            Some(s) => (s.configuration, s.generation),
            None if journal.base_generation > 0 => {
                let why = format!(
                    "it is missing, though the journal starts after generation {}",
                    journal.base_generation
                );
                return Err(damaged(&self.snapshot_path(), &why));
            }
            None => (Configuration::default(), 0),
        };
        if journal.base_generation > snapshot_generation {
            let why = format!(
                "it holds generation {snapshot_generation}, older than the journal, which starts \
                 after generation {}",
                journal.base_generation
            );
            return Err(damaged(&self.snapshot_path(), &why));
        }
        let mut generation = snapshot_generation;
        for entry in journal.entries.iter().filter(|e| e.generation > snapshot_generation) {
            if entry.generation != generation + 1 {
                let why = format!(
                    "generation {} follows generation {generation}: changes are missing",
                    entry.generation
                );
                return Err(damaged(&self.journal_path(), &why));
            }
            configuration.apply(&entry.change);
            generation = entry.generation;
        }
        if journal.torn {
            self.drop_torn_record(journal.complete_length)?;
        }
        if outdated {
            self.compact(&configuration, generation)?;
            log::info!(
                "rewrote the store in {} as format version {FORMAT_VERSION}",
                self.directory.display()
            );
        } else {
            self.open_journal(journal.entries.len() as u64)?;
        }
        Ok(Stored { configuration, generation })
    }

    fn append(&mut self, generation: u64, change: &Change) -> Result<(), StoreError> {
        if let Some(reason) = &self.failed {
            return Err(StoreError::Failed { reason: reason.clone() });
        }
        let path = self.journal_path();
        let Some(journal) = self.journal.as_mut() else {
            return Err(StoreError::Failed { reason: "the journal is not open".to_owned() });
        };
        let bytes = frame(&JournalEntry { generation, change })
            .map_err(|e| io_error("encode", &path, io::Error::other(e)))?;
        match journal.file.write_all(&bytes).and_then(|()| journal.file.sync_data()) {
            Ok(()) => {
                journal.length += bytes.len() as u64;
                journal.changes += 1;
                Ok(())
            }
            Err(source) => {
                // Cut off whatever part of the record reached the file, then refuse further
                // writes: after a failed fsync the kernel may have dropped dirty pages.
                let _ = journal.file.set_len(journal.length);
                self.failed = Some(source.to_string());
                Err(io_error("append to", &path, source))
            }
        }
    }

    fn applied(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        let (changes, bytes) = self.compact_after;
        let due = self.journal.as_ref().is_some_and(|j| j.changes >= changes || j.length >= bytes);
        if due {
            self.compact(configuration, generation)?;
            log::info!("compacted the store at generation {generation}");
        }
        Ok(())
    }
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error("read", path, source)),
    }
}

fn check_format(path: &Path, format: &str, expected: &str, version: u32) -> Result<(), StoreError> {
    if format != expected {
        return Err(damaged(path, &format!("it is a '{format}' file, not '{expected}'")));
    }
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        let why = format!(
            "it is format version {version}, and this flocker-control reads versions \
             {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}: run the release that wrote it"
        );
        return Err(damaged(path, &why));
    }
    Ok(())
}

fn damaged(path: &Path, problem: &str) -> StoreError {
    StoreError::Damaged { path: path.to_owned(), problem: problem.to_owned() }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io(PathError::new(action, path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flocker_api::{AcquireLease, CreateDataset, DatasetId, NodeUuid};

    /// Appends `count` dataset creates through the same path the service takes.
    fn create_datasets(store: &mut FileStore, stored: &mut Stored, count: usize) {
        for _ in 0..count {
            let request = CreateDataset {
                primary: NodeUuid::random(),
                dataset_id: None,
                maximum_size: Some(64 * 1024 * 1024),
                metadata: [("name".to_owned(), "pg".to_owned())].into(),
            };
            let dataset = stored.configuration.plan_create(request, DatasetId::random()).unwrap();
            commit(store, stored, Change::CreateDataset { dataset });
        }
    }

    fn commit(store: &mut FileStore, stored: &mut Stored, change: Change) {
        store.append(stored.generation + 1, &change).unwrap();
        stored.configuration.apply(&change);
        stored.generation += 1;
        store.applied(&stored.configuration, stored.generation).unwrap();
    }

    fn reopen(dir: &Path) -> Result<Stored, StoreError> {
        FileStore::open(dir)?.load()
    }

    fn filled(dir: &Path, count: usize) -> Stored {
        let mut store = FileStore::open(dir).unwrap();
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, count);
        stored
    }

    #[test]
    fn a_new_store_is_empty_and_remembers_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
        let mut stored = store.load().unwrap();
        assert_eq!(stored, Stored::default());
        create_datasets(&mut store, &mut stored, 5);
        let lease = AcquireLease {
            dataset_id: *stored.configuration.datasets.keys().next().unwrap(),
            node_uuid: NodeUuid::random(),
            expires: Some(30.0),
        };
        let decision = stored.configuration.plan_acquire_lease(&lease, 1000.0).unwrap();
        commit(&mut store, &mut stored, decision.change.unwrap());
        drop(store);
        assert_eq!(reopen(dir.path()).unwrap(), stored);
    }

    #[test]
    fn compaction_keeps_everything_and_a_crash_before_the_new_journal_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap().compact_after(10, u64::MAX);
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, 9);
        let journal_before = fs::read(dir.path().join(JOURNAL)).unwrap();
        create_datasets(&mut store, &mut stored, 1); // the tenth change compacts
        assert!(dir.path().join(SNAPSHOT).exists());
        assert!(fs::read(dir.path().join(JOURNAL)).unwrap().len() < journal_before.len());
        create_datasets(&mut store, &mut stored, 3);
        drop(store);
        assert_eq!(reopen(dir.path()).unwrap(), stored);

        // A crash after the snapshot was written but before the journal was replaced leaves an
        // old journal whose records the snapshot already holds.
        let mut store = FileStore::open(dir.path()).unwrap().compact_after(1, u64::MAX);
        let mut stored = store.load().unwrap();
        let journal_before = fs::read(dir.path().join(JOURNAL)).unwrap();
        create_datasets(&mut store, &mut stored, 1);
        drop(store);
        fs::write(dir.path().join(JOURNAL), journal_before).unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), stored);
    }

    #[test]
    fn a_second_service_on_the_same_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileStore::open(dir.path()).unwrap();
        let second = FileStore::open(dir.path());
        assert!(matches!(second, Err(StoreError::Locked { .. })));
    }

    #[test]
    fn an_unterminated_last_record_is_dropped_and_the_journal_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut stored = filled(dir.path(), 2);
        let before_last = stored.clone();
        let mut store = FileStore::open(dir.path()).unwrap();
        stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, 1);
        drop(store);
        let journal = dir.path().join(JOURNAL);
        let length = fs::metadata(&journal).unwrap().len();
        OpenOptions::new().write(true).open(&journal).unwrap().set_len(length - 7).unwrap();

        assert_eq!(reopen(dir.path()).unwrap(), before_last);
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("configuration.journal.torn-"))
            .collect();
        assert_eq!(kept.len(), 1, "the damaged journal is kept for inspection");

        // The store carries on from the last acknowledged change.
        let mut store = FileStore::open(dir.path()).unwrap();
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, 1);
        drop(store);
        assert_eq!(reopen(dir.path()).unwrap(), stored);
    }

    fn assert_damaged(dir: &Path, file: &str, words: &str) {
        match reopen(dir) {
            Err(error @ StoreError::Damaged { .. }) => {
                let message = error.to_string();
                assert!(message.contains(file), "{message}");
                assert!(message.contains(words), "{message}");
            }
            other => panic!("expected a damaged store, got {other:?}"),
        }
    }

    #[test]
    fn a_changed_byte_in_a_middle_record_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 3);
        let journal = dir.path().join(JOURNAL);
        let mut bytes = fs::read(&journal).unwrap();
        let third_line =
            bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
        let target = third_line + bytes[third_line..].iter().position(|b| *b == b'6').unwrap();
        bytes[target] = b'7'; // "64…" becomes "74…": still valid JSON
        fs::write(&journal, bytes).unwrap();
        assert_damaged(dir.path(), JOURNAL, "line 3");
    }

    #[test]
    fn a_truncated_snapshot_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap().compact_after(2, u64::MAX);
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, 2);
        drop(store);
        let snapshot = dir.path().join(SNAPSHOT);
        let length = fs::metadata(&snapshot).unwrap().len();
        OpenOptions::new().write(true).open(&snapshot).unwrap().set_len(length / 2).unwrap();
        assert_damaged(dir.path(), SNAPSHOT, "truncated");
    }

    #[test]
    fn a_missing_file_that_the_other_proves_existed_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap().compact_after(2, u64::MAX);
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, 2);
        drop(store);
        let snapshot = fs::read(dir.path().join(SNAPSHOT)).unwrap();
        fs::remove_file(dir.path().join(SNAPSHOT)).unwrap();
        assert_damaged(dir.path(), SNAPSHOT, "missing");
        fs::write(dir.path().join(SNAPSHOT), snapshot).unwrap();
        fs::remove_file(dir.path().join(JOURNAL)).unwrap();
        assert_damaged(dir.path(), JOURNAL, "missing");
    }

    #[test]
    fn a_gap_in_the_generations_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 3);
        let journal = dir.path().join(JOURNAL);
        let text = fs::read_to_string(&journal).unwrap();
        let without_second: Vec<&str> =
            text.lines().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| l).collect();
        fs::write(&journal, without_second.join("\n") + "\n").unwrap();
        assert_damaged(dir.path(), JOURNAL, "changes are missing");
    }

    /// Rewrites the journal's header to say `version`.
    fn set_journal_version(dir: &Path, version: u32) {
        let path = dir.join(JOURNAL);
        let text = fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let mut header: serde_json::Value = unframe(lines.next().unwrap().as_bytes()).unwrap();
        header["version"] = version.into();
        let mut bytes = frame(&header).unwrap();
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        fs::write(&path, bytes).unwrap();
    }

    /// A store as release 0.1.0 wrote it (format version 1): an empty snapshot (as an import of
    /// nothing leaves) and a journal of three creates.
    fn version_1_store(dir: &Path) -> Stored {
        let stored = filled(dir, 3);
        set_journal_version(dir, 1);
        let snapshot = SnapshotRecord {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: 1,
            generation: 0,
            configuration: Configuration::default(),
        };
        let mut value = serde_json::to_value(&snapshot).unwrap();
        value["configuration"].as_object_mut().unwrap().remove("volumes_reported");
        fs::write(dir.join(SNAPSHOT), frame(&value).unwrap()).unwrap();
        stored
    }

    #[test]
    fn a_version_1_store_is_read_and_rewritten_as_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let stored = version_1_store(dir.path());
        assert_eq!(reopen(dir.path()).unwrap(), stored);
        let header = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        let header: JournalHeader = unframe(header.lines().next().unwrap().as_bytes()).unwrap();
        assert_eq!(header.version, FORMAT_VERSION);
        let snapshot = FileStore::open(dir.path()).unwrap().read_snapshot().unwrap().unwrap();
        assert_eq!((snapshot.version, snapshot.generation), (FORMAT_VERSION, stored.generation));
        assert_eq!(reopen(dir.path()).unwrap(), stored, "the rewritten store reads back");
    }

    #[test]
    fn a_store_of_a_newer_release_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 1);
        set_journal_version(dir.path(), FORMAT_VERSION + 1);
        assert_damaged(dir.path(), JOURNAL, &format!("format version {}", FORMAT_VERSION + 1));
    }
}
