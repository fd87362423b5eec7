//! `flocker-control migrate --from SOURCE --to DESTINATION`: copies the configuration between
//! stores, for moving a cluster to ZooKeeper (`zk://…`) or back to the journal (a
//! `--data-path` directory). A source may also be Flocker 1.x's `current_configuration.json`.
//!
//! The destination must be empty (the copy never merges or replaces a configuration), and the
//! source is only read. Stop every control service first: changes made during the copy would
//! be left behind (a file store is locked while it is copied, so a service using it refuses to
//! start, and the copy refuses to run beside one).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::store::flocker_import::{self, FLOCKER_CONFIGURATION};
use crate::store::zookeeper::{Settings, StoreUrl, ZooKeeperStore};
use crate::store::{FileStore, Store, Stored};

/// Where a configuration is kept, as `migrate` names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    ZooKeeper(StoreUrl),
    /// A `--data-path` directory.
    Journal(PathBuf),
    /// Flocker 1.x's configuration file (a source only).
    FlockerFile(PathBuf),
}

impl Location {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("zk://") {
            return StoreUrl::parse(text).map(Self::ZooKeeper);
        }
        let path = PathBuf::from(text);
        if path.is_file() { Ok(Self::FlockerFile(path)) } else { Ok(Self::Journal(path)) }
    }
}

/// Copies `from` into the empty `to`; returns what was copied.
pub fn migrate(from: &Location, to: &Location, settings: &Settings) -> anyhow::Result<Stored> {
    let stored = read(from, settings).with_context(|| format!("cannot read {}", describe(from)))?;
    match to {
        Location::ZooKeeper(url) => {
            ZooKeeperStore::open(url.clone(), settings.clone())?.fill(&stored)?;
        }
        Location::Journal(directory) => FileStore::open(directory)?.fill(&stored)?,
        Location::FlockerFile(path) => {
            bail!("{} is a file: migrate writes only into a store", path.display())
        }
    }
    Ok(stored)
}

fn read(from: &Location, settings: &Settings) -> anyhow::Result<Stored> {
    match from {
        Location::ZooKeeper(url) => {
            Ok(ZooKeeperStore::open(url.clone(), settings.clone())?.load()?)
        }
        Location::FlockerFile(path) => flocker_file(path),
        Location::Journal(directory) if holds_only_flocker_file(directory) => {
            flocker_file(&directory.join(FLOCKER_CONFIGURATION))
        }
        Location::Journal(directory) => {
            if !holds_store(directory) {
                bail!("{} holds no store of flocker-control", directory.display());
            }
            Ok(FileStore::open(directory)?.load()?)
        }
    }
}

fn flocker_file(path: &Path) -> anyhow::Result<Stored> {
    let configuration = flocker_import::import(path).map_err(anyhow::Error::msg)?;
    Ok(Stored { configuration, generation: 0 })
}

/// A directory of Flocker 1.x, not yet opened by a flocker-control of ours.
fn holds_only_flocker_file(directory: &Path) -> bool {
    directory.join(FLOCKER_CONFIGURATION).is_file() && !holds_store(directory)
}

/// Whether a directory holds our store (reading it must never make one).
fn holds_store(directory: &Path) -> bool {
    directory.join("configuration.snapshot").exists()
        || directory.join("configuration.journal").exists()
}

pub fn describe(location: &Location) -> String {
    match location {
        Location::ZooKeeper(url) => url.to_string(),
        Location::Journal(directory) => format!("the store in {}", directory.display()),
        Location::FlockerFile(path) => format!("Flocker's {}", path.display()),
    }
}
