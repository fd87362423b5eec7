//! Where the desired configuration is kept between runs, behind a small trait so that a
//! replicated backend (ZooKeeper, for clusters that outgrow one control node) can join the
//! file store later.
//!
//! The contract: [`Store::append`] returns only once the change is durable (it survives
//! `kill -9` and power loss); the service applies a change and acknowledges the request only
//! after that. [`Store::load`] gives back exactly what was appended, or refuses with a message
//! naming what is damaged — never an empty configuration in place of a damaged one.

mod file;
mod flocker_import;

use std::path::PathBuf;

pub use file::FileStore;
pub use flocker_import::FLOCKER_CONFIGURATION;

use crate::model::{Change, Configuration};
use flocker_host::PathError;

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

    /// Durably records `change` as number `generation` (the previous one plus 1).
    fn append(&mut self, generation: u64, change: &Change) -> Result<(), StoreError>;

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
    #[error(
        "{} is locked by another process: is a flocker-control already running with this \
         --data-path?",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "the store refuses writes since an earlier write failed ({reason}); restart the \
         control service once the cause is fixed"
    )]
    Failed { reason: String },
}
