//! Indexes kept beside the configuration, so that what concerns one name or one node costs what
//! it holds, not what the cluster holds: an isolator's lookup of its volume by name, and the
//! view each agent's long-poll computes again after every change.
//!
//! They are derived, never stored: made from the configuration when it is loaded or reloaded,
//! and updated with each change just before it is applied (a move needs the old primary).
//! Whoever reads through them still checks what it finds, so an index only has to hold every
//! id that may match, which the tests below hold to exactly.

use std::collections::{BTreeSet, HashMap};

use flocker_api::{DatasetId, NAME_KEYS, NodeUuid};

use crate::model::{Change, Configuration};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Index {
    /// The datasets each name (a value of one of [`NAME_KEYS`]) names, tombstones included.
    by_name: HashMap<String, BTreeSet<DatasetId>>,
    /// The datasets whose primary each node is, tombstones included.
    by_primary: HashMap<NodeUuid, BTreeSet<DatasetId>>,
    /// The datasets each node holds a lease on.
    leased_by: HashMap<NodeUuid, BTreeSet<DatasetId>>,
}

const NONE: &BTreeSet<DatasetId> = &BTreeSet::new();

impl Index {
    /// The index of a whole configuration.
    pub fn of(configuration: &Configuration) -> Self {
        let mut index = Self::default();
        for dataset in configuration.datasets.values() {
            index.add_dataset(dataset);
        }
        for (id, lease) in &configuration.leases {
            index.leased_by.entry(lease.node_uuid).or_default().insert(*id);
        }
        index
    }

    /// Takes in `change`, about to be applied to `configuration`.
    pub fn note(&mut self, configuration: &Configuration, change: &Change) {
        match change {
            Change::CreateDataset { dataset } => self.add_dataset(dataset),
            Change::MoveDataset { dataset_id, primary } => {
                if let Some(dataset) = configuration.datasets.get(dataset_id) {
                    remove(&mut self.by_primary, &dataset.primary, dataset_id);
                    self.by_primary.entry(*primary).or_default().insert(*dataset_id);
                }
            }
            Change::AcquireLease { dataset_id, node_uuid, .. } => {
                if let Some(lease) = configuration.leases.get(dataset_id) {
                    remove(&mut self.leased_by, &lease.node_uuid, dataset_id);
                }
                self.leased_by.entry(*node_uuid).or_default().insert(*dataset_id);
            }
            Change::ReleaseLeases { dataset_ids } => {
                for id in dataset_ids {
                    if let Some(lease) = configuration.leases.get(id) {
                        remove(&mut self.leased_by, &lease.node_uuid, id);
                    }
                }
            }
            // A tombstone keeps its name and its primary; the rest is not indexed.
            Change::DeleteDataset { .. }
            | Change::RecordBlockDevice { .. }
            | Change::VolumesReported { .. } => {}
        }
    }

    /// The datasets `name` names, tombstones included.
    pub fn named(&self, name: &str) -> &BTreeSet<DatasetId> {
        self.by_name.get(name).unwrap_or(NONE)
    }

    /// The datasets whose primary `node` is, tombstones included.
    pub fn on(&self, node: &NodeUuid) -> &BTreeSet<DatasetId> {
        self.by_primary.get(node).unwrap_or(NONE)
    }

    /// The datasets `node` holds a lease on.
    pub fn leased_by(&self, node: &NodeUuid) -> &BTreeSet<DatasetId> {
        self.leased_by.get(node).unwrap_or(NONE)
    }

    fn add_dataset(&mut self, dataset: &flocker_api::Dataset) {
        let id = dataset.dataset_id;
        self.by_primary.entry(dataset.primary).or_default().insert(id);
        for key in NAME_KEYS {
            if let Some(name) = dataset.metadata.get(key) {
                self.by_name.entry(name.clone()).or_default().insert(id);
            }
        }
    }
}

/// Takes `id` out of `key`'s set, and the set out of the map once it is empty.
fn remove<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, BTreeSet<DatasetId>>,
    key: &K,
    id: &DatasetId,
) {
    if let Some(ids) = map.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Sequence, random_change};

    #[test]
    fn the_index_kept_with_each_change_is_the_index_made_from_scratch() {
        let nodes: Vec<NodeUuid> = (0..4).map(|_| NodeUuid::random()).collect();
        let (mut configuration, mut index) = (Configuration::default(), Index::default());
        let mut seq = Sequence(7);
        for step in 0..2_000 {
            let change = random_change(&configuration, &nodes, &mut seq);
            index.note(&configuration, &change);
            configuration.apply(&change);
            assert_eq!(index, Index::of(&configuration), "after change {step}: {change:?}");
        }
        assert!(!index.leased_by.is_empty() && !index.by_name.is_empty(), "the test did work");
    }

    #[test]
    fn each_lookup_gives_exactly_what_a_scan_of_the_configuration_finds() {
        let nodes: Vec<NodeUuid> = (0..4).map(|_| NodeUuid::random()).collect();
        let mut configuration = Configuration::default();
        let mut seq = Sequence(11);
        for _ in 0..500 {
            let change = random_change(&configuration, &nodes, &mut seq);
            configuration.apply(&change);
        }
        let index = Index::of(&configuration);
        for node in &nodes {
            let scan: BTreeSet<DatasetId> = (configuration.datasets.values())
                .filter(|d| d.primary == *node)
                .map(|d| d.dataset_id)
                .collect();
            assert_eq!(index.on(node), &scan);
            let leased: BTreeSet<DatasetId> = (configuration.leases.iter())
                .filter(|(_, lease)| lease.node_uuid == *node)
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(index.leased_by(node), &leased);
            assert_eq!(configuration.node_view(node), configuration.node_view_in(node, &index));
        }
        for name in (0..8).map(|i| format!("volume-{i}")) {
            let scan: BTreeSet<DatasetId> = (configuration.datasets.values())
                .filter(|d| d.is_named(&name))
                .map(|d| d.dataset_id)
                .collect();
            assert_eq!(index.named(&name), &scan, "{name}");
        }
        assert!(index.named("nobody").is_empty());
    }
}
