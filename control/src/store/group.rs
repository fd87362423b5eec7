//! Group commit: many changes, one `fdatasync`. The file store writes each change to its
//! journal at once (under the service's lock, so changes keep their order) and makes it durable
//! here, outside that lock: the first writer to wait syncs the journal for everything written
//! so far, and the writers that arrive meanwhile wait for it, then sync together for what they
//! wrote. Each change is acknowledged only once a sync that covers it succeeded.
//!
//! A failed sync leaves every change after the last durable one in doubt (the kernel may have
//! dropped their pages): they all fail, and nothing succeeds again until the service has taken
//! them back ([`GroupSync::take_failure`], see `crate::undo`) and the store has rebuilt itself.
//! Each failure begins a new epoch: a change taken back may see its generation written again by
//! a later change, and its [`Ticket`] (its generation in its epoch) tells the two apart.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Told of each sync: how long it took, how many changes it made durable, whether it worked.
pub type SyncObserver = Box<dyn Fn(Duration, u64, bool) + Send + Sync>;

#[derive(Default)]
pub struct GroupSync {
    state: Mutex<State>,
    synced: Condvar,
    observer: OnceLock<SyncObserver>,
}

/// A change written to the journal, waiting to be durable: its generation, in the epoch
/// (the count of failed syncs before it) it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub generation: u64,
    epoch: usize,
}

#[derive(Debug, Default)]
struct State {
    /// The journal (a second handle on it), once one is open.
    journal: Option<Arc<File>>,
    /// The last generation written to it.
    written: u64,
    /// The last generation known durable.
    durable: u64,
    /// A writer is syncing the journal now.
    syncing: bool,
    /// Why a sync failed, until the failure is taken.
    failed: Option<String>,
    /// For each failed sync, in order, the last generation durable before it: what of an
    /// older epoch survived it. The epoch now is its length.
    failures: Vec<u64>,
}

impl GroupSync {
    pub fn new(durable: u64) -> Self {
        let state = State { written: durable, durable, ..State::default() };
        Self { state: Mutex::new(state), synced: Condvar::new(), observer: OnceLock::new() }
    }

    /// Tells `observer` of every sync from now on (the metrics); the first observer stays.
    pub fn observe(&self, observer: SyncObserver) {
        let _ = self.observer.set(observer);
    }

    /// Changes are written to `journal` from now on, after `durable` (a new journal follows a
    /// snapshot that holds everything up to it, fsynced).
    pub fn journal(&self, journal: Arc<File>, durable: u64) {
        let mut state = self.lock();
        state.journal = Some(journal);
        state.written = state.written.max(durable);
        state.durable = state.durable.max(durable);
        self.synced.notify_all();
    }

    /// The store wrote `generation` to the journal; it is not durable yet.
    pub fn wrote(&self, generation: u64) -> Ticket {
        let mut state = self.lock();
        state.written = generation;
        Ticket { generation, epoch: state.failures.len() }
    }

    /// What waiting for `generation`, as written by now, takes (for a reader of what was
    /// applied, under the lock that orders writes).
    pub fn ticket(&self, generation: u64) -> Ticket {
        Ticket { generation, epoch: self.lock().failures.len() }
    }

    /// The last generation known durable.
    pub fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// Waits until the ticket's change is durable, syncing the journal if nobody is. Fails if a
    /// sync failed before it was: then it may be lost, and is taken back.
    pub fn sync_through(&self, ticket: Ticket) -> Result<(), String> {
        let Ticket { generation, epoch } = ticket;
        let mut state = self.lock();
        loop {
            if let Some(survived) = state.failures.get(epoch) {
                return match generation <= *survived {
                    true => Ok(()),
                    false => Err("an earlier sync of the journal failed".to_owned()),
                };
            }
            if state.durable >= generation {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let (journal, target, before) = (state.journal.clone(), state.written, state.durable);
            state.syncing = true;
            drop(state);
            let started = Instant::now();
            let synced = match &journal {
                Some(journal) => journal.sync_data().map_err(|e| e.to_string()),
                None => Err("the journal is not open".to_owned()),
            };
            if let Some(observe) = self.observer.get() {
                observe(started.elapsed(), target.saturating_sub(before), synced.is_ok());
            }
            state = self.lock();
            state.syncing = false;
            match synced {
                Ok(()) => state.durable = state.durable.max(target),
                Err(why) => {
                    let durable = state.durable;
                    state.failures.push(durable);
                    state.failed = Some(why);
                }
            }
            self.synced.notify_all();
        }
    }

    /// After a failed sync: the last generation durable, and why it failed; once. From then
    /// on, what is written counts from that generation again.
    pub fn take_failure(&self) -> Option<(u64, String)> {
        let mut state = self.lock();
        let why = state.failed.take()?;
        state.written = state.durable;
        state.journal = None;
        Some((state.durable, why))
    }

    /// For tests: as if a sync were under way until [`Self::end_held_sync`].
    #[cfg(test)]
    pub fn hold_sync(&self) {
        self.lock().syncing = true;
    }

    /// For tests: ends the sync [`Self::hold_sync`] began, durable through a generation or
    /// failed.
    #[cfg(test)]
    pub fn end_held_sync(&self, outcome: Result<u64, String>) {
        let mut state = self.lock();
        state.syncing = false;
        match outcome {
            Ok(durable) => state.durable = state.durable.max(durable),
            Err(why) => {
                let durable = state.durable;
                state.failures.push(durable);
                state.failed = Some(why);
            }
        }
        self.synced.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn journal_in(directory: &std::path::Path) -> Arc<File> {
        let file = File::create(directory.join("journal")).unwrap();
        Arc::new(file)
    }

    #[test]
    fn writers_that_wait_together_share_syncs_and_each_returns_once_durable() {
        let directory = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::new(0));
        let journal = journal_in(directory.path());
        group.journal(journal.clone(), 0);
        let writers: Vec<_> = (1..=40)
            .map(|generation| {
                (&*journal).write_all(b"a change\n").unwrap();
                let ticket = group.wrote(generation);
                let group = group.clone();
                std::thread::spawn(move || {
                    group.sync_through(ticket).unwrap();
                    assert!(group.durable() >= generation);
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(group.durable(), 40);
    }

    #[test]
    fn after_a_failed_sync_every_change_in_doubt_fails_until_the_failure_is_taken() {
        let group = GroupSync::new(7);
        let seven = group.ticket(7);
        let eight = group.wrote(8);
        let nine = group.wrote(9);
        // No journal to sync: the sync fails, as a failing disk's would.
        assert!(group.sync_through(nine).is_err());
        assert!(group.sync_through(eight).is_err(), "8 was in doubt too");
        assert!(group.sync_through(seven).is_ok(), "7 was durable before");
        assert_eq!(group.take_failure().map(|(durable, _)| durable), Some(7));
        assert_eq!(group.take_failure(), None, "taken once");
        let directory = tempfile::tempdir().unwrap();
        group.journal(journal_in(directory.path()), 7);
        let eight_again = group.wrote(8);
        assert_eq!(group.sync_through(eight_again), Ok(()));
        assert!(group.sync_through(eight).is_err(), "the 8 taken back stays refused");
    }

    #[test]
    fn a_writer_waiting_while_another_syncs_returns_once_a_sync_covers_it() {
        let directory = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::new(0));
        group.journal(journal_in(directory.path()), 0);
        group.wrote(1);
        group.hold_sync(); // someone else is syncing, and will not cover 2
        let two = group.wrote(2);
        let waiter = {
            let group = group.clone();
            std::thread::spawn(move || group.sync_through(two))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "it waits for the sync under way");
        group.end_held_sync(Ok(1)); // that sync covered 1 only
        assert_eq!(waiter.join().unwrap(), Ok(()), "then syncs for 2 itself");
        assert_eq!(group.durable(), 2);
    }
}
