//! The mark: the store's identity and the generation it has reached, kept apart from the
//! journal in `configuration.mark`, so that a store which lost changes can tell that it did.
//!
//! Without it, a deleted journal looks like a data path never used (an empty cluster), and a
//! journal cut at a record boundary looks whole (fewer datasets): both start without a word,
//! and agents then unmount what is no longer listed. With it, loading compares the files with
//! the mark ([`check`]) and refuses to start when the files hold less than the mark says was
//! reached, or belong to another store.
//!
//! The mark is a lower bound, never ahead of the journal: it is written (temporary file, fsync,
//! rename, fsync of the directory) only with a generation already fsynced in the journal, by
//! a thread of its own ([`MarkKeeper`]) at most every [`MARK_INTERVAL`] while changes come and
//! once more when the store closes, so an append still costs one fsync. What that buys:
//! - detected: a journal (and snapshot) deleted while the mark is there; a journal cut, at a
//!   record boundary or inside a record, that loses a change the mark covers; files put back
//!   from an older backup of the same store, or from another store, under a newer mark; a
//!   damaged mark (it stops the service too: it can no longer tell);
//! - not detected: the loss of the changes acknowledged in the last [`MARK_INTERVAL`] before a
//!   crash (`kill -9`, power loss) — or, while the mark cannot be written (a full disk; it is
//!   logged), since it last was — when the journal is also cut at a record boundary or inside
//!   its last record afterwards (a crash itself cuts nothing acknowledged: each change is
//!   fsynced before it is acknowledged); the whole data path lost, mark included (that is a
//!   new store), or put back from an old backup, mark included; a mark deleted and then the
//!   journal cut (the mark is made again from the journal, with a warning); a disk that loses
//!   fsynced writes of both files alike.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use super::file::{io_error, read_if_present, replace_file};
use flocker_host::records::{frame, unframe};

const MARK_FORMAT: &str = "flocker-rs-configuration-mark";
const MARK_VERSION: u32 = 1;

/// How far the mark may fall behind the journal while changes come.
pub const MARK_INTERVAL: Duration = Duration::from_millis(100);

/// A store's identity, made when the store is created (a new data path, or an import of
/// Flocker's configuration) and kept in its snapshot, its journal's header and its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreId(Uuid);

impl StoreId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl std::fmt::Display for StoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the mark says: this store reached at least this generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub store_id: StoreId,
    pub generation: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct MarkRecord {
    format: String,
    version: u32,
    store_id: StoreId,
    generation: u64,
}

/// What loading found in the snapshot and the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// `None` for files written before stores had an identity (format versions 1 and 2).
    pub store_id: Option<StoreId>,
    /// The generation their complete records reach.
    pub generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No files and no mark: a data path never used.
    New,
    /// The files hold at least what the mark says was reached.
    Intact { store_id: StoreId },
    /// Files without a mark: it is made again from them (`None`: files older than identities,
    /// which get one now).
    Unmarked { store_id: Option<StoreId> },
    /// Changes the mark proves were acknowledged are not in the files.
    Lost(Loss),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Neither journal nor snapshot, where the mark says a store was.
    Missing { mark: Mark },
    /// The files end before the generation the mark says was reached.
    Behind { mark: Mark, found: u64 },
    /// The files are another store's, or older than identities, under this store's mark.
    Foreign { mark: Mark, found: Option<StoreId> },
}

/// Compares the files with the mark. Pure, so every case is a unit test.
pub fn check(mark: Option<Mark>, found: Option<Found>) -> Verdict {
    let Some(mark) = mark else {
        return match found {
            None => Verdict::New,
            Some(found) => Verdict::Unmarked { store_id: found.store_id },
        };
    };
    match found {
        None => Verdict::Lost(Loss::Missing { mark }),
        Some(Found { store_id, .. }) if store_id != Some(mark.store_id) => {
            Verdict::Lost(Loss::Foreign { mark, found: store_id })
        }
        Some(Found { generation, .. }) if generation < mark.generation => {
            Verdict::Lost(Loss::Behind { mark, found: generation })
        }
        Some(_) => Verdict::Intact { store_id: mark.store_id },
    }
}

/// Reads the mark at `path`: `Ok(None)` if there is none, `Ok(Err(problem))` if it is damaged.
pub fn read(path: &Path) -> Result<Option<Result<Mark, String>>, StoreError> {
    let Some(bytes) = read_if_present(path)? else { return Ok(None) };
    Ok(Some(decode(&bytes)))
}

fn decode(bytes: &[u8]) -> Result<Mark, String> {
    let line = bytes.strip_suffix(b"\n").ok_or("its record is unterminated")?;
    let record: MarkRecord = unframe(line)?;
    if record.format != MARK_FORMAT {
        return Err(format!("it is a '{}' file, not '{MARK_FORMAT}'", record.format));
    }
    if record.version != MARK_VERSION {
        return Err(format!(
            "it is format version {}, and this flocker-control reads version {MARK_VERSION}",
            record.version
        ));
    }
    Ok(Mark { store_id: record.store_id, generation: record.generation })
}

fn encode(mark: Mark) -> Vec<u8> {
    let record = MarkRecord {
        format: MARK_FORMAT.to_owned(),
        version: MARK_VERSION,
        store_id: mark.store_id,
        generation: mark.generation,
    };
    frame(&record).unwrap_or_default() // a struct of strings and numbers always encodes
}

/// Keeps the mark in step with the journal, off the request path.
pub struct MarkKeeper {
    shared: Arc<Shared>,
    /// Dropping it stops the thread, which writes the mark a last time.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    /// What the mark should say: the store and the last generation fsynced in its journal.
    wanted: Mutex<Mark>,
    /// What the file says, as far as this process knows; held while the file is written.
    written: Mutex<Option<Mark>>,
    /// The last attempt failed (logged once, until one succeeds).
    failing: AtomicBool,
}

impl Shared {
    fn catch_up(&self) -> Result<(), StoreError> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted = *self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        if *written != Some(wanted) {
            replace_file(&self.path, &encode(wanted))
                .map_err(|source| io_error("write", &self.path, source))?;
            *written = Some(wanted);
        }
        Ok(())
    }
}

impl MarkKeeper {
    /// Keeps the mark at `path`, which says `written` now, saying `wanted` and what follows.
    pub fn start(path: &Path, wanted: Mark, written: Option<Mark>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            wanted: Mutex::new(wanted),
            written: Mutex::new(written),
            failing: AtomicBool::new(false),
        });
        let (stop, stopped) = mpsc::channel();
        let keeper = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-mark".to_owned())
            .spawn(move || keep(&keeper, &stopped))
            .map_err(|source| io_error("start the thread that writes", path, source))?;
        Ok(Self { shared, stop: Some(stop), thread: Some(thread) })
    }

    /// Notes that `generation` is durable in the journal.
    pub fn reached(&self, generation: u64) {
        self.shared.wanted.lock().unwrap_or_else(PoisonError::into_inner).generation = generation;
    }

    /// Writes the mark now if it is behind.
    pub fn write_now(&self) -> Result<(), StoreError> {
        self.shared.catch_up()
    }
}

impl Drop for MarkKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn keep(shared: &Shared, stopped: &mpsc::Receiver<()>) {
    loop {
        let last =
            !matches!(stopped.recv_timeout(MARK_INTERVAL), Err(mpsc::RecvTimeoutError::Timeout));
        match shared.catch_up() {
            Ok(()) => {
                if shared.failing.swap(false, Ordering::Relaxed) {
                    log::info!("{} is up to date again", shared.path.display());
                }
            }
            Err(error) => {
                if !shared.failing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "{:#}; retrying: until it succeeds, a loss of the latest changes cannot \
                         be detected",
                        anyhow::Error::new(error)
                    );
                }
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(store_id: StoreId, generation: u64) -> Option<Mark> {
        Some(Mark { store_id, generation })
    }

    fn found(store_id: Option<StoreId>, generation: u64) -> Option<Found> {
        Some(Found { store_id, generation })
    }

    #[test]
    fn an_empty_data_path_is_a_new_store() {
        assert_eq!(check(None, None), Verdict::New);
    }

    #[test]
    fn a_missing_journal_under_a_mark_is_a_loss_whatever_the_generation() {
        let id = StoreId::random();
        for generation in [0, 12] {
            let m = mark(id, generation).unwrap();
            assert_eq!(check(Some(m), None), Verdict::Lost(Loss::Missing { mark: m }));
        }
    }

    #[test]
    fn files_that_end_before_the_mark_are_a_loss() {
        let id = StoreId::random();
        assert_eq!(
            check(mark(id, 12), found(Some(id), 9)),
            Verdict::Lost(Loss::Behind { mark: mark(id, 12).unwrap(), found: 9 })
        );
    }

    #[test]
    fn files_at_or_past_the_mark_are_intact() {
        // Past: the changes after the mark's last update, which the journal holds itself.
        let id = StoreId::random();
        assert_eq!(check(mark(id, 12), found(Some(id), 12)), Verdict::Intact { store_id: id });
        assert_eq!(check(mark(id, 12), found(Some(id), 15)), Verdict::Intact { store_id: id });
    }

    #[test]
    fn another_stores_files_or_files_older_than_identities_under_a_mark_are_a_loss() {
        let (id, other) = (StoreId::random(), StoreId::random());
        let m = mark(id, 3).unwrap();
        assert_eq!(
            check(Some(m), found(Some(other), 40)),
            Verdict::Lost(Loss::Foreign { mark: m, found: Some(other) })
        );
        assert_eq!(
            check(Some(m), found(None, 40)),
            Verdict::Lost(Loss::Foreign { mark: m, found: None })
        );
    }

    #[test]
    fn files_without_a_mark_are_marked_again() {
        let id = StoreId::random();
        assert_eq!(check(None, found(Some(id), 7)), Verdict::Unmarked { store_id: Some(id) });
        assert_eq!(check(None, found(None, 7)), Verdict::Unmarked { store_id: None });
    }

    #[test]
    fn a_mark_reads_back_and_a_damaged_one_says_why() {
        let m = mark(StoreId::random(), 42).unwrap();
        let bytes = encode(m);
        assert_eq!(decode(&bytes), Ok(m));
        assert!(decode(&bytes[..bytes.len() - 1]).unwrap_err().contains("unterminated"));
        let mut changed = bytes.clone();
        let digit = changed.iter().rposition(|b| *b == b'4').unwrap();
        changed[digit] = b'5';
        assert!(decode(&changed).unwrap_err().contains("checksum"));
    }

    #[test]
    fn the_keeper_writes_what_was_reached_and_a_last_time_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("configuration.mark");
        let id = StoreId::random();
        let keeper = MarkKeeper::start(&path, Mark { store_id: id, generation: 1 }, None).unwrap();
        keeper.write_now().unwrap();
        assert_eq!(read(&path).unwrap(), Some(Ok(mark(id, 1).unwrap())));
        keeper.reached(5);
        drop(keeper);
        assert_eq!(read(&path).unwrap(), Some(Ok(mark(id, 5).unwrap())));
    }
}
