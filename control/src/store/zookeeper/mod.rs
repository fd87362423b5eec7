//! The ZooKeeper store (`--store zk://…`): one configuration shared by a control service on
//! every Mesos master. The layout is in [`layout`].
//!
//! Every write is one ZooKeeper transaction: set `head` to the new generation *if its version
//! is still the one this service last read*, and add the change under `changes/`. So of two
//! services deciding on the same configuration, exactly one writes; the other is told
//! [`StoreError::Conflict`], catches up ([`Store::catch_up`]), and decides again on what the
//! first one did. A write is acknowledged only once ZooKeeper's quorum has it.
//!
//! Every 1,000 changes the service that made the last one writes a snapshot in chunks, moves
//! `snapshot` to it, and deletes the changes before the previous snapshot: a service that was
//! away for longer reloads from the snapshot.

mod access;
mod connection;
pub mod layout;
pub mod nodes;
mod url;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use zookeeper_client as zk;

use access::Access;
pub use access::Credentials;
pub use connection::{Connection, Failure, Settings};
use layout::{ChangeRecord, Head, Identity, SnapshotPointer};
pub use url::StoreUrl;

use super::{CatchUp, Store, StoreError, Stored};
use crate::model::{Change, Configuration};

/// Write a snapshot once this many changes follow the current one.
const COMPACT_EVERY: u64 = 1_000;
/// How often a load starts again because a compaction moved the snapshot under it.
const LOAD_ATTEMPTS: usize = 5;

pub struct ZooKeeperStore {
    connection: Arc<Connection>,
    store_id: Option<uuid::Uuid>,
    /// The head's znode version at the generation the service has; `None` after a write that
    /// was not confirmed, until the store catches up.
    head_version: Option<i32>,
    /// The generation of the snapshot that is current, as this service last saw it.
    snapshot_generation: u64,
    compact_every: u64,
    compacting: Arc<AtomicBool>,
}

impl ZooKeeperStore {
    /// Connects; the settings' timeout bounds every call to ZooKeeper.
    pub fn open(url: StoreUrl, settings: Settings) -> Result<Self, StoreError> {
        Ok(Self::over(Connection::open(url, settings)?))
    }

    pub fn over(connection: Arc<Connection>) -> Self {
        Self {
            connection,
            store_id: None,
            head_version: None,
            snapshot_generation: 0,
            compact_every: COMPACT_EVERY,
            compacting: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Writes a snapshot after `changes` changes instead of the default.
    pub fn compact_every(mut self, changes: u64) -> Self {
        self.compact_every = changes.max(1);
        self
    }

    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// Whether the store holds no configuration yet (for `migrate`, which fills only those).
    pub fn is_empty(&mut self) -> Result<bool, StoreError> {
        let stored = self.load()?;
        Ok(stored.generation == 0 && stored.configuration == Configuration::default())
    }

    /// Replaces an empty store's configuration with `stored`, at its generation (`migrate`).
    pub fn fill(&mut self, stored: &Stored) -> Result<(), StoreError> {
        let current = self.load()?;
        if current.generation != 0 || current.configuration != Configuration::default() {
            return Err(self.refused("it already holds a configuration".into()));
        }
        self.write_snapshot(&stored.configuration, stored.generation.max(1))?;
        let head = layout::encode(&Head { generation: stored.generation.max(1) })
            .map_err(|e| self.refused(e))?;
        let version = self.head_version.ok_or(StoreError::Conflict)?;
        self.connection
            .call(|client| async move { client.set_data(layout::HEAD, &head, Some(version)).await })
            .map_err(|f| self.write_failure(f))?;
        Ok(())
    }

    /// Makes the layout if the root holds nothing; checks it is ours if it holds something.
    fn initialize(&mut self) -> Result<(), StoreError> {
        let found = self.connection.call_at_once(|client| async move {
            match client.get_data(layout::IDENTITY).await {
                Ok((bytes, _)) => Ok(Some(bytes)),
                Err(zk::Error::NoNode) => Ok(None),
                Err(error) => Err(error),
            }
        });
        let bytes = match found.map_err(|f| self.connection.read_error(f))? {
            Some(bytes) => bytes,
            None => self.create_layout()?,
        };
        let identity: Identity = serde_json::from_slice(&bytes)
            .map_err(|e| self.damaged(format!("{} is not ours: {e}", layout::IDENTITY)))?;
        if identity.format != layout::FORMAT || identity.version > layout::VERSION {
            return Err(self.damaged(format!(
                "{} names format {} version {}, which this flocker-control does not read",
                layout::IDENTITY,
                identity.format,
                identity.version
            )));
        }
        if self.store_id.is_some_and(|id| id != identity.store_id) {
            return Err(self.damaged(format!(
                "another store ({}) took the place of the one this service was using",
                identity.store_id
            )));
        }
        self.store_id = Some(identity.store_id);
        Ok(())
    }

    /// A new store: every znode of the layout, in one transaction (so another service making
    /// it at the same moment either made all of it or none).
    fn create_layout(&mut self) -> Result<Vec<u8>, StoreError> {
        let identity = Identity {
            format: layout::FORMAT.into(),
            version: layout::VERSION,
            store_id: uuid::Uuid::new_v4(),
        };
        let identity_bytes = layout::encode(&identity).map_err(|e| self.refused(e))?;
        let (pointer, chunks) = layout::chunk(&Configuration::default(), 0);
        let pointer_bytes = layout::encode(&pointer).map_err(|e| self.refused(e))?;
        let head = layout::encode(&Head { generation: 0 }).map_err(|e| self.refused(e))?;
        let access = self.connection.access();
        let made = self.connection.call(|client| async move {
            let options = access.options(zk::CreateMode::Persistent);
            let mut writer = client.new_multi_writer();
            writer.add_create(layout::IDENTITY, &identity_bytes, &options)?;
            writer.add_create(layout::HEAD, &head, &options)?;
            writer.add_create(layout::CHANGES, &[], &options)?;
            writer.add_create(layout::SNAPSHOTS, &[], &options)?;
            writer.add_create(&layout::snapshot_directory(0), &[], &options)?;
            writer.add_create(&layout::chunk_path(0, 0), &chunks[0], &options)?;
            writer.add_create(layout::SNAPSHOT, &pointer_bytes, &options)?;
            writer.add_create(layout::NODES, &[], &options)?;
            match writer.commit().await {
                Ok(_) => Ok(true),
                Err(zk::MultiWriteError::OperationFailed {
                    index: 0,
                    source: zk::Error::NodeExists,
                }) => Ok(false),
                Err(error) => Err(error.into()),
            }
        });
        match made.map_err(|f| self.write_failure(f))? {
            true => {
                log::warn!(
                    "{} held no configuration: started a new, empty one (store {})",
                    self.connection.url(),
                    identity.store_id
                );
                Ok(identity_bytes_of(&identity))
            }
            false => {
                // Another service made it first: read what it made.
                let read = self.connection.call(|client| async move {
                    client.get_data(layout::IDENTITY).await.map(|(bytes, _)| bytes)
                });
                read.map_err(|f| self.connection.read_error(f))
            }
        }
    }

    /// Everything stored, as of one head: the snapshot, then the changes after it.
    fn read_all(&mut self) -> Result<Stored, StoreError> {
        let mut last_problem = String::new();
        for _ in 0..LOAD_ATTEMPTS {
            match self.try_read_all()? {
                Ok(stored) => return Ok(stored),
                Err(problem) => last_problem = problem,
            }
        }
        Err(self.damaged(format!("it could not be read whole: {last_problem}")))
    }

    /// `Ok(Err(_))`: a part was gone (compacted while this read), worth reading again.
    fn try_read_all(&mut self) -> Result<Result<Stored, String>, StoreError> {
        let read = self.connection.call_at_once(|client| async move {
            let (pointer, _) = client.get_data(layout::SNAPSHOT).await?;
            let (head, stat) = client.get_data(layout::HEAD).await?;
            Ok((pointer, head, stat.version))
        });
        let (pointer, head, version) = read.map_err(|f| self.connection.read_error(f))?;
        let pointer: SnapshotPointer = self.decode(layout::SNAPSHOT, &pointer)?;
        let head: Head = self.decode(layout::HEAD, &head)?;
        let chunks = match self.read_chunks(&pointer)? {
            Some(chunks) => chunks,
            None => return Ok(Err(format!("snapshot {} went away", pointer.generation))),
        };
        let mut configuration = layout::unchunk(&pointer, chunks).map_err(|problem| {
            self.damaged(format!("snapshot {} is damaged: {problem}", pointer.generation))
        })?;
        if head.generation < pointer.generation {
            return Err(self.damaged(format!(
                "its head ({}) is older than its snapshot ({})",
                head.generation, pointer.generation
            )));
        }
        let Some(changes) = self.read_changes(pointer.generation, head.generation)? else {
            return Ok(Err("changes after the snapshot went away".into()));
        };
        for (_, change) in &changes {
            configuration.apply(change);
        }
        self.head_version = Some(version);
        self.snapshot_generation = pointer.generation;
        Ok(Ok(Stored { configuration, generation: head.generation }))
    }

    fn read_chunks(&self, pointer: &SnapshotPointer) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let paths: Vec<String> =
            (0..pointer.chunks).map(|i| layout::chunk_path(pointer.generation, i)).collect();
        self.read_many(paths)
    }

    /// The changes `after + 1 ..= through`; `None` if one is gone.
    fn read_changes(
        &self,
        after: u64,
        through: u64,
    ) -> Result<Option<Vec<(u64, Change)>>, StoreError> {
        let paths: Vec<String> = (after + 1..=through).map(layout::change_path).collect();
        let Some(records) = self.read_many(paths)? else { return Ok(None) };
        let mut changes = Vec::with_capacity(records.len());
        for (bytes, expected) in records.iter().zip(after + 1..) {
            let path = layout::change_path(expected);
            let record: ChangeRecord = self.decode(&path, bytes)?;
            if record.generation != expected {
                return Err(self.damaged(format!("{path} holds generation {}", record.generation)));
            }
            changes.push((expected, record.change));
        }
        Ok(Some(changes))
    }

    /// Reads many znodes in one round trip (the requests are all sent before any answer is
    /// awaited); `None` if one of them is missing.
    fn read_many(&self, paths: Vec<String>) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let read = self.connection.call_at_once(|client| async move {
            let pending: Vec<_> = paths.iter().map(|path| client.get_data(path)).collect();
            let mut found = Vec::with_capacity(pending.len());
            for reading in pending {
                match reading.await {
                    Ok((bytes, _)) => found.push(bytes),
                    Err(zk::Error::NoNode) => return Ok(None),
                    Err(error) => return Err(error),
                }
            }
            Ok(Some(found))
        });
        read.map_err(|f| self.connection.read_error(f))
    }

    /// Writes the snapshot of `configuration` at `generation` and makes it current.
    fn write_snapshot(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        let (pointer, chunks) = layout::chunk(configuration, generation);
        let access = self.connection.access();
        let written =
            self.connection.call(|client| write_snapshot(client, access, pointer, chunks));
        written.map_err(|f| self.write_failure(f))?;
        self.snapshot_generation = generation;
        Ok(())
    }

    fn write_failure(&mut self, failure: Failure) -> StoreError {
        if matches!(failure, Failure::Unanswered(_)) {
            self.head_version = None;
        }
        self.connection.write_error(failure)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.damaged(format!("{path}: {e}")))
    }

    fn damaged(&self, problem: String) -> StoreError {
        StoreError::Refused { store: self.connection.url().to_string(), reason: problem }
    }

    fn refused(&self, reason: String) -> StoreError {
        StoreError::Refused { store: self.connection.url().to_string(), reason }
    }

    /// Writes a snapshot in the background (the write path never waits for one).
    fn compact_in_background(&mut self, configuration: &Configuration, generation: u64) {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pointer, chunks) = layout::chunk(configuration, generation);
        let connection = self.connection.clone();
        let compacting = self.compacting.clone();
        self.snapshot_generation = generation;
        let access = connection.access();
        std::thread::spawn(move || {
            let outcome = connection.call(|client| async move {
                match write_snapshot(client.clone(), access, pointer, chunks).await? {
                    Some(previous) => forget_before(&client, previous).await,
                    None => Ok(()),
                }
            });
            match outcome {
                Ok(()) => {
                    log::info!("wrote a snapshot of the configuration at generation {generation}")
                }
                Err(failure) => {
                    log::warn!("could not write a snapshot at generation {generation}: {failure:?}")
                }
            }
            compacting.store(false, Ordering::Release);
        });
    }
}

impl Store for ZooKeeperStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        self.initialize()?;
        self.read_all()
    }

    fn append(
        &mut self,
        _current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<(), StoreError> {
        let version = self.head_version.ok_or(StoreError::Conflict)?;
        let head = layout::encode(&Head { generation }).map_err(|e| self.refused(e))?;
        let record =
            layout::encode(&ChangeRecord { generation, change }).map_err(|e| self.refused(e))?;
        let options = self.connection.access().options(zk::CreateMode::Persistent);
        let committed = self.connection.call(|client| async move {
            let mut writer = client.new_multi_writer();
            writer.add_set_data(layout::HEAD, &head, Some(version))?;
            writer.add_create(&layout::change_path(generation), &record, &options)?;
            match writer.commit().await {
                Ok(results) => Ok(Some(results)),
                Err(zk::MultiWriteError::OperationFailed {
                    index: 0,
                    source: zk::Error::BadVersion,
                }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        });
        match committed.map_err(|f| self.write_failure(f))? {
            Some(results) => {
                self.head_version = match results.first() {
                    Some(zk::MultiWriteResult::SetData { stat }) => Some(stat.version),
                    _ => None, // catch up before the next write
                };
                Ok(())
            }
            None => Err(StoreError::Conflict),
        }
    }

    fn applied(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        if generation.saturating_sub(self.snapshot_generation) >= self.compact_every {
            self.compact_in_background(configuration, generation);
        }
        Ok(())
    }

    fn catch_up(&mut self, generation: u64, confirm: bool) -> Result<CatchUp, StoreError> {
        let read = self.connection.call_at_once(|client| async move {
            if confirm {
                client.sync(layout::HEAD).await?;
            }
            client.get_data(layout::HEAD).await
        });
        let (head, stat) = read.map_err(|f| self.connection.read_error(f))?;
        let head: Head = self.decode(layout::HEAD, &head)?;
        if head.generation < generation {
            return Err(self.damaged(format!(
                "its head is at generation {}, behind this service's {generation}: ZooKeeper \
                 lost data, or another store took this one's place",
                head.generation
            )));
        }
        match self.read_changes(generation, head.generation)? {
            Some(changes) => {
                self.head_version = Some(stat.version);
                Ok(CatchUp::Changes(changes))
            }
            None => {
                self.initialize()?;
                Ok(CatchUp::Reload(self.read_all()?))
            }
        }
    }

    fn wait_until_reachable(&mut self) -> Result<(), StoreError> {
        self.connection.connected().map(drop).map_err(|f| self.connection.write_error(f))
    }

    fn shared_identity(&self) -> Option<u64> {
        // Taken from the id itself, so that every build of every instance agrees.
        Some(self.store_id?.as_u64_pair().0)
    }
}

fn identity_bytes_of(identity: &Identity) -> Vec<u8> {
    serde_json::to_vec(identity).unwrap_or_default()
}

/// Writes the chunks, then moves the pointer to them if it points to an older snapshot.
/// Returns the generation of the snapshot it replaced, if it replaced one.
async fn write_snapshot(
    client: zk::Client,
    access: Access,
    pointer: SnapshotPointer,
    chunks: Vec<Vec<u8>>,
) -> Result<Option<u64>, zk::Error> {
    let options = access.options(zk::CreateMode::Persistent);
    let directory = layout::snapshot_directory(pointer.generation);
    match client.create(&directory, &[], &options).await {
        Ok(_) => {}
        Err(zk::Error::NodeExists) => return Ok(None), // another service is writing it
        Err(error) => return Err(error),
    }
    let paths: Vec<String> =
        (0..pointer.chunks).map(|i| layout::chunk_path(pointer.generation, i)).collect();
    let pending: Vec<_> = paths
        .iter()
        .zip(&chunks)
        .map(|(path, chunk)| client.create(path, chunk, &options))
        .collect();
    for creating in pending {
        creating.await?;
    }
    let (current, stat) = client.get_data(layout::SNAPSHOT).await?;
    let current: SnapshotPointer = serde_json::from_slice(&current)
        .map_err(|e| zk::Error::UnexpectedError(format!("{}: {e}", layout::SNAPSHOT)))?;
    if current.generation >= pointer.generation {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(&pointer).unwrap_or_default();
    client.set_data(layout::SNAPSHOT, &bytes, Some(stat.version)).await?;
    Ok(Some(current.generation))
}

/// Deletes the changes up to `previous` (the snapshot before the current one) and every
/// snapshot older than it: a service behind by less than one snapshot still catches up
/// change by change.
async fn forget_before(client: &zk::Client, previous: u64) -> Result<(), zk::Error> {
    let changes = client.list_children(layout::CHANGES).await?;
    let old_changes: Vec<String> = changes
        .iter()
        .filter(|name| layout::generation_of(name).is_some_and(|g| g <= previous))
        .map(|name| format!("{}/{name}", layout::CHANGES))
        .collect();
    let deleting: Vec<_> = old_changes.iter().map(|path| client.delete(path, None)).collect();
    for deletion in deleting {
        ignore_missing(deletion.await)?;
    }
    for snapshot in client.list_children(layout::SNAPSHOTS).await? {
        if layout::generation_of(&snapshot).is_some_and(|g| g < previous) {
            let directory = format!("{}/{snapshot}", layout::SNAPSHOTS);
            for chunk in client.list_children(&directory).await? {
                ignore_missing(client.delete(&format!("{directory}/{chunk}"), None).await)?;
            }
            ignore_missing(client.delete(&directory, None).await)?;
        }
    }
    Ok(())
}

fn ignore_missing(result: Result<(), zk::Error>) -> Result<(), zk::Error> {
    match result {
        Err(zk::Error::NoNode) => Ok(()),
        other => other,
    }
}
