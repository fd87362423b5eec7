//! Where the desired configuration is kept between runs, behind a small trait: the file store
//! under `--data-path` (one control service), or ZooKeeper (`--store zk://…`: a control service
//! on every Mesos master, all sharing one configuration).
//!
//! The contract: [`Store::append`] returns only once the change is durable (it survives
//! `kill -9` and power loss); the service acknowledges a request only after that. A store may
//! defer durability to a group sync shared by the changes written meanwhile
//! ([`Store::append_deferred`], the file store's group commit): the service then applies the
//! change at once, and shows it and acknowledges it only once it is durable. [`Store::load`] gives back exactly what was appended, or refuses with a message
//! naming what is damaged or missing — never an empty or shorter configuration in place of
//! the one it had, unless the operator accepts the loss (`--accept-data-loss`). A failed
//! append changes nothing, and the store writes again once the cause is gone (a full disk
//! freed), without a restart.
//!
//! A shared store (ZooKeeper) has other writers: [`Store::append`] then succeeds only if no
//! other service wrote since the store last caught up ([`StoreError::Conflict`] otherwise), and
//! [`Store::catch_up`] hands over what the others wrote, so the service can decide again.

mod file;
pub mod flocker_import;
pub mod group;
mod mark;
mod timed;
pub mod zookeeper;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use file::FileStore;
pub use flocker_import::FLOCKER_CONFIGURATION;
pub use group::{GroupSync, Ticket};
pub use timed::TimedStore;

use crate::model::{Change, Configuration};
use flocker_host::PathError;

/// The flag that lets the service start on a store that lost changes it had acknowledged.
pub const ACCEPT_DATA_LOSS: &str = "--accept-data-loss";

/// What a store holds: the configuration and how many changes made it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub configuration: Configuration,
    /// The number of the last change applied; 0 for a new store.
    pub generation: u64,
}

pub trait Store: Send {
    /// Reads everything stored. Called once, before any append.
    fn load(&mut self) -> Result<Stored, StoreError>;

    /// Durably records `change` as number `generation`, which follows `current` (the
    /// configuration as of `generation - 1`). After a failed write the store does not trust
    /// what it wrote last: it first rebuilds itself from `current`, so it writes again as soon
    /// as the cause is gone.
    fn append(
        &mut self,
        current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<(), StoreError>;

    /// [`Store::append`], but it may return before the change is durable: then it returns the
    /// ticket to wait for with its group sync ([`Store::group_sync`]). The caller
    /// applies the change at once, so that the next changes follow it, but shows it to nobody
    /// and answers nobody about it until that sync succeeded; if it fails, the caller takes
    /// back every change after the durable one, then calls [`Store::sync_failed`].
    fn append_deferred(
        &mut self,
        current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<Option<Ticket>, StoreError> {
        self.append(current, generation, change).map(|()| None)
    }

    /// The group sync of a store whose appends are deferred (one, for the store's life).
    fn group_sync(&self) -> Option<Arc<GroupSync>> {
        None
    }

    /// A group sync failed; the caller took its configuration back to `durable`, which is what
    /// the store must hold from now on (it trusts nothing written after it).
    fn sync_failed(&mut self, _durable: u64, _why: &str) {}

    /// Called after each applied change with the configuration as it now is, so the store can
    /// compact its history.
    fn applied(&mut self, configuration: &Configuration, generation: u64)
    -> Result<(), StoreError>;

    /// What other services wrote after `generation`. With `confirm`, nothing acknowledged to
    /// anyone before this call is missed (a ZooKeeper `sync` first): read-your-writes across
    /// services. A store that only this service writes has nothing to give.
    fn catch_up(&mut self, _generation: u64, _confirm: bool) -> Result<CatchUp, StoreError> {
        Ok(CatchUp::Changes(Vec::new()))
    }

    /// Waits, as a write does, until the store can be reached (a shared store's connection
    /// found a server again), or fails once it has waited as long as a write would. A write
    /// calls it before it catches up: [`Store::catch_up`] fails at once while the store cannot
    /// be reached, so that reads answer from the last view rather than wait.
    fn wait_until_reachable(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// For a store several services share: its identity, the same for all of them, so that
    /// they give one configuration the same tag. `None` for a store of this service alone.
    fn shared_identity(&self) -> Option<u64> {
        None
    }
}

/// What [`Store::catch_up`] found.
#[derive(Debug)]
pub enum CatchUp {
    /// The changes after the caller's generation, in order (none: it is current).
    Changes(Vec<(u64, Change)>),
    /// The history after the caller's generation was compacted away: the whole configuration.
    Reload(Stored),
}

/// Whether a shared store's view is confirmed current. Shared by the store, the thread that
/// follows it, and the HTTP layer, which says how old the view is while it is not.
#[derive(Debug, Default)]
pub struct ViewHealth {
    unconfirmed_since: Mutex<Option<Instant>>,
}

impl ViewHealth {
    /// The view was just confirmed current.
    pub fn confirmed(&self) {
        *self.lock() = None;
    }

    /// The store could not be reached; the view stays as it was last confirmed.
    pub fn unconfirmed(&self) {
        self.lock().get_or_insert_with(Instant::now);
    }

    /// How long the view has gone unconfirmed, if it has.
    pub fn unconfirmed_for(&self) -> Option<Duration> {
        self.lock().map(|since| since.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.unconfirmed_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(
        "{} is damaged ({problem}); the control service will not start on a damaged store. \
         Restore the data path from a backup; moving the store away starts an empty cluster \
         and forgets every dataset it recorded",
        path.display()
    )]
    Damaged { path: PathBuf, problem: String },
    /// Changes the store acknowledged are not in its files (see `mark.rs`).
    #[error(
        "the {what} {} {problem}; restore it from a backup, or start the control service once \
         with {ACCEPT_DATA_LOSS} to carry on with what is left",
        path.display()
    )]
    Lost { what: &'static str, path: PathBuf, problem: String },
    #[error(
        "{} is locked by another process: is a flocker-control already running with this \
         --data-path?",
        path.display()
    )]
    Locked { path: PathBuf },
    /// A shared store: another service wrote first. Nothing was written; catch up and decide
    /// again.
    #[error("another control service changed the configuration first")]
    Conflict,
    /// A shared store could not be reached; nothing was written.
    #[error("the configuration store {store} is not available ({reason}); nothing was changed")]
    Unavailable { store: String, reason: String },
    /// A shared store refused what it was given, or holds what this service cannot use.
    #[error("the configuration store {store} cannot be used: {reason}")]
    Refused { store: String, reason: String },
    /// A shared store took the change but did not confirm it in time: it may or may not have
    /// been made.
    #[error(
        "the configuration store {store} did not confirm the change ({reason}); it may or may \
         not have been made"
    )]
    Unconfirmed { store: String, reason: String },
}

impl StoreError {
    /// Whether a write failed for lack of space or quota (ENOSPC, EDQUOT): nothing is wrong
    /// with the store, and it writes again once space is freed.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            Self::Io(error) => {
                matches!(
                    error.source.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                )
            }
            _ => false,
        }
    }
}
