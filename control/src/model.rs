//! The desired configuration — datasets, leases, block-device ownership — and every decision
//! about changing it, as pure functions: a request and the current configuration in, a
//! [`Change`] (or a refusal) out. Nothing here does I/O or reads the clock; `now` is an argument
//! (Unix seconds), so every rule of the API is a unit test.
//!
//! A [`Change`] is also what the store journals: replaying the journal through
//! [`Configuration::apply`] rebuilds the configuration exactly.

use std::collections::{BTreeMap, BTreeSet};

use flocker_api::agent_protocol::ReportedProblem;
use flocker_api::{
    AcquireLease, CreateDataset, Dataset, DatasetId, Lease, NodeUuid, UpdateDataset,
};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::index::Index;

/// A stored lease: `expiration` is absolute (Unix seconds), `None` for never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLease {
    pub node_uuid: NodeUuid,
    pub expiration: Option<f64>,
}

/// The whole desired configuration. Deleted datasets stay, as tombstones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    pub datasets: BTreeMap<DatasetId, Dataset>,
    pub leases: BTreeMap<DatasetId, StoredLease>,
    /// Which block device backs which dataset, recorded by agents once and for good.
    pub blockdevice_ownership: BTreeMap<DatasetId, String>,
    /// The datasets whose volume some agent has reported, recorded once and for good: an agent
    /// that cannot find such a volume must never make an empty one in its place. (A dataset
    /// with a block device recorded had a volume too; see [`Configuration::had_volume`].)
    #[serde(default)]
    pub volumes_reported: BTreeSet<DatasetId>,
}

/// The most new volumes one change records: a change must fit in one ZooKeeper znode (1 MiB);
/// the rest of a large report is recorded by the next changes.
pub const MAX_VOLUMES_PER_CHANGE: usize = 2_048;

/// One durable change to the configuration: a journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    CreateDataset { dataset: Dataset },
    MoveDataset { dataset_id: DatasetId, primary: NodeUuid },
    DeleteDataset { dataset_id: DatasetId },
    AcquireLease { dataset_id: DatasetId, node_uuid: NodeUuid, expiration: Option<f64> },
    ReleaseLeases { dataset_ids: Vec<DatasetId> },
    RecordBlockDevice { dataset_id: DatasetId, blockdevice_id: String },
    VolumesReported { dataset_ids: Vec<DatasetId> },
}

impl Change {
    /// Whether the list of datasets (`/v1/configuration/datasets`) is different after it.
    pub fn changes_datasets(&self) -> bool {
        match self {
            Self::CreateDataset { .. } | Self::MoveDataset { .. } | Self::DeleteDataset { .. } => {
                true
            }
            Self::AcquireLease { .. }
            | Self::ReleaseLeases { .. }
            | Self::RecordBlockDevice { .. }
            | Self::VolumesReported { .. } => false,
        }
    }
}

/// What one node's agent needs to know: its datasets, the leases that pin something on it, the
/// block devices of its datasets, and which of them had a volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub datasets: Vec<Dataset>,
    pub leases: Vec<DatasetId>,
    pub blockdevice_ids: BTreeMap<DatasetId, String>,
    pub had_volume: BTreeSet<DatasetId>,
}

/// What one node's agent needs to know of the pushes of volumes between nodes' own disks
/// (btrfs), from the configuration and what the live nodes reported holding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushView {
    /// Datasets the node holds whose primary is another node, not deleted: push each there.
    pub pushes: BTreeMap<DatasetId, NodeUuid>,
    /// Datasets whose primary is the node, not deleted, that other live nodes hold.
    pub arriving: BTreeMap<DatasetId, BTreeSet<NodeUuid>>,
    /// Datasets the node holds that are deleted, whose primary is another node.
    pub discard: BTreeSet<DatasetId>,
}

/// The problems a node reported, sorted into those it may report and those it may not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeProblems {
    /// One per dataset whose primary is the node, with its text.
    pub kept: BTreeMap<DatasetId, String>,
    /// The datasets whose primary is another node, or that the configuration does not have.
    pub dropped: Vec<DatasetId>,
}

/// The decision on a lease request: what to store (nothing for an identical renewal), whether
/// it was new (201) or a renewal (200), and the lease to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseDecision {
    pub change: Option<Change>,
    pub created: bool,
    pub lease: Lease,
}

impl Configuration {
    /// Applies a change that a `plan_*` function produced (or the journal recorded). Total: a
    /// change that no longer fits (a move of a dataset that is gone) changes nothing.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::CreateDataset { dataset } => {
                self.datasets.insert(dataset.dataset_id, dataset.clone());
            }
            Change::MoveDataset { dataset_id, primary } => {
                if let Some(dataset) = self.datasets.get_mut(dataset_id) {
                    dataset.primary = *primary;
                }
            }
            Change::DeleteDataset { dataset_id } => {
                if let Some(dataset) = self.datasets.get_mut(dataset_id) {
                    dataset.deleted = true;
                }
            }
            Change::AcquireLease { dataset_id, node_uuid, expiration } => {
                let lease = StoredLease { node_uuid: *node_uuid, expiration: *expiration };
                self.leases.insert(*dataset_id, lease);
            }
            Change::ReleaseLeases { dataset_ids } => {
                for id in dataset_ids {
                    self.leases.remove(id);
                }
            }
            Change::RecordBlockDevice { dataset_id, blockdevice_id } => {
                self.blockdevice_ownership.insert(*dataset_id, blockdevice_id.clone());
            }
            Change::VolumesReported { dataset_ids } => {
                self.volumes_reported.extend(dataset_ids);
            }
        }
    }

    /// Whether the dataset has ever had a volume: an agent reported one, or recorded its block
    /// device (as Flocker's agents did, whose records an import brings).
    pub fn had_volume(&self, dataset_id: &DatasetId) -> bool {
        self.volumes_reported.contains(dataset_id)
            || self.blockdevice_ownership.contains_key(dataset_id)
    }

    /// An agent reported volumes of these datasets: the change that remembers those of them
    /// the configuration has and does not yet know had one. Ids it does not have are not
    /// recorded, so a node cannot make the record grow beyond the datasets.
    pub fn plan_volumes_reported(
        &self,
        reported: impl IntoIterator<Item = DatasetId>,
    ) -> Option<Change> {
        let new: BTreeSet<DatasetId> = reported
            .into_iter()
            .filter(|id| self.datasets.contains_key(id) && !self.had_volume(id))
            .take(MAX_VOLUMES_PER_CHANGE)
            .collect();
        (!new.is_empty())
            .then(|| Change::VolumesReported { dataset_ids: new.into_iter().collect() })
    }

    /// Of the problems `node` reported, those about datasets whose primary it is. Another
    /// node's dataset is not this node's to speak for (and one that moved away after the agent
    /// looked is no longer its concern), so those are dropped. The first of two about one
    /// dataset counts (the agent API refuses such a report before it gets here).
    pub fn problems_of(&self, node: &NodeUuid, reported: Vec<ReportedProblem>) -> NodeProblems {
        let mut problems = NodeProblems::default();
        for ReportedProblem { dataset_id, problem } in reported {
            if self.is_primary(&dataset_id, node) {
                problems.kept.entry(dataset_id).or_insert(problem);
            } else {
                problems.dropped.push(dataset_id);
            }
        }
        problems
    }

    /// The configured primary of a dataset the configuration knows (tombstones included).
    pub fn primary_of(&self, dataset_id: &DatasetId) -> Option<NodeUuid> {
        self.datasets.get(dataset_id).map(|d| d.primary)
    }

    /// Whether `node` is the primary of `dataset_id` now.
    pub fn is_primary(&self, dataset_id: &DatasetId, node: &NodeUuid) -> bool {
        self.datasets.get(dataset_id).is_some_and(|d| d.primary == *node)
    }

    /// The dataset a create makes: refused with 409 if the id was ever used (tombstones
    /// included). `generated_id` is used when the request names none.
    pub fn plan_create(
        &self,
        request: CreateDataset,
        generated_id: DatasetId,
    ) -> Result<Dataset, ApiError> {
        let dataset_id = request.dataset_id.unwrap_or(generated_id);
        if self.datasets.contains_key(&dataset_id) {
            return Err(ApiError::DatasetIdInUse);
        }
        Ok(Dataset {
            dataset_id,
            primary: request.primary,
            metadata: request.metadata,
            deleted: false,
            maximum_size: request.maximum_size,
        })
    }

    /// A move: the dataset as it will be, and the change (`None` when it changes nothing: no
    /// `primary`, or the current one).
    pub fn plan_move(
        &self,
        path_id: &str,
        request: &UpdateDataset,
    ) -> Result<(Dataset, Option<Change>), ApiError> {
        let dataset = self.live_dataset(path_id)?;
        match request.primary.filter(|primary| *primary != dataset.primary) {
            None => Ok((dataset.clone(), None)),
            Some(primary) => {
                let change = Change::MoveDataset { dataset_id: dataset.dataset_id, primary };
                Ok((Dataset { primary, ..dataset.clone() }, Some(change)))
            }
        }
    }

    /// A delete: the tombstone, and the change (`None` when it already was one: a repeat is a
    /// no-op).
    pub fn plan_delete(&self, path_id: &str) -> Result<(Dataset, Option<Change>), ApiError> {
        let dataset = self.dataset_by_path(path_id)?;
        let change =
            (!dataset.deleted).then_some(Change::DeleteDataset { dataset_id: dataset.dataset_id });
        Ok((Dataset { deleted: true, ..dataset.clone() }, change))
    }

    /// A lease acquire or renewal at time `now`. Another node's lease is refused even if it has
    /// expired but not yet been swept, as Flocker did.
    pub fn plan_acquire_lease(
        &self,
        request: &AcquireLease,
        now: f64,
    ) -> Result<LeaseDecision, ApiError> {
        let existing = self.leases.get(&request.dataset_id);
        if existing.is_some_and(|lease| lease.node_uuid != request.node_uuid) {
            return Err(ApiError::LeaseHeld);
        }
        let expiration = request.expires.map(|seconds| now + seconds);
        let unchanged = existing.is_some_and(|lease| lease.expiration == expiration);
        let change = (!unchanged).then_some(Change::AcquireLease {
            dataset_id: request.dataset_id,
            node_uuid: request.node_uuid,
            expiration,
        });
        let lease = Lease {
            dataset_id: request.dataset_id,
            node_uuid: request.node_uuid,
            expires: request.expires,
        };
        Ok(LeaseDecision { change, created: existing.is_none(), lease })
    }

    /// A release, by anyone; answers with the lease as it was.
    pub fn plan_release_lease(
        &self,
        dataset_id: &DatasetId,
        now: f64,
    ) -> Result<(Change, Lease), ApiError> {
        let lease = self.leases.get(dataset_id).ok_or(ApiError::LeaseNotFound)?;
        let change = Change::ReleaseLeases { dataset_ids: vec![*dataset_id] };
        Ok((change, api_lease(dataset_id, lease, now)))
    }

    /// The sweep: every lease whose time is up at `now`, as one change.
    pub fn plan_expiry(&self, now: f64) -> Option<Change> {
        let expired: Vec<DatasetId> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expiration.is_some_and(|at| at < now))
            .map(|(id, _)| *id)
            .collect();
        (!expired.is_empty()).then_some(Change::ReleaseLeases { dataset_ids: expired })
    }

    /// `node`'s agent recording the block device it made for a dataset. Only the primary of a
    /// dataset the configuration knows may, with a short printable id, so records stay one per
    /// dataset and small. Recording the same device again is a no-op; another is refused.
    pub fn plan_record_blockdevice(
        &self,
        node: &NodeUuid,
        dataset_id: DatasetId,
        blockdevice_id: &str,
    ) -> Result<Option<Change>, ApiError> {
        if !self.is_primary(&dataset_id, node) {
            return Err(ApiError::Schema(vec![format!(
                "dataset {dataset_id}: not a dataset whose primary is this node"
            )]));
        }
        check_blockdevice_id(blockdevice_id).map_err(|problem| ApiError::Schema(vec![problem]))?;
        match self.blockdevice_ownership.get(&dataset_id) {
            Some(existing) if existing == blockdevice_id => Ok(None),
            Some(existing) => Err(ApiError::AlreadyOwned { existing: existing.clone() }),
            None => Ok(Some(Change::RecordBlockDevice {
                dataset_id,
                blockdevice_id: blockdevice_id.to_owned(),
            })),
        }
    }

    /// The view of `node`'s agent. A lease on a dataset that is wanted on its node anyway
    /// changes nothing the agent does, so it is left out: tasks taking and letting go of their
    /// volumes do not wake the agent.
    pub fn node_view(&self, node: &NodeUuid) -> NodeView {
        let leased = self.leases.iter().filter(|(_, lease)| lease.node_uuid == *node);
        self.node_view_of(node, self.datasets.values(), leased.map(|(id, _)| id))
    }

    /// [`Self::node_view`], found through `index`: it costs what the node has.
    pub fn node_view_in(&self, node: &NodeUuid, index: &Index) -> NodeView {
        let datasets = index.on(node).iter().filter_map(|id| self.datasets.get(id));
        self.node_view_of(node, datasets, index.leased_by(node).iter())
    }

    /// The view of `node` made of `datasets` (those whose primary it is, and maybe others)
    /// and `leased` (the datasets it holds a lease on), each in dataset order.
    fn node_view_of<'a>(
        &'a self,
        node: &NodeUuid,
        datasets: impl Iterator<Item = &'a Dataset>,
        leased: impl Iterator<Item = &'a DatasetId>,
    ) -> NodeView {
        let datasets: Vec<Dataset> = datasets.filter(|d| d.primary == *node).cloned().collect();
        let wanted_here = |id: &DatasetId| {
            self.datasets.get(id).is_some_and(|d| d.primary == *node && !d.deleted)
        };
        let leases = leased
            .filter(|id| self.leases.get(id).is_some_and(|lease| lease.node_uuid == *node))
            .filter(|id| !wanted_here(id))
            .copied()
            .collect();
        let blockdevice_ids = datasets
            .iter()
            .filter_map(|d| {
                Some((d.dataset_id, self.blockdevice_ownership.get(&d.dataset_id)?.clone()))
            })
            .collect();
        let had_volume =
            datasets.iter().map(|d| d.dataset_id).filter(|id| self.had_volume(id)).collect();
        NodeView { datasets, leases, blockdevice_ids, had_volume }
    }

    /// The pushes that concern `node`. `holdings`: every live node with the datasets its latest
    /// report lists, mounted or not. Datasets the configuration does not have count for
    /// nothing; a tombstone whose primary is `node` is in its view's datasets already.
    pub fn push_view<H, I>(&self, node: &NodeUuid, holdings: H) -> PushView
    where
        H: IntoIterator<Item = (NodeUuid, I)>,
        I: IntoIterator<Item = DatasetId>,
    {
        let mut view = PushView::default();
        for (holder, held) in holdings {
            for id in held {
                let Some(dataset) = self.datasets.get(&id) else { continue };
                let (primary, deleted) = (dataset.primary, dataset.deleted);
                let (held_here, wanted_here) = (holder == *node, primary == *node);
                if held_here && !wanted_here && deleted {
                    view.discard.insert(id);
                } else if held_here && !wanted_here {
                    view.pushes.insert(id, primary);
                } else if !held_here && wanted_here && !deleted {
                    view.arriving.entry(id).or_default().insert(holder);
                }
            }
        }
        view
    }

    /// The lease on `dataset_id`, if any, as the API shows it.
    pub fn api_lease_of(&self, dataset_id: &DatasetId, now: f64) -> Option<Lease> {
        self.leases.get(dataset_id).map(|lease| api_lease(dataset_id, lease, now))
    }

    /// Every lease as the API shows it, `expires` counted from `now`.
    pub fn api_leases(&self, now: f64) -> Vec<Lease> {
        self.leases.iter().map(|(id, lease)| api_lease(id, lease, now)).collect()
    }

    /// The dataset a path names. Paths match stored ids exactly: an id in capitals is not
    /// found, as in Flocker.
    fn dataset_by_path(&self, path_id: &str) -> Result<&Dataset, ApiError> {
        let id: DatasetId = path_id.parse().map_err(|_| ApiError::DatasetNotFound)?;
        self.datasets
            .get(&id)
            .filter(|dataset| dataset.dataset_id.to_string() == path_id)
            .ok_or(ApiError::DatasetNotFound)
    }

    fn live_dataset(&self, path_id: &str) -> Result<&Dataset, ApiError> {
        let dataset = self.dataset_by_path(path_id)?;
        if dataset.deleted { Err(ApiError::DatasetDeleted) } else { Ok(dataset) }
    }
}

/// The longest block device id recorded: every backend's ids are far shorter.
pub const MAXIMUM_BLOCKDEVICE_ID_BYTES: usize = 256;

fn check_blockdevice_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAXIMUM_BLOCKDEVICE_ID_BYTES {
        return Err(format!(
            "a block device id is 1 to {MAXIMUM_BLOCKDEVICE_ID_BYTES} bytes, this one {}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("a block device id cannot hold control characters".to_owned());
    }
    Ok(())
}

fn api_lease(dataset_id: &DatasetId, lease: &StoredLease, now: f64) -> Lease {
    Lease {
        dataset_id: *dataset_id,
        node_uuid: lease.node_uuid,
        expires: lease.expiration.map(|at| at - now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeUuid {
        format!("6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a{n:02x}").parse().unwrap()
    }

    fn dataset_id(n: u8) -> DatasetId {
        format!("0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e{n:02x}").parse().unwrap()
    }

    fn create(config: &mut Configuration, id: u8, primary: NodeUuid) {
        let request = CreateDataset {
            primary,
            dataset_id: Some(dataset_id(id)),
            maximum_size: None,
            metadata: Default::default(),
        };
        let dataset = config.plan_create(request, DatasetId::random()).unwrap();
        config.apply(&Change::CreateDataset { dataset });
    }

    fn lease(id: u8, node_uuid: NodeUuid, expires: Option<f64>) -> AcquireLease {
        AcquireLease { dataset_id: dataset_id(id), node_uuid, expires }
    }

    #[test]
    fn a_create_takes_the_generated_id_when_none_is_given() {
        let config = Configuration::default();
        let request = CreateDataset {
            primary: node(1),
            dataset_id: None,
            maximum_size: None,
            metadata: Default::default(),
        };
        let dataset = config.plan_create(request, dataset_id(9)).unwrap();
        assert_eq!(dataset.dataset_id, dataset_id(9));
        assert!(!dataset.deleted);
    }

    #[test]
    fn an_id_is_never_reused_not_even_after_a_delete() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        let again = CreateDataset {
            primary: node(2),
            dataset_id: Some(dataset_id(1)),
            maximum_size: None,
            metadata: Default::default(),
        };
        assert_eq!(config.plan_create(again.clone(), dataset_id(9)), Err(ApiError::DatasetIdInUse));
        let (_, delete) = config.plan_delete(&dataset_id(1).to_string()).unwrap();
        config.apply(&delete.unwrap());
        assert_eq!(config.plan_create(again, dataset_id(9)), Err(ApiError::DatasetIdInUse));
    }

    #[test]
    fn a_path_in_capitals_does_not_find_the_dataset() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        let upper = dataset_id(1).to_string().to_uppercase();
        assert_eq!(config.plan_delete(&upper), Err(ApiError::DatasetNotFound));
        assert_eq!(config.plan_delete("not-a-uuid"), Err(ApiError::DatasetNotFound));
    }

    #[test]
    fn a_move_to_the_current_primary_or_without_primary_changes_nothing() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        let path = dataset_id(1).to_string();
        let unchanged = config.datasets[&dataset_id(1)].clone();
        let no_move = UpdateDataset { primary: None };
        assert_eq!(config.plan_move(&path, &no_move), Ok((unchanged.clone(), None)));
        let same = UpdateDataset { primary: Some(node(1)) };
        assert_eq!(config.plan_move(&path, &same), Ok((unchanged, None)));
        let (moved, change) =
            config.plan_move(&path, &UpdateDataset { primary: Some(node(2)) }).unwrap();
        assert_eq!(moved.primary, node(2));
        assert_eq!(
            change,
            Some(Change::MoveDataset { dataset_id: dataset_id(1), primary: node(2) })
        );
    }

    #[test]
    fn a_deleted_dataset_cannot_move_even_with_an_empty_body_and_a_repeat_delete_is_a_no_op() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        let path = dataset_id(1).to_string();
        let (tombstone, change) = config.plan_delete(&path).unwrap();
        config.apply(&change.unwrap());
        assert_eq!(
            config.plan_move(&path, &UpdateDataset { primary: None }),
            Err(ApiError::DatasetDeleted)
        );
        assert_eq!(config.plan_delete(&path), Ok((tombstone, None)));
    }

    #[test]
    fn a_lease_is_created_renewed_by_its_node_and_refused_to_another() {
        let mut config = Configuration::default();
        let first = config.plan_acquire_lease(&lease(1, node(1), None), 100.0).unwrap();
        assert!(first.created);
        config.apply(&first.change.unwrap());
        let same = config.plan_acquire_lease(&lease(1, node(1), None), 200.0).unwrap();
        assert!(!same.created);
        assert_eq!(same.change, None, "renewing with the same null expiry stores nothing");
        let renewed = config.plan_acquire_lease(&lease(1, node(1), Some(30.0)), 200.0).unwrap();
        assert_eq!(renewed.lease.expires, Some(30.0));
        assert!(renewed.change.is_some());
        assert_eq!(
            config.plan_acquire_lease(&lease(1, node(2), None), 200.0),
            Err(ApiError::LeaseHeld)
        );
    }

    #[test]
    fn an_expired_but_unswept_lease_still_conflicts() {
        let mut config = Configuration::default();
        config.apply(
            &config
                .plan_acquire_lease(&lease(1, node(1), Some(1.0)), 100.0)
                .unwrap()
                .change
                .unwrap(),
        );
        assert_eq!(
            config.plan_acquire_lease(&lease(1, node(2), None), 500.0),
            Err(ApiError::LeaseHeld)
        );
    }

    #[test]
    fn the_sweep_releases_only_leases_whose_time_is_up() {
        let mut config = Configuration::default();
        for (id, expires) in [(1, Some(10.0)), (2, Some(-1.0)), (3, None)] {
            let decision = config.plan_acquire_lease(&lease(id, node(1), expires), 100.0).unwrap();
            config.apply(&decision.change.unwrap());
        }
        assert_eq!(
            config.plan_expiry(105.0),
            Some(Change::ReleaseLeases { dataset_ids: vec![dataset_id(2)] })
        );
        let all = config.plan_expiry(111.0).unwrap();
        config.apply(&all);
        assert_eq!(config.leases.keys().copied().collect::<Vec<_>>(), [dataset_id(3)]);
        assert_eq!(config.plan_expiry(1e12), None);
    }

    #[test]
    fn expires_counts_down_from_now() {
        let mut config = Configuration::default();
        config.apply(
            &config
                .plan_acquire_lease(&lease(1, node(1), Some(30.0)), 100.0)
                .unwrap()
                .change
                .unwrap(),
        );
        assert_eq!(config.api_leases(112.5)[0].expires, Some(17.5));
    }

    #[test]
    fn a_release_answers_with_the_lease_and_an_unknown_one_is_not_found() {
        let mut config = Configuration::default();
        config.apply(
            &config.plan_acquire_lease(&lease(1, node(1), None), 100.0).unwrap().change.unwrap(),
        );
        let (change, released) = config.plan_release_lease(&dataset_id(1), 100.0).unwrap();
        assert_eq!(released.node_uuid, node(1));
        config.apply(&change);
        assert_eq!(config.plan_release_lease(&dataset_id(1), 100.0), Err(ApiError::LeaseNotFound));
    }

    #[test]
    fn a_nodes_view_holds_only_the_leases_that_pin_something() {
        let mut config = Configuration::default();
        let (here, there) = (node(1), node(2));
        create(&mut config, 1, here);
        create(&mut config, 2, there);
        create(&mut config, 3, here);
        config.apply(&config.plan_delete(&dataset_id(3).to_string()).unwrap().1.unwrap());
        for id in [1, 2, 3] {
            config.apply(
                &config.plan_acquire_lease(&lease(id, here, None), 0.0).unwrap().change.unwrap(),
            );
        }
        let view = config.node_view(&here);
        assert_eq!(
            view.datasets.iter().map(|d| d.dataset_id).collect::<Vec<_>>(),
            [dataset_id(1), dataset_id(3)]
        );
        // 1 is wanted here anyway; 2 moved away and 3 is deleted: those leases hold them.
        assert_eq!(view.leases, [dataset_id(2), dataset_id(3)]);
    }

    #[test]
    fn a_block_device_is_recorded_once() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        let record = |config: &Configuration, device: &str| {
            config.plan_record_blockdevice(&node(1), dataset_id(1), device)
        };
        config.apply(&record(&config, "block-1").unwrap().unwrap());
        assert_eq!(record(&config, "block-1"), Ok(None));
        assert!(matches!(record(&config, "block-2"), Err(ApiError::AlreadyOwned { .. })));
    }

    #[test]
    fn only_a_datasets_primary_records_its_block_device_and_only_a_short_printable_one() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        let refused = |node: NodeUuid, id: DatasetId, device: &str| {
            matches!(config.plan_record_blockdevice(&node, id, device), Err(ApiError::Schema(_)))
        };
        assert!(refused(node(2), dataset_id(1), "block-1"), "another node's dataset");
        assert!(refused(node(1), dataset_id(9), "block-9"), "a dataset that does not exist");
        assert!(refused(node(1), dataset_id(1), ""));
        assert!(refused(node(1), dataset_id(1), &"b".repeat(MAXIMUM_BLOCKDEVICE_ID_BYTES + 1)));
        assert!(refused(node(1), dataset_id(1), "block\n1"));
        let longest = "b".repeat(MAXIMUM_BLOCKDEVICE_ID_BYTES);
        assert!(config.plan_record_blockdevice(&node(1), dataset_id(1), &longest).is_ok());
    }

    #[test]
    fn a_reported_volume_is_remembered_once_and_only_for_known_datasets() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        create(&mut config, 2, node(1));
        let stranger = dataset_id(9);
        let change = config.plan_volumes_reported([dataset_id(1), stranger, dataset_id(1)]);
        assert_eq!(change, Some(Change::VolumesReported { dataset_ids: vec![dataset_id(1)] }));
        config.apply(&change.unwrap());
        assert!(config.had_volume(&dataset_id(1)));
        assert!(!config.had_volume(&dataset_id(2)) && !config.had_volume(&stranger));
        assert_eq!(config.plan_volumes_reported([dataset_id(1)]), None, "recorded once");
    }

    #[test]
    fn a_recorded_block_device_means_the_dataset_had_a_volume() {
        let mut config = Configuration::default();
        create(&mut config, 1, node(1));
        let record = config.plan_record_blockdevice(&node(1), dataset_id(1), "block-1");
        config.apply(&record.unwrap().unwrap());
        assert!(config.had_volume(&dataset_id(1)));
        assert_eq!(config.plan_volumes_reported([dataset_id(1)]), None);
    }

    #[test]
    fn a_nodes_view_says_which_of_its_datasets_had_a_volume() {
        let mut config = Configuration::default();
        let (here, there) = (node(1), node(2));
        create(&mut config, 1, here);
        create(&mut config, 2, here);
        create(&mut config, 3, there);
        let reported = config.plan_volumes_reported([dataset_id(1), dataset_id(3)]).unwrap();
        config.apply(&reported);
        assert_eq!(config.node_view(&here).had_volume, BTreeSet::from([dataset_id(1)]));
    }

    #[test]
    fn a_node_may_report_problems_only_of_its_own_datasets_one_each() {
        let mut config = Configuration::default();
        let (here, there) = (node(1), node(2));
        create(&mut config, 1, here);
        create(&mut config, 2, there);
        let problem = |id: DatasetId, text: &str| ReportedProblem {
            dataset_id: id,
            problem: text.to_owned(),
        };
        let stranger = dataset_id(9);
        let reported = vec![
            problem(dataset_id(1), "first"),
            problem(dataset_id(2), "theirs"),
            problem(stranger, "unknown"),
            problem(dataset_id(1), "second"),
        ];
        let problems = config.problems_of(&here, reported);
        assert_eq!(problems.kept, BTreeMap::from([(dataset_id(1), "first".to_owned())]));
        assert_eq!(problems.dropped, [dataset_id(2), stranger]);
        let moved = config
            .plan_move(&dataset_id(1).to_string(), &UpdateDataset { primary: Some(there) })
            .unwrap();
        config.apply(&moved.1.unwrap());
        let after_move = config.problems_of(&here, vec![problem(dataset_id(1), "late")]);
        assert!(after_move.kept.is_empty(), "it moved away: no longer this node's to report");
    }

    #[test]
    fn pushes_arrivals_and_discards_follow_the_primaries_and_what_the_nodes_hold() {
        let mut config = Configuration::default();
        let (here, there, third) = (node(1), node(2), node(3));
        create(&mut config, 1, there); // held here, wanted there: pushed
        create(&mut config, 2, here); // held here and there, wanted here: arriving from there
        create(&mut config, 3, there); // held here, deleted there: discarded
        create(&mut config, 4, here); // held here, deleted here: in the datasets, nothing else
        create(&mut config, 5, here); // held by the third node, deleted: no arrival
        for id in [3, 4, 5] {
            config.apply(&config.plan_delete(&dataset_id(id).to_string()).unwrap().1.unwrap());
        }
        let stranger = dataset_id(9);
        let holdings = vec![
            (here, vec![dataset_id(1), dataset_id(2), dataset_id(3), dataset_id(4), stranger]),
            (there, vec![dataset_id(2), dataset_id(1)]),
            (third, vec![dataset_id(2), dataset_id(5)]),
        ];
        let view = config.push_view(&here, holdings.clone());
        assert_eq!(view.pushes, BTreeMap::from([(dataset_id(1), there)]));
        assert_eq!(
            view.arriving,
            BTreeMap::from([(dataset_id(2), BTreeSet::from([there, third]))])
        );
        assert_eq!(view.discard, BTreeSet::from([dataset_id(3)]));
        // From the other side: there pushes 2 here, and 1 arrives there from here.
        let theirs = config.push_view(&there, holdings);
        assert_eq!(theirs.pushes, BTreeMap::from([(dataset_id(2), here)]));
        assert_eq!(theirs.arriving, BTreeMap::from([(dataset_id(1), BTreeSet::from([here]))]));
        assert!(theirs.discard.is_empty());
        // A node holding nothing, with nothing wanted on it, has nothing to do.
        assert_eq!(
            config.push_view(&node(4), Vec::<(NodeUuid, Vec<DatasetId>)>::new()),
            PushView::default()
        );
    }
}
