//! [`TimedStore`]: any store, with the time of each write in the metrics, and for a store that
//! makes changes durable in groups, each group sync's time and size. A decorator, so that the
//! service's write path knows nothing of metrics.
//!
//! It forwards every method of [`Store`], the provided ones too: a shared store's `catch_up`,
//! `wait_until_reachable` and `shared_identity` are what make it shared, and the trait's
//! defaults would quietly make it a store of this service alone. A method added to the trait
//! must be forwarded here as well.

use std::sync::Arc;
use std::time::Instant;

use super::{CatchUp, GroupSync, Store, StoreError, Stored, Ticket};
use crate::metrics::{Metrics, StoreWrite};
use crate::model::{Change, Configuration};

pub struct TimedStore {
    inner: Box<dyn Store>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub fn new(inner: Box<dyn Store>, metrics: Arc<Metrics>) -> Self {
        if let Some(group) = inner.group_sync() {
            let observer = metrics.clone();
            group.observe(Box::new(move |took, changes, ok| {
                observer.store_sync(took, changes, ok);
            }));
        }
        Self { inner, metrics }
    }

    /// Records a write that began at `started` (a deferred one: until it was in the journal).
    fn record<T>(&self, written: &Result<T, StoreError>, started: Instant) {
        let outcome = match written {
            Ok(_) => StoreWrite::Ok,
            Err(StoreError::Conflict) => StoreWrite::Conflict,
            Err(_) => StoreWrite::Failed,
        };
        self.metrics.store_write(outcome, started.elapsed());
    }
}

impl Store for TimedStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        self.inner.load()
    }

    fn append(
        &mut self,
        current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let appended = self.inner.append(current, generation, change);
        self.record(&appended, started);
        appended
    }

    fn append_deferred(
        &mut self,
        current: &Configuration,
        generation: u64,
        change: &Change,
    ) -> Result<Option<Ticket>, StoreError> {
        let started = Instant::now();
        let appended = self.inner.append_deferred(current, generation, change);
        self.record(&appended, started);
        appended
    }

    fn group_sync(&self) -> Option<Arc<GroupSync>> {
        self.inner.group_sync()
    }

    fn sync_failed(&mut self, durable: u64, why: &str) {
        self.inner.sync_failed(durable, why);
    }

    fn applied(
        &mut self,
        configuration: &Configuration,
        generation: u64,
    ) -> Result<(), StoreError> {
        self.inner.applied(configuration, generation)
    }

    fn catch_up(&mut self, generation: u64, confirm: bool) -> Result<CatchUp, StoreError> {
        self.inner.catch_up(generation, confirm)
    }

    fn wait_until_reachable(&mut self) -> Result<(), StoreError> {
        self.inner.wait_until_reachable()
    }

    fn shared_identity(&self) -> Option<u64> {
        self.inner.shared_identity()
    }
}

#[cfg(test)]
mod tests {
    use flocker_api::{CreateDataset, DatasetId, NodeUuid};

    use super::*;
    use crate::metrics::Tally;
    use crate::store::FileStore;

    fn create(configuration: &Configuration) -> Change {
        let request = CreateDataset {
            primary: NodeUuid::random(),
            dataset_id: None,
            maximum_size: Some(64 * 1024 * 1024),
            metadata: Default::default(),
        };
        let dataset = configuration.plan_create(request, DatasetId::random()).unwrap();
        Change::CreateDataset { dataset }
    }

    #[test]
    fn each_append_is_timed_and_the_store_underneath_still_keeps_it() {
        let directory = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let file_store = FileStore::open(directory.path()).unwrap();
        let mut store = TimedStore::new(Box::new(file_store), metrics.clone());
        let mut stored = store.load().unwrap();
        for _ in 0..2 {
            let change = create(&stored.configuration);
            store.append(&stored.configuration, stored.generation + 1, &change).unwrap();
            stored.configuration.apply(&change);
            stored.generation += 1;
            store.applied(&stored.configuration, stored.generation).unwrap();
        }
        let text = metrics.render(Tally::default()).unwrap();
        for line in [
            "flocker_control_store_write_duration_seconds_count{outcome=\"ok\"} 2",
            "flocker_control_store_sync_duration_seconds_count{outcome=\"ok\"} 2",
            "flocker_control_store_sync_changes_count 2",
            "flocker_control_store_sync_changes_sum 2.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        drop(store);
        let reloaded = FileStore::open(directory.path()).unwrap().load().unwrap();
        assert_eq!(reloaded.configuration.datasets.len(), 2);
    }
}
