//! Taking back changes that were applied but never became durable. With group commit a change
//! is applied as soon as it is written, and made durable by an fsync shared with the changes
//! written around it; if that fsync fails, every change after the last durable one is taken
//! back, newest first, so that the configuration in memory is again what the store holds.
//! Nobody saw them: readers wait for durability, and writers are answered only after it.

use std::collections::BTreeSet;

use flocker_api::{Dataset, DatasetId};

use crate::model::{Change, Configuration, StoredLease};

/// What one change replaced.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    Dataset {
        id: DatasetId,
        before: Option<Dataset>,
    },
    Leases(Vec<(DatasetId, Option<StoredLease>)>),
    BlockDevice {
        id: DatasetId,
        before: Option<String>,
    },
    /// The ids the change added to the datasets that had a volume.
    VolumesReported(BTreeSet<DatasetId>),
}

impl Configuration {
    /// Applies `change` as [`Configuration::apply`] does, and says what it replaced.
    pub fn apply_undoably(&mut self, change: &Change) -> Undo {
        let undo = match change {
            Change::CreateDataset { dataset } => self.dataset_undo(dataset.dataset_id),
            Change::MoveDataset { dataset_id, .. } | Change::DeleteDataset { dataset_id } => {
                self.dataset_undo(*dataset_id)
            }
            Change::AcquireLease { dataset_id, .. } => {
                Undo::Leases(vec![(*dataset_id, self.leases.get(dataset_id).cloned())])
            }
            Change::ReleaseLeases { dataset_ids } => Undo::Leases(
                dataset_ids.iter().map(|id| (*id, self.leases.get(id).cloned())).collect(),
            ),
            Change::RecordBlockDevice { dataset_id, .. } => Undo::BlockDevice {
                id: *dataset_id,
                before: self.blockdevice_ownership.get(dataset_id).cloned(),
            },
            Change::VolumesReported { dataset_ids } => Undo::VolumesReported(
                (dataset_ids.iter())
                    .filter(|id| !self.volumes_reported.contains(id))
                    .copied()
                    .collect(),
            ),
        };
        self.apply(change);
        undo
    }

    /// Puts back what a change replaced; changes are taken back newest first.
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Dataset { id, before } => put_back(&mut self.datasets, id, before),
            // Put back oldest last: a change naming one id twice restores its first value.
            Undo::Leases(leases) => {
                for (id, before) in leases.into_iter().rev() {
                    put_back(&mut self.leases, id, before);
                }
            }
            Undo::BlockDevice { id, before } => {
                put_back(&mut self.blockdevice_ownership, id, before)
            }
            Undo::VolumesReported(added) => {
                self.volumes_reported.retain(|id| !added.contains(id));
            }
        }
    }

    fn dataset_undo(&self, id: DatasetId) -> Undo {
        Undo::Dataset { id, before: self.datasets.get(&id).cloned() }
    }
}

fn put_back<V>(
    map: &mut std::collections::BTreeMap<DatasetId, V>,
    id: DatasetId,
    before: Option<V>,
) {
    match before {
        Some(value) => {
            map.insert(id, value);
        }
        None => {
            map.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Sequence, random_change};
    use flocker_api::NodeUuid;

    #[test]
    fn taking_back_any_run_of_changes_newest_first_gives_the_configuration_before_them() {
        let nodes: Vec<NodeUuid> = (0..3).map(|_| NodeUuid::random()).collect();
        let mut configuration = Configuration::default();
        let mut seq = Sequence(5);
        for round in 0..200 {
            let before = configuration.clone();
            let run = 1 + seq.next(12);
            let mut undos = Vec::new();
            for _ in 0..run {
                let change = random_change(&configuration, &nodes, &mut seq);
                let mut applied = configuration.clone();
                applied.apply(&change);
                undos.push(configuration.apply_undoably(&change));
                assert_eq!(configuration, applied, "apply_undoably applies as apply does");
            }
            let after = configuration.clone();
            for undo in undos.into_iter().rev() {
                configuration.undo(undo);
            }
            assert_eq!(configuration, before, "round {round}");
            configuration = after; // go on from there, so the configuration grows
        }
        assert!(configuration.datasets.len() > 20 && !configuration.leases.is_empty());
    }
}
