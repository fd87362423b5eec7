//! The file store: a snapshot, a journal and a mark under `--data-path`.
//!
//! ```text
//! <data-path>/
//!   control.lock             held (flock) while a control service uses the store
//!   configuration.snapshot   one record: the whole configuration at some generation G
//!   configuration.journal    a header record (base generation B ≤ G), then one record per
//!                            change: G+1, G+2, …, each fsynced before it is acknowledged
//!   configuration.mark       the store's identity and a generation it is known to have
//!                            reached (see `mark.rs`); the snapshot and the journal's header
//!                            carry the identity too
//! ```
//!
//! A change costs one small append and one `fdatasync`, whatever the size of the cluster, and
//! the changes written while a sync runs share the next one (group commit, `group.rs`). Every
//! few thousand changes the store writes a new snapshot (temporary file, fsync, rename, fsync
//! the directory) and starts an empty journal the same way; a crash between the two leaves an
//! old journal whose records the snapshot already holds, which loading skips. A new store is
//! made the same way, snapshot first, so a journal of format version 3 always has one.
//!
//! Loading refuses anything damaged — a bad checksum, a gap in the generations, a missing file
//! that the other one proves existed — with one exception: an unterminated last record of the
//! journal. That record's write was interrupted (a crash or power loss), so it was never
//! acknowledged; it is dropped, after the journal is copied aside for inspection. Loading also
//! refuses files that hold less than the mark says the store reached (`mark.rs`), unless the
//! operator accepts the loss ([`FileStore::accept_data_loss`]).
//!
//! A failed append is never applied (the service answers with an error) and does not stop the
//! store. If the write itself failed (`write`: no space, the usual way a full disk shows), the
//! journal is cut back to its last fsynced length and fsynced, and appends carry on there once
//! space is back. If the fsync failed, or the cut did, nothing said about the file's tail can be
//! trusted (after a failed fsync the kernel may have dropped dirty pages), so the next append
//! first rebuilds the store from the configuration in memory: a new snapshot and an empty
//! journal, as a compaction makes them, depending on nothing in the damaged file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::flocker_import::{self, FLOCKER_CONFIGURATION};
use super::group::{GroupSync, Ticket};
use super::mark::{self, Found, Loss, Mark, MarkKeeper, StoreId, Verdict};
use super::{ACCEPT_DATA_LOSS, Store, StoreError, Stored};
use crate::model::{Change, Configuration};
use flocker_host::PathError;
use flocker_host::durable::sync_directory;
use flocker_host::records::{frame, unframe};

const SNAPSHOT: &str = "configuration.snapshot";
const JOURNAL: &str = "configuration.journal";
const MARK: &str = "configuration.mark";
const LOCK: &str = "control.lock";
const SNAPSHOT_FORMAT: &str = "flocker-rs-configuration-snapshot";
const JOURNAL_FORMAT: &str = "flocker-rs-configuration-journal";
/// Version 2 added the record of the datasets whose volume agents reported; version 3 the
/// store's identity (and a snapshot from the start). An older store is read, and rewritten as
/// the current version when it is opened, so no older release reads a journal holding records
/// it does not know, or appends to a store without keeping its mark.
const FORMAT_VERSION: u32 = 3;
const OLDEST_READABLE_VERSION: u32 = 1;

/// Compact once the journal holds this many changes or bytes.
const COMPACT_AFTER_CHANGES: u64 = 20_000;
const COMPACT_AFTER_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    format: String,
    version: u32,
    /// Since version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store_id: Option<StoreId>,
    generation: u64,
    configuration: Configuration,
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalHeader {
    format: String,
    version: u32,
    /// Since version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store_id: Option<StoreId>,
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
    store_id: Option<StoreId>,
    base_generation: u64,
    entries: Vec<JournalEntry>,
    /// Bytes up to the end of the last complete record.
    complete_length: u64,
    /// An unterminated last record follows `complete_length`.
    torn: bool,
}

/// What the snapshot and the journal add up to, before anything is changed on disk.
struct Replayed {
    configuration: Configuration,
    generation: u64,
    store_id: Option<StoreId>,
    /// How to go on with the journal.
    journal: Next,
}

enum Next {
    /// Append to it: it holds `changes` records, and an unterminated one after
    /// `torn_after` bytes if that is set.
    Append { changes: u64, torn_after: Option<u64> },
    /// Write the store again in the current format (it is older, or its journal is missing).
    Rewrite { torn_after: Option<u64> },
}

/// The journal, open for appending.
struct OpenJournal {
    /// Shared with the group sync, which fsyncs it outside the service's lock.
    file: Arc<File>,
    /// Bytes up to the end of the last record written whole.
    length: u64,
    changes: u64,
}

pub struct FileStore {
    directory: PathBuf,
    /// Compact once the journal holds this many changes or bytes.
    compact_after: (u64, u64),
    /// A failed compaction is tried again once the journal holds this many changes.
    compact_retry_at: u64,
    accept_data_loss: bool,
    /// Known once the store is loaded.
    store_id: Option<StoreId>,
    /// The last generation written (durable once the group sync says so).
    generation: u64,
    /// Makes what is written durable, one fsync for many changes.
    group: Arc<GroupSync>,
    /// `None` once the journal's tail cannot be trusted: the next append rebuilds the store.
    journal: Option<OpenJournal>,
    /// Why the last write failed, until one succeeds again.
    failed: Option<String>,
    /// Declared before `_lock`, so that its last write of the mark, when the store is dropped,
    /// happens while the store is still locked.
    keeper: Option<MarkKeeper>,
    /// Held for the store's whole life: two services on one store would lose writes.
    _lock: File,
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
            compact_retry_at: 0,
            accept_data_loss: false,
            store_id: None,
            generation: 0,
            group: Arc::new(GroupSync::new(0)),
            journal: None,
            failed: None,
            keeper: None,
            _lock: lock,
        })
    }

    /// Compacts after `changes` journal records or `bytes` of journal instead of the defaults.
    pub fn compact_after(mut self, changes: u64, bytes: u64) -> Self {
        self.compact_after = (changes, bytes);
        self
    }

    /// With `true`, [`Store::load`] starts on files that lost changes the store acknowledged
    /// (a journal deleted or cut short, another store's files, a damaged mark) instead of
    /// refusing: it carries on with what is left, says what was lost, and resets the mark.
    pub fn accept_data_loss(mut self, accept: bool) -> Self {
        self.accept_data_loss = accept;
        self
    }

    /// Gives a new, empty store the configuration `stored` holds, at its generation
    /// (`flocker-control migrate`). Refused once the store holds anything.
    pub fn fill(&mut self, stored: &Stored) -> Result<(), StoreError> {
        let current = self.load()?;
        if current.generation != 0 || current.configuration != Configuration::default() {
            return Err(StoreError::Refused {
                store: self.directory.display().to_string(),
                reason: "it already holds a configuration; migrate only into an empty store".into(),
            });
        }
        self.compact(&stored.configuration, stored.generation)?;
        self.generation = stored.generation;
        if let Some(keeper) = &self.keeper {
            keeper.reached(stored.generation);
        }
        Ok(())
    }

    fn snapshot_path(&self) -> PathBuf {
        self.directory.join(SNAPSHOT)
    }

    fn journal_path(&self) -> PathBuf {
        self.directory.join(JOURNAL)
    }

    fn mark_path(&self) -> PathBuf {
        self.directory.join(MARK)
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
            store_id: header.store_id,
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

    /// Applies the journal to the snapshot, checking that they belong together. Changes nothing
    /// on disk.
    fn replay(
        &self,
        snapshot: Option<SnapshotRecord>,
        journal: JournalContents,
    ) -> Result<Replayed, StoreError> {
        let outdated = journal.version < FORMAT_VERSION
            || snapshot.as_ref().is_some_and(|s| s.version < FORMAT_VERSION);
        let store_id = match (snapshot.as_ref().and_then(|s| s.store_id), journal.store_id) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                let why = format!(
                    "it belongs to store {ours}, and the journal beside it to store {theirs}"
                );
                return Err(damaged(&self.snapshot_path(), &why));
            }
            (ours, theirs) => ours.or(theirs),
        };
        let (mut configuration, snapshot_generation) = match snapshot {
            Some(s) => (s.configuration, s.generation),
            None if journal.base_generation > 0 => {
                let why = format!(
                    "it is missing, though the journal starts after generation {}",
                    journal.base_generation
                );
                return Err(damaged(&self.snapshot_path(), &why));
            }
            None if journal.version >= 3 => {
                let why = "it is missing, though the journal was started beside one";
                return Err(damaged(&self.snapshot_path(), why));
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
        let torn_after = journal.torn.then_some(journal.complete_length);
        let journal = if outdated {
            Next::Rewrite { torn_after }
        } else {
            Next::Append { changes: journal.entries.len() as u64, torn_after }
        };
        Ok(Replayed { configuration, generation, store_id, journal })
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

    fn current_store_id(&self) -> Result<StoreId, StoreError> {
        let not_loaded = || io::Error::other("the store was not loaded");
        self.store_id.ok_or_else(|| io_error("write", &self.directory, not_loaded()))
    }

    /// Starts an empty journal whose records follow `base_generation`.
    fn start_journal(&mut self, base_generation: u64) -> Result<(), StoreError> {
        let path = self.journal_path();
        let header = JournalHeader {
            format: JOURNAL_FORMAT.to_owned(),
            version: FORMAT_VERSION,
            store_id: Some(self.current_store_id()?),
            base_generation,
        };
        let bytes = frame(&header).map_err(|e| io_error("encode", &path, io::Error::other(e)))?;
        self.journal = None;
        replace_file(&path, &bytes).map_err(|source| io_error("write", &path, source))?;
        self.open_journal(0, base_generation)
    }

    /// Opens the journal, which holds `changes` records, all durable up to `durable`.
    fn open_journal(&mut self, changes: u64, durable: u64) -> Result<(), StoreError> {
        let path = self.journal_path();
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| io_error("open", &path, source))?;
        let length = file.metadata().map_err(|source| io_error("stat", &path, source))?.len();
        let file = Arc::new(file);
        self.group.journal(file.clone(), durable);
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
            store_id: Some(self.current_store_id()?),
            generation,
            configuration: configuration.clone(),
        };
        let bytes = frame(&snapshot).map_err(|e| io_error("encode", &path, io::Error::other(e)))?;
        replace_file(&path, &bytes).map_err(|source| io_error("write", &path, source))
    }

    /// A new store with a new identity: empty, or holding what Flocker's control service left
    /// in the same directory (which is left as it was). Snapshot first, then the journal: a
    /// crash in between leaves a snapshot of generation 0 alone, which loading finishes.
    fn create(&mut self) -> Result<Stored, StoreError> {
        self.store_id = Some(StoreId::random());
        let flocker = self.directory.join(FLOCKER_CONFIGURATION);
        if !flocker.exists() {
            self.compact(&Configuration::default(), 0)?;
            return Ok(Stored::default());
        }
        let configuration = flocker_import::import(&flocker)
            .map_err(|problem| damaged(&flocker, &format!("{problem}; it was not imported")))?;
        self.compact(&configuration, 0)?;
        log::info!(
            "imported {} datasets, {} leases and {} block devices from Flocker's {} into a new \
             store; that file is left as it was and no longer read",
            configuration.datasets.len(),
            configuration.leases.len(),
            configuration.blockdevice_ownership.len(),
            flocker.display()
        );
        Ok(Stored { configuration, generation: 0 })
    }

    /// A new snapshot and an empty journal. If the journal cannot be started, the store is
    /// left to be rebuilt by the next append.
    fn compact(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        self.write_snapshot(configuration, generation)?;
        self.start_journal(generation).inspect_err(|error| {
            self.failed.get_or_insert_with(|| error.to_string());
        })
    }

    /// Makes the journal fit to append to after a failed write, if it is not: a journal that
    /// was cut back after a failed `write` is, once the cut is seen to have held; otherwise
    /// the store is rebuilt from `current`.
    fn recover(&mut self, current: &Configuration) -> Result<(), StoreError> {
        if self.failed.is_none() {
            return Ok(());
        }
        let cut_back = self.journal.as_ref().is_some_and(|journal| {
            journal.file.metadata().is_ok_and(|m| m.len() == journal.length)
        });
        if !cut_back {
            self.compact(current, self.generation)?;
            log::info!(
                "rewrote the store in {} from memory at generation {}, away from the file \
                 whose write failed",
                self.directory.display(),
                self.generation
            );
        }
        Ok(())
    }

    /// What loading makes of the files and the mark, refusing a loss unless the operator
    /// accepted it (and saying so, unless `accepted` says it was said). `files`: what the
    /// snapshot and journal hold, if anything.
    fn judge(
        &self,
        mark: Option<Mark>,
        files: Option<&Replayed>,
        accepted: bool,
    ) -> Result<(Verdict, bool), StoreError> {
        let found = files.map(|f| Found { store_id: f.store_id, generation: f.generation });
        let verdict = mark::check(mark, found);
        let Verdict::Lost(loss) = verdict else { return Ok((verdict, false)) };
        let torn = files.is_some_and(|f| {
            matches!(
                f.journal,
                Next::Append { torn_after: Some(_), .. } | Next::Rewrite { torn_after: Some(_) }
            )
        });
        let error = self.loss(loss, torn);
        if !self.accept_data_loss {
            return Err(error);
        }
        if !accepted {
            warn_accepted(&error, "carrying on with what is left; the mark now follows it");
        }
        Ok((verdict, true))
    }

    /// What was lost, naming the files.
    fn loss(&self, loss: Loss, torn: bool) -> StoreError {
        let mark_path = self.mark_path();
        let records = format!("as {} records", mark_path.display());
        let problem = match loss {
            Loss::Missing { mark } => format!(
                "is missing, but this store ({}) had reached generation {}, {records}",
                mark.store_id, mark.generation
            ),
            Loss::Behind { mark, found } => format!(
                "ends at generation {found}{}, but this store had reached generation {}, \
                 {records}: changes {} to {} are missing",
                if torn { " (and then a record cut short)" } else { "" },
                mark.generation,
                found + 1,
                mark.generation
            ),
            Loss::Foreign { mark, found: Some(other) } => format!(
                "belongs to store {other}, but {} says this data path holds store {}, which \
                 had reached generation {}: these are another store's files",
                mark_path.display(),
                mark.store_id,
                mark.generation
            ),
            Loss::Foreign { mark, found: None } => format!(
                "was written by a release older than store identities, but {} says this data \
                 path holds store {}, which had reached generation {}: were the files put back \
                 from an old backup?",
                mark_path.display(),
                mark.store_id,
                mark.generation
            ),
        };
        StoreError::Lost { what: "journal", path: self.journal_path(), problem }
    }

    /// The mark on disk: `None` if missing, or if damaged and the operator accepted that.
    fn read_mark(&self) -> Result<(Option<Mark>, bool), StoreError> {
        let path = self.mark_path();
        match mark::read(&path)? {
            None => Ok((None, false)),
            Some(Ok(mark)) => Ok((Some(mark), false)),
            Some(Err(problem)) => {
                let error = StoreError::Lost {
                    what: "mark",
                    path,
                    problem: format!(
                        "is damaged ({problem}): the store cannot tell whether changes it \
                         acknowledged are missing"
                    ),
                };
                if !self.accept_data_loss {
                    return Err(error);
                }
                warn_accepted(&error, "making the mark again from the snapshot and journal");
                Ok((None, true))
            }
        }
    }
}

impl Store for FileStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        let snapshot = self.read_snapshot()?;
        let journal = self.read_journal()?;
        let (mark, mut accepted) = self.read_mark()?;
        let files = match (snapshot, journal) {
            (None, None) => None,
            (Some(snapshot), None) if snapshot.generation == 0 && mark.is_none() => {
                // A new store whose making stopped between the snapshot and the journal.
                log::info!(
                    "{}: finishing a store whose making was interrupted",
                    self.directory.display()
                );
                Some(Replayed {
                    configuration: snapshot.configuration,
                    generation: 0,
                    store_id: snapshot.store_id,
                    journal: Next::Rewrite { torn_after: None },
                })
            }
            (Some(snapshot), None) => {
                let error = StoreError::Lost {
                    what: "journal",
                    path: self.journal_path(),
                    problem: format!(
                        "is missing, though the snapshot beside it exists (generation {}){}",
                        snapshot.generation,
                        mark.map_or(String::new(), |mark| format!(
                            "; this store had reached generation {}, as {} records",
                            mark.generation,
                            self.mark_path().display()
                        ))
                    ),
                };
                if !self.accept_data_loss {
                    return Err(error);
                }
                warn_accepted(&error, "carrying on from the snapshot alone");
                accepted = true;
                Some(Replayed {
                    configuration: snapshot.configuration,
                    generation: snapshot.generation,
                    store_id: snapshot.store_id,
                    journal: Next::Rewrite { torn_after: None },
                })
            }
            (snapshot, Some(journal)) => Some(self.replay(snapshot, journal)?),
        };
        let (verdict, lost) = self.judge(mark, files.as_ref(), accepted)?;
        accepted |= lost;

        let stored = match files {
            None => self.create()?,
            Some(Replayed { configuration, generation, store_id, journal }) => {
                self.store_id = Some(store_id.unwrap_or_else(StoreId::random));
                self.generation = generation;
                let (Next::Append { torn_after, .. } | Next::Rewrite { torn_after }) = journal;
                if let Some(complete_length) = torn_after {
                    self.drop_torn_record(complete_length)?;
                }
                match journal {
                    Next::Append { changes, .. } => self.open_journal(changes, generation)?,
                    Next::Rewrite { .. } => {
                        self.compact(&configuration, generation)?;
                        log::info!(
                            "rewrote the store in {} (format version {FORMAT_VERSION})",
                            self.directory.display()
                        );
                    }
                }
                Stored { configuration, generation }
            }
        };

        let store_id = self.current_store_id()?;
        let path = self.mark_path();
        match verdict {
            Verdict::Intact { .. } | Verdict::New | Verdict::Lost(_) => {}
            Verdict::Unmarked { store_id: None } => log::info!(
                "the store in {} now has an identity, {store_id}, and a mark, {}",
                self.directory.display(),
                path.display()
            ),
            Verdict::Unmarked { store_id: Some(_) } if stored.generation == 0 => {}
            Verdict::Unmarked { store_id: Some(_) } => log::warn!(
                "{} was missing: it is made again from the journal, at generation {}; a loss \
                 of changes before this start could not be detected",
                path.display(),
                stored.generation
            ),
        }
        if self.accept_data_loss && !accepted {
            log::warn!(
                "{ACCEPT_DATA_LOSS} was given, and nothing was missing: remove it, so that a \
                 loss stops the service again"
            );
        }
        let wanted = Mark { store_id, generation: stored.generation };
        let keeper = MarkKeeper::start(&path, wanted, mark)?;
        if !matches!(verdict, Verdict::Intact { .. }) {
            keeper.write_now()?;
        }
        self.keeper = Some(keeper);
        Ok(stored)
    }

    fn append(
        &mut self,
        current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<(), StoreError> {
        let ticket = self.write_change(current, generation, change)?;
        match self.group.sync_through(ticket) {
            Ok(()) => {
                if let Some(keeper) = &self.keeper {
                    keeper.reached(generation);
                }
                Ok(())
            }
            Err(why) => {
                let failure = self.group.take_failure();
                let durable = failure.map_or(generation - 1, |(durable, _)| durable);
                self.sync_failed(durable, &why);
                Err(io_error("fsync", &self.journal_path(), io::Error::other(why)))
            }
        }
    }

    fn append_deferred(
        &mut self,
        current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<Option<Ticket>, StoreError> {
        self.write_change(current, generation, change).map(Some)
    }

    fn group_sync(&self) -> Option<Arc<GroupSync>> {
        Some(self.group.clone())
    }

    fn sync_failed(&mut self, durable: u64, why: &str) {
        // Nothing after `durable` can be trusted: the next append rebuilds the store from
        // the configuration in memory, which the service took back to `durable`.
        self.generation = durable;
        self.journal = None;
        self.failed = Some(why.to_owned());
    }

    fn applied(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        self.compact_if_due(configuration, generation)
    }
}

impl FileStore {
    /// Writes `change` to the journal, to be made durable by the group sync.
    fn write_change(
        &mut self,
        current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<Ticket, StoreError> {
        debug_assert_eq!(generation, self.generation + 1, "changes are appended in order");
        self.recover(current)?;
        if let Some(keeper) = &self.keeper {
            keeper.reached(self.group.durable()); // the mark never runs ahead of the journal
        }
        let path = self.journal_path();
        let Some(journal) = self.journal.as_mut() else {
            let not_open = io::Error::other("the journal is not open");
            return Err(io_error("append to", &path, not_open));
        };
        let bytes = frame(&JournalEntry { generation, change })
            .map_err(|e| io_error("encode", &path, io::Error::other(e)))?;
        match (&*journal.file).write_all(&bytes) {
            Ok(()) => {
                journal.length += bytes.len() as u64;
                journal.changes += 1;
                self.generation = generation;
                let ticket = self.group.wrote(generation);
                if let Some(reason) = self.failed.take() {
                    log::info!("{}: writing again after a failed write ({reason})", path.display());
                }
                Ok(ticket)
            }
            Err(source) => {
                // Cut off whatever part of the record reached the file, so that even a crash
                // before the next append cannot bring back a change that was refused.
                let cut =
                    journal.file.set_len(journal.length).and_then(|()| journal.file.sync_all());
                if cut.is_err() {
                    // The next append rebuilds the store instead of trusting this file.
                    self.journal = None;
                }
                self.failed = Some(source.to_string());
                Err(io_error("append to", &path, source))
            }
        }
    }

    fn compact_if_due(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        let (changes, bytes) = self.compact_after;
        let Some(journal) = self.journal.as_ref() else { return Ok(()) };
        let due = (journal.changes >= changes || journal.length >= bytes)
            && journal.changes >= self.compact_retry_at;
        if due {
            if let Err(error) = self.compact(configuration, generation) {
                // Not again at once: a snapshot that does not fit would be written at each change.
                let journal_changes = self.journal.as_ref().map_or(0, |j| j.changes);
                self.compact_retry_at = journal_changes + (changes / 10).max(1);
                return Err(error);
            }
            self.compact_retry_at = 0;
            log::info!("compacted the store at generation {generation}");
        }
        Ok(())
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // The keeper writes the mark a last time as it stops: with all that became durable.
        if let Some(keeper) = &self.keeper {
            keeper.reached(self.group.durable());
        }
    }
}

/// Says, loudly, that the operator accepted `error` (a [`StoreError::Lost`]).
fn warn_accepted(error: &StoreError, carrying_on: &str) {
    if let StoreError::Lost { what, path, problem } = error {
        log::warn!("{ACCEPT_DATA_LOSS}: the {what} {} {problem}; {carrying_on}", path.display());
    }
}

/// Replaces `path` with `bytes` as `flocker_host::durable::write_atomically` does (temporary
/// file in the same directory, fsync, rename, fsync the directory), and removes the temporary
/// file if that fails: a half-written copy must not keep a full disk full.
pub(super) fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let directory = path.parent().ok_or_else(|| io::Error::other("path has no parent"))?;
    let name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?;
    let temporary = directory.join(format!(".{}.tmp", name.to_string_lossy()));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.and_then(|()| sync_directory(directory))
}

pub(super) fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
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

pub(super) fn io_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io(PathError::new(action, path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flocker_api::{AcquireLease, CreateDataset, DatasetId, NodeUuid};

    /// Appends `count` dataset creates through the same path the service takes.
    fn create_datasets(store: &mut FileStore, stored: &mut Stored, count: usize) {
        for _ in 0..count {
            let change = create_change(stored);
            commit(store, stored, change);
        }
    }

    fn create_change(stored: &Stored) -> Change {
        let request = CreateDataset {
            primary: NodeUuid::random(),
            dataset_id: None,
            maximum_size: Some(64 * 1024 * 1024),
            metadata: [("name".to_owned(), "pg".to_owned())].into(),
        };
        let dataset = stored.configuration.plan_create(request, DatasetId::random()).unwrap();
        Change::CreateDataset { dataset }
    }

    fn commit(store: &mut FileStore, stored: &mut Stored, change: Change) {
        store.append(&stored.configuration, stored.generation + 1, &change).unwrap();
        stored.configuration.apply(&change);
        stored.generation += 1;
        store.applied(&stored.configuration, stored.generation).unwrap();
    }

    fn reopen(dir: &Path) -> Result<Stored, StoreError> {
        FileStore::open(dir)?.load()
    }

    fn reopen_accepting_the_loss(dir: &Path) -> Result<Stored, StoreError> {
        FileStore::open(dir)?.accept_data_loss(true).load()
    }

    fn filled(dir: &Path, count: usize) -> Stored {
        let mut store = FileStore::open(dir).unwrap();
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, count);
        stored
    }

    fn mark_of(dir: &Path) -> Mark {
        mark::read(&dir.join(MARK)).unwrap().unwrap().unwrap()
    }

    /// The journal's lines, each with its newline.
    fn journal_lines(dir: &Path) -> Vec<Vec<u8>> {
        let bytes = fs::read(dir.join(JOURNAL)).unwrap();
        bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
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
    fn the_mark_follows_the_journal_and_is_up_to_date_once_the_store_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
        let mut stored = store.load().unwrap();
        let created = mark_of(dir.path());
        assert_eq!(created.generation, 0, "a new store is marked at once");
        create_datasets(&mut store, &mut stored, 3);
        std::thread::sleep(mark::MARK_INTERVAL * 5);
        assert_eq!(mark_of(dir.path()), Mark { generation: 3, ..created }, "within an interval");
        create_datasets(&mut store, &mut stored, 2);
        drop(store);
        assert_eq!(mark_of(dir.path()), Mark { generation: 5, ..created });
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
    fn a_torn_append_after_the_last_acknowledged_change_is_dropped_and_the_journal_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let stored = filled(dir.path(), 3);
        // A crash in the middle of writing change 4, which was never acknowledged.
        let last = journal_lines(dir.path()).pop().unwrap();
        let mut journal = OpenOptions::new().append(true).open(dir.path().join(JOURNAL)).unwrap();
        journal.write_all(&last[..last.len() / 2]).unwrap();

        assert_eq!(reopen(dir.path()).unwrap(), stored);
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

    /// Loading fails with `StoreError::Lost` naming `file` and saying `words`.
    fn assert_lost(result: Result<Stored, StoreError>, file: &str, words: &str) {
        match result {
            Err(error @ StoreError::Lost { .. }) => {
                let message = error.to_string();
                assert!(message.contains(file), "{message}");
                assert!(message.contains(words), "{message}");
                assert!(message.contains(ACCEPT_DATA_LOSS), "{message}");
            }
            other => panic!("expected a refusal for lost changes, got {other:?}"),
        }
    }

    #[test]
    fn a_deleted_journal_is_refused_by_name_and_with_the_flag_the_store_starts_anew() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 3);
        let before = mark_of(dir.path());
        fs::remove_file(dir.path().join(JOURNAL)).unwrap();
        fs::remove_file(dir.path().join(SNAPSHOT)).unwrap();
        assert_lost(reopen(dir.path()), JOURNAL, "had reached generation 3");
        assert!(!dir.path().join(JOURNAL).exists(), "nothing is made while refusing");

        assert_eq!(reopen_accepting_the_loss(dir.path()).unwrap(), Stored::default());
        let after = mark_of(dir.path());
        assert_eq!(after.generation, 0);
        assert_ne!(after.store_id, before.store_id, "a new store");
        assert_eq!(reopen(dir.path()).unwrap(), Stored::default(), "the loss was accepted once");
    }

    #[test]
    fn a_deleted_store_is_not_replaced_by_flockers_configuration_imported_again() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2);
        let empty = r#"{"$__class__$": "Configuration", "version": 6, "deployment": {
            "$__class__$": "Deployment", "nodes": {"$__class__$": "PMap", "values": []},
            "leases": {"$__class__$": "PMap", "values": []}}}"#;
        fs::write(dir.path().join(FLOCKER_CONFIGURATION), empty).unwrap();
        fs::remove_file(dir.path().join(JOURNAL)).unwrap();
        fs::remove_file(dir.path().join(SNAPSHOT)).unwrap();
        assert_lost(reopen(dir.path()), JOURNAL, "had reached generation 2");
    }

    #[test]
    fn a_journal_cut_at_a_record_boundary_is_refused_and_with_the_flag_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 5);
        let lines = journal_lines(dir.path());
        fs::write(dir.path().join(JOURNAL), lines[..4].concat()).unwrap(); // header, 1 to 3
        assert_lost(reopen(dir.path()), JOURNAL, "changes 4 to 5 are missing");
        assert_eq!(journal_lines(dir.path()).len(), 4, "the journal is left as it was");

        let stored = reopen_accepting_the_loss(dir.path()).unwrap();
        assert_eq!((stored.generation, stored.configuration.datasets.len()), (3, 3));
        assert_eq!(mark_of(dir.path()).generation, 3, "the mark is reset");
        assert_eq!(reopen(dir.path()).unwrap(), stored);
    }

    #[test]
    fn a_journal_cut_inside_its_last_acknowledged_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 3);
        let journal = dir.path().join(JOURNAL);
        let length = fs::metadata(&journal).unwrap().len();
        OpenOptions::new().write(true).open(&journal).unwrap().set_len(length - 7).unwrap();
        assert_lost(reopen(dir.path()), JOURNAL, "record cut short");
        assert_eq!(fs::metadata(&journal).unwrap().len(), length - 7, "left as it was");
    }

    #[test]
    fn a_journal_put_back_from_an_older_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap().compact_after(4, u64::MAX);
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, 2);
        let (snapshot, journal) =
            (fs::read(dir.path().join(SNAPSHOT)).unwrap(), journal_lines(dir.path()));
        create_datasets(&mut store, &mut stored, 4); // compacts at 4
        drop(store);
        fs::write(dir.path().join(SNAPSHOT), snapshot).unwrap();
        fs::write(dir.path().join(JOURNAL), journal.concat()).unwrap();
        assert_lost(reopen(dir.path()), JOURNAL, "ends at generation 2");
    }

    #[test]
    fn another_stores_files_are_refused() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        filled(ours.path(), 1);
        filled(theirs.path(), 4);
        for file in [SNAPSHOT, JOURNAL] {
            fs::copy(theirs.path().join(file), ours.path().join(file)).unwrap();
        }
        assert_lost(reopen(ours.path()), JOURNAL, "another store's files");
        let stored = reopen_accepting_the_loss(ours.path()).unwrap();
        assert_eq!(stored.generation, 4);
        assert_eq!(mark_of(ours.path()).store_id, mark_of(theirs.path()).store_id);
    }

    #[test]
    fn a_missing_mark_is_made_again_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let stored = filled(dir.path(), 3);
        let before = mark_of(dir.path());
        fs::remove_file(dir.path().join(MARK)).unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), stored);
        assert_eq!(mark_of(dir.path()), before);
    }

    #[test]
    fn a_damaged_mark_is_refused_and_with_the_flag_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let stored = filled(dir.path(), 3);
        let before = mark_of(dir.path());
        fs::write(dir.path().join(MARK), "garbage\n").unwrap();
        assert_lost(reopen(dir.path()), MARK, "damaged");
        assert_eq!(reopen_accepting_the_loss(dir.path()).unwrap(), stored);
        assert_eq!(mark_of(dir.path()), before);
    }

    #[test]
    fn a_store_whose_making_was_interrupted_after_its_snapshot_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 0);
        fs::remove_file(dir.path().join(JOURNAL)).unwrap();
        fs::remove_file(dir.path().join(MARK)).unwrap();
        assert_eq!(reopen(dir.path()).unwrap(), Stored::default());
        assert!(dir.path().join(JOURNAL).exists());
    }

    #[test]
    fn a_failed_write_is_not_applied_and_the_store_writes_again_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
        let mut stored = store.load().unwrap();
        create_datasets(&mut store, &mut stored, 2);
        // The journal's next write fails for lack of space, and so does its cut.
        let journal = dir.path().join(JOURNAL);
        fs::remove_file(&journal).unwrap();
        std::os::unix::fs::symlink("/dev/full", &journal).unwrap();
        store.open_journal(2, 2).unwrap();
        let refused = create_change(&stored);
        let error = store.append(&stored.configuration, 3, &refused).unwrap_err();
        assert!(error.is_out_of_space(), "{error}");

        // The next append rebuilds the store from memory, away from the failed file.
        create_datasets(&mut store, &mut stored, 2);
        drop(store);
        assert!(fs::symlink_metadata(&journal).unwrap().is_file());
        assert_eq!(
            reopen(dir.path()).unwrap(),
            stored,
            "every acknowledged change, and not the refused one"
        );
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
        assert_lost(reopen(dir.path()), JOURNAL, "missing, though the snapshot");
        // With the flag, the snapshot is what is left.
        assert_eq!(reopen_accepting_the_loss(dir.path()).unwrap(), stored);
    }

    #[test]
    fn a_journal_of_version_3_without_its_snapshot_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2);
        fs::remove_file(dir.path().join(SNAPSHOT)).unwrap();
        assert_damaged(dir.path(), SNAPSHOT, "missing");
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

    /// Rewrites the journal's header to say `version` (without an identity below version 3).
    fn set_journal_version(dir: &Path, version: u32) {
        let path = dir.join(JOURNAL);
        let text = fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let mut header: serde_json::Value = unframe(lines.next().unwrap().as_bytes()).unwrap();
        header["version"] = version.into();
        if version < 3 {
            header.as_object_mut().unwrap().remove("store_id");
        }
        let mut bytes = frame(&header).unwrap();
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        fs::write(&path, bytes).unwrap();
    }

    /// A store as release 0.1.0 wrote it (format version 1, no mark): an empty snapshot (as an
    /// import of nothing leaves) and a journal of three creates.
    fn version_1_store(dir: &Path) -> Stored {
        let stored = filled(dir, 3);
        set_journal_version(dir, 1);
        let snapshot = SnapshotRecord {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: 1,
            store_id: None,
            generation: 0,
            configuration: Configuration::default(),
        };
        let mut value = serde_json::to_value(&snapshot).unwrap();
        value["configuration"].as_object_mut().unwrap().remove("volumes_reported");
        fs::write(dir.join(SNAPSHOT), frame(&value).unwrap()).unwrap();
        fs::remove_file(dir.join(MARK)).unwrap();
        stored
    }

    #[test]
    fn a_version_1_store_is_read_and_rewritten_as_the_current_version_with_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let stored = version_1_store(dir.path());
        assert_eq!(reopen(dir.path()).unwrap(), stored);
        let header = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        let header: JournalHeader = unframe(header.lines().next().unwrap().as_bytes()).unwrap();
        assert_eq!(header.version, FORMAT_VERSION);
        let snapshot = FileStore::open(dir.path()).unwrap().read_snapshot().unwrap().unwrap();
        assert_eq!((snapshot.version, snapshot.generation), (FORMAT_VERSION, stored.generation));
        let mark = mark_of(dir.path());
        assert_eq!((Some(mark.store_id), snapshot.store_id), (header.store_id, header.store_id));
        assert_eq!(mark.generation, stored.generation);
        assert_eq!(reopen(dir.path()).unwrap(), stored, "the rewritten store reads back");
    }

    #[test]
    fn a_store_of_a_newer_release_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 1);
        set_journal_version(dir.path(), FORMAT_VERSION + 1);
        assert_damaged(dir.path(), JOURNAL, &format!("format version {}", FORMAT_VERSION + 1));
    }

    #[test]
    fn the_flag_that_accepts_a_loss_is_the_one_the_messages_name() {
        use clap::Parser;
        let options =
            crate::options::Options::try_parse_from(["flocker-control", ACCEPT_DATA_LOSS]);
        assert!(options.unwrap().accept_data_loss);
    }
}
