//! Where the desired configuration is kept between runs, behind a small trait so that a
//! replicated backend (ZooKeeper, for clusters that outgrow one control node) can join the
//! file store later.
//!
//! The contract: [`Store::append`] returns only once the change is durable (it survives
//! `kill -9` and power loss); the service applies a change and acknowledges the request only
//! after that. [`Store::load`] gives back exactly what was appended, or refuses with a message
//! naming what is damaged or missing — never an empty or shorter configuration in place of
//! the one it had, unless the operator accepts the loss (`--accept-data-loss`). A failed
//! append changes nothing, and the store writes again once the cause is gone (a full disk
//! freed), without a restart.

mod file;
mod flocker_import;
mod mark;

use std::io;
use std::path::PathBuf;

pub use file::FileStore;
pub use flocker_import::FLOCKER_CONFIGURATION;

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

    /// Called after each applied change with the configuration as it now is, so the store can
    /// compact its history.
    fn applied(&mut self, configuration: &Configuration, generation: u64)
    -> Result<(), StoreError>;
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
            Self::Damaged { .. } | Self::Lost { .. } | Self::Locked { .. } => false,
        }
    }
}
