//! [`TimedStore`]: any store, with the time of each write in the metrics. A decorator, so that
//! the service's write path knows nothing of metrics.
//!
//! It forwards every method of [`Store`], the provided ones too: a shared store's `catch_up`,
//! `wait_until_reachable` and `shared_identity` are what make it shared, and the trait's
//! defaults would quietly make it a store of this service alone. A method added to the trait
//! must be forwarded here as well.

use std::sync::Arc;
use std::time::Instant;

use super::{CatchUp, Store, StoreError, Stored};
use crate::metrics::{Metrics, StoreWrite};
use crate::model::{Change, Configuration};

pub struct TimedStore {
    inner: Box<dyn Store>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub fn new(inner: Box<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
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
        let outcome = match &appended {
            Ok(()) => StoreWrite::Ok,
            Err(StoreError::Conflict) => StoreWrite::Conflict,
            Err(_) => StoreWrite::Failed,
        };
        self.metrics.store_write(outcome, started.elapsed());
        appended
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
        let line = "flocker_control_store_write_duration_seconds_count{outcome=\"ok\"} 2";
        assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        drop(store);
        let reloaded = FileStore::open(directory.path()).unwrap().load().unwrap();
        assert_eq!(reloaded.configuration.datasets.len(), 2);
    }
}
