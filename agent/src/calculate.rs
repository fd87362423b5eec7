//! The decision: for each dataset, from what the configuration wants, what the node has and
//! whether this node holds its lease, the one next step. Pure — no I/O, no clock — so every
//! rule is a unit test; a `match` without a catch-all arm makes the table complete.

use std::collections::{BTreeMap, BTreeSet};

use flocker_api::agent_protocol::AgentConfiguration;
use flocker_api::{DEFAULT_MAXIMUM_SIZE, DatasetId};

use crate::backend::Filesystem;

/// What the configuration wants of a dataset on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Mounted here, `size` bytes. `had_volume`: some agent has reported a volume of it, so a
    /// node that cannot find one must not make a new, empty one in its place.
    Here { size: u64, had_volume: bool },
    /// Not here: the dataset's primary is another node.
    Away,
    /// Gone: a tombstone whose primary is this node.
    Deleted,
}

/// What the node has of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Have {
    /// No volume.
    Missing,
    /// A volume attached to another node.
    Elsewhere,
    /// A volume attached to no node.
    Detached,
    /// Attached here, half-way (no device yet).
    Attaching,
    /// Attached here, not mounted; holding that file system.
    Attached(Filesystem),
    /// Attached and mounted here.
    Mounted,
}

/// How the backend's volumes reach another node ([`crate::backend::Backend::moves_by_copy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moves {
    /// Detached here, attached there: storage the nodes share (loopback, directory).
    ByAttach,
    /// Copied there: storage of this node's alone (btrfs). Nothing is ever detached.
    ByCopy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create {
        size: u64,
    },
    Attach,
    Format,
    Mount,
    Unmount,
    Detach,
    Destroy,
    /// Another node must let the volume go first: look again soon.
    WaitForRelease,
    /// A lease of this node pins it here as it is.
    Hold,
    /// Wanted on another node, and the only copy is here: kept, unmounted, until it has been
    /// pushed there (the push is not a step of the plan: it runs beside it). Never detached
    /// nor destroyed meanwhile.
    KeepUntilPushed,
    /// Wanted here, and another node holding it on its own disk pushes it here: wait for it.
    WaitForCopy,
    /// Something the agent must not touch; said in the log and reported, never acted on.
    Refuse(Refusal),
    Done,
}

impl Step {
    /// Whether carrying it out changes the node (a backend call that may take a while, given to
    /// a worker); the others only wait, hold or refuse.
    pub fn changes_the_node(&self) -> bool {
        match self {
            Self::Create { .. }
            | Self::Attach
            | Self::Format
            | Self::Mount
            | Self::Unmount
            | Self::Detach
            | Self::Destroy => true,
            Self::WaitForRelease
            | Self::Hold
            | Self::KeepUntilPushed
            | Self::WaitForCopy
            | Self::Refuse(_)
            | Self::Done => false,
        }
    }

    /// Which steps to start first when there are more than workers: lower first. Those that
    /// complete what someone waits for (a volume mounted here, a volume let go for another
    /// node), then those one step from it, and the long first steps (a create formats the new
    /// volume) last — so that in a crowd volumes become ready one by one from the start, rather
    /// than all near the end.
    pub fn urgency(&self) -> u8 {
        match self {
            Self::Mount | Self::Detach => 0,
            Self::Format | Self::Unmount => 1,
            Self::Attach => 2,
            Self::Create { .. } | Self::Destroy => 3,
            Self::WaitForRelease
            | Self::Hold
            | Self::KeepUntilPushed
            | Self::WaitForCopy
            | Self::Refuse(_)
            | Self::Done => 4,
        }
    }
}

/// Why the agent leaves a dataset wanted here as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It had a volume, and this node cannot find it: a new one would hide its data.
    NotVisible,
    /// It had a volume, on another node's own disk (btrfs), and no node says it holds it now.
    OnAnotherNodesDisk,
    /// Its volume holds a file system that is not ours (the kind `blkid` names).
    ForeignFilesystem(String),
}

impl Refusal {
    /// What a person reads, in the log, in `flockerctl list` and from the isolator: it names
    /// the dataset, since it is read far from this node's log.
    pub fn message(&self, dataset_id: &DatasetId) -> String {
        match self {
            Self::NotVisible => format!(
                "the volume of dataset {dataset_id} is not visible on this node: is root_path \
                 shared with the node that had it? A new, empty volume is never made in place \
                 of its data"
            ),
            Self::OnAnotherNodesDisk => format!(
                "the volume of dataset {dataset_id} is on another node's own disk, and no live \
                 node reports holding it (is that node down?): it is pushed here once that node \
                 is back. A new, empty volume is never made in place of its data"
            ),
            Self::ForeignFilesystem(kind) => format!(
                "the volume of dataset {dataset_id} holds a file system of its own ({kind}): it \
                 is never formatted nor mounted"
            ),
        }
    }
}

/// One step toward `want` for one dataset, on a backend whose volumes move as `moves` says.
pub fn next_step(want: &Want, have: &Have, leased_here: bool, moves: Moves) -> Step {
    use Have::*;
    match (want, have) {
        (Want::Here { size, had_volume: false }, Missing) => Step::Create { size: *size },
        (Want::Here { had_volume: true, .. }, Missing) if moves == Moves::ByCopy => {
            Step::Refuse(Refusal::OnAnotherNodesDisk)
        }
        (Want::Here { had_volume: true, .. }, Missing) => Step::Refuse(Refusal::NotVisible),
        (Want::Here { .. }, Elsewhere) => Step::WaitForRelease,
        (Want::Here { .. }, Detached | Attaching) => Step::Attach,
        (Want::Here { .. }, Attached(Filesystem::Empty)) => Step::Format,
        (Want::Here { .. }, Attached(Filesystem::Ours)) => Step::Mount,
        (Want::Here { .. }, Attached(Filesystem::Foreign(kind))) => {
            Step::Refuse(Refusal::ForeignFilesystem(kind.clone()))
        }
        (Want::Here { .. }, Mounted) => Step::Done,
        (Want::Away | Want::Deleted, Missing | Elsewhere) | (Want::Away, Detached) => Step::Done,
        (Want::Away | Want::Deleted, Mounted | Attaching | Attached(_))
        | (Want::Deleted, Detached)
            if leased_here =>
        {
            Step::Hold
        }
        (Want::Away | Want::Deleted, Mounted) => Step::Unmount,
        (Want::Away, Attaching | Attached(_)) if moves == Moves::ByCopy => Step::KeepUntilPushed,
        (Want::Deleted, Attaching | Attached(_)) if moves == Moves::ByCopy => Step::Destroy,
        (Want::Away | Want::Deleted, Attaching | Attached(_)) => Step::Detach,
        (Want::Deleted, Detached) => Step::Destroy,
    }
}

/// The steps for every dataset the configuration names for this node or the node has, in
/// dataset order. `have` holds what discovery found; datasets it lacks are `Missing`. On a
/// backend whose volumes move by copy, a dataset wanted here that another node holds
/// (`arriving`) and this node lacks waits for its push: never a new volume in its place.
pub fn plan(
    desired: &AgentConfiguration,
    have: &BTreeMap<DatasetId, Have>,
    moves: Moves,
) -> Vec<(DatasetId, Step)> {
    let leases: BTreeSet<&DatasetId> = desired.leases.iter().collect();
    let arriving = |id: &DatasetId| desired.arriving.get(id).is_some_and(|from| !from.is_empty());
    let wants: BTreeMap<DatasetId, Want> = desired
        .datasets
        .iter()
        .map(|dataset| {
            let want = if dataset.deleted || desired.discard.contains(&dataset.dataset_id) {
                Want::Deleted
            } else {
                Want::Here {
                    size: dataset.maximum_size.unwrap_or(DEFAULT_MAXIMUM_SIZE),
                    had_volume: desired.had_volume.contains(&dataset.dataset_id),
                }
            };
            (dataset.dataset_id, want)
        })
        .collect();
    let ids: BTreeSet<&DatasetId> = wants.keys().chain(have.keys()).collect();
    ids.into_iter()
        .map(|id| {
            let want = match wants.get(id) {
                Some(want) => want,
                None if desired.discard.contains(id) => &Want::Deleted,
                None => &Want::Away,
            };
            let found = have.get(id).unwrap_or(&Have::Missing);
            let copied = moves == Moves::ByCopy;
            if copied
                && matches!(want, Want::Here { .. })
                && *found == Have::Missing
                && arriving(id)
            {
                return (*id, Step::WaitForCopy);
            }
            (*id, next_step(want, found, leases.contains(id), moves))
        })
        .filter(|(_, step)| *step != Step::Done)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flocker_api::{Dataset, NodeUuid};

    const HERE: Want = Want::Here { size: 1 << 30, had_volume: false };

    /// The next step on shared storage (loopback, directory).
    fn shared(want: &Want, have: &Have, leased_here: bool) -> Step {
        next_step(want, have, leased_here, Moves::ByAttach)
    }

    /// The next step on storage of the node's own (btrfs).
    fn own(want: &Want, have: &Have, leased_here: bool) -> Step {
        next_step(want, have, leased_here, Moves::ByCopy)
    }
    const BACK: Want = Want::Here { size: 1 << 30, had_volume: true };

    #[test]
    fn a_wanted_dataset_goes_create_attach_format_mount() {
        assert_eq!(shared(&HERE, &Have::Missing, false), Step::Create { size: 1 << 30 });
        assert_eq!(shared(&HERE, &Have::Detached, false), Step::Attach);
        assert_eq!(shared(&HERE, &Have::Attaching, false), Step::Attach);
        assert_eq!(shared(&HERE, &Have::Attached(Filesystem::Empty), false), Step::Format);
        assert_eq!(shared(&HERE, &Have::Attached(Filesystem::Ours), false), Step::Mount);
        assert_eq!(shared(&HERE, &Have::Mounted, false), Step::Done);
    }

    #[test]
    fn only_the_steps_that_change_the_node_go_to_a_worker() {
        let changing = [
            Step::Create { size: 1 },
            Step::Attach,
            Step::Format,
            Step::Mount,
            Step::Unmount,
            Step::Detach,
            Step::Destroy,
        ];
        assert!(changing.iter().all(Step::changes_the_node));
        let waiting = [
            Step::WaitForRelease,
            Step::Hold,
            Step::KeepUntilPushed,
            Step::WaitForCopy,
            Step::Refuse(Refusal::NotVisible),
            Step::Done,
        ];
        assert!(!waiting.iter().any(Step::changes_the_node));
    }

    #[test]
    fn in_a_crowd_the_steps_that_finish_a_volume_go_before_those_that_start_one() {
        let mut steps = vec![Step::Create { size: 1 }, Step::Attach, Step::Mount, Step::Format];
        steps.sort_by_key(Step::urgency);
        assert_eq!(steps, [Step::Mount, Step::Format, Step::Attach, Step::Create { size: 1 }]);
        let mut leaving = vec![Step::Destroy, Step::Unmount, Step::Detach];
        leaving.sort_by_key(Step::urgency);
        assert_eq!(leaving, [Step::Detach, Step::Unmount, Step::Destroy]);
    }

    #[test]
    fn a_dataset_that_had_a_volume_is_never_given_a_new_one() {
        assert_eq!(shared(&BACK, &Have::Missing, false), Step::Refuse(Refusal::NotVisible));
        assert_eq!(shared(&BACK, &Have::Detached, false), Step::Attach);
        assert_eq!(shared(&BACK, &Have::Elsewhere, false), Step::WaitForRelease);
        let step = own(&BACK, &Have::Missing, false);
        assert_eq!(step, Step::Refuse(Refusal::OnAnotherNodesDisk));
        let message = Refusal::OnAnotherNodesDisk.message(&DatasetId::random());
        assert!(message.contains("no live node reports holding it"), "{message}");
    }

    #[test]
    fn a_volume_holding_another_file_system_is_never_formatted_nor_mounted() {
        let step = shared(&HERE, &Have::Attached(Filesystem::Foreign("xfs".into())), false);
        assert_eq!(step, Step::Refuse(Refusal::ForeignFilesystem("xfs".into())));
    }

    #[test]
    fn a_refusal_names_the_dataset_and_what_to_check() {
        let id = DatasetId::random();
        let not_visible = Refusal::NotVisible.message(&id);
        assert!(not_visible.starts_with(&format!("the volume of dataset {id} is not visible")));
        assert!(not_visible.contains("is root_path shared with the node that had it?"));
        let foreign = Refusal::ForeignFilesystem("xfs".into()).message(&id);
        assert!(foreign.contains(&id.to_string()) && foreign.contains("(xfs)"), "{foreign}");
    }

    #[test]
    fn a_volume_attached_to_another_node_is_waited_for_not_taken() {
        assert_eq!(shared(&HERE, &Have::Elsewhere, false), Step::WaitForRelease);
    }

    #[test]
    fn a_dataset_that_moved_away_is_unmounted_then_detached() {
        assert_eq!(shared(&Want::Away, &Have::Mounted, false), Step::Unmount);
        assert_eq!(shared(&Want::Away, &Have::Attached(Filesystem::Ours), false), Step::Detach);
        assert_eq!(shared(&Want::Away, &Have::Attaching, false), Step::Detach);
        assert_eq!(shared(&Want::Away, &Have::Detached, false), Step::Done);
    }

    #[test]
    fn a_dataset_leased_here_stays_mounted_when_configuration_moves_or_deletes_it() {
        for want in [Want::Away, Want::Deleted] {
            assert_eq!(shared(&want, &Have::Mounted, true), Step::Hold);
            assert_eq!(shared(&want, &Have::Attached(Filesystem::Ours), true), Step::Hold);
        }
        assert_eq!(shared(&Want::Deleted, &Have::Detached, true), Step::Hold);
    }

    #[test]
    fn a_lease_never_causes_a_mount_or_a_move() {
        assert_eq!(shared(&Want::Away, &Have::Detached, true), Step::Done);
        assert_eq!(shared(&Want::Away, &Have::Elsewhere, true), Step::Done);
    }

    #[test]
    fn a_deleted_dataset_is_unmounted_detached_then_destroyed() {
        assert_eq!(shared(&Want::Deleted, &Have::Mounted, false), Step::Unmount);
        assert_eq!(shared(&Want::Deleted, &Have::Attached(Filesystem::Ours), false), Step::Detach);
        assert_eq!(shared(&Want::Deleted, &Have::Detached, false), Step::Destroy);
        assert_eq!(shared(&Want::Deleted, &Have::Missing, false), Step::Done);
        assert_eq!(shared(&Want::Deleted, &Have::Elsewhere, false), Step::Done);
    }

    fn dataset(id: DatasetId, deleted: bool, size: Option<u64>) -> Dataset {
        Dataset {
            dataset_id: id,
            primary: NodeUuid::random(),
            metadata: Default::default(),
            deleted,
            maximum_size: size,
        }
    }

    #[test]
    fn the_plan_covers_configured_and_found_datasets_and_leaves_others_volumes_alone() {
        let (wanted, tombstone, moved_away, someone_elses, gone_from_sight) = (
            DatasetId::random(),
            DatasetId::random(),
            DatasetId::random(),
            DatasetId::random(),
            DatasetId::random(),
        );
        let desired = AgentConfiguration {
            etag: String::new(),
            datasets: vec![
                dataset(wanted, false, None),
                dataset(tombstone, true, Some(1 << 26)),
                dataset(gone_from_sight, false, None),
            ],
            leases: vec![],
            blockdevice_ids: Default::default(),
            had_volume: [gone_from_sight].into(),
            ..Default::default()
        };
        let have = BTreeMap::from([
            (tombstone, Have::Detached),
            (moved_away, Have::Mounted),
            (someone_elses, Have::Detached),
        ]);
        let mut expected = vec![
            (wanted, Step::Create { size: DEFAULT_MAXIMUM_SIZE }),
            (tombstone, Step::Destroy),
            (moved_away, Step::Unmount),
            (gone_from_sight, Step::Refuse(Refusal::NotVisible)),
        ];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(plan(&desired, &have, Moves::ByAttach), expected);
    }

    #[test]
    fn a_volume_of_the_nodes_own_storage_is_mounted_with_no_attach_nor_format() {
        assert_eq!(own(&HERE, &Have::Missing, false), Step::Create { size: 1 << 30 });
        assert_eq!(own(&HERE, &Have::Attached(Filesystem::Ours), false), Step::Mount);
        assert_eq!(own(&HERE, &Have::Mounted, false), Step::Done);
    }

    #[test]
    fn a_volume_of_the_nodes_own_storage_moved_away_is_unmounted_and_kept_never_detached() {
        assert_eq!(own(&Want::Away, &Have::Mounted, false), Step::Unmount);
        for have in [Have::Attached(Filesystem::Ours), Have::Attaching] {
            assert_eq!(own(&Want::Away, &have, false), Step::KeepUntilPushed, "{have:?}");
        }
        assert_eq!(own(&Want::Away, &Have::Mounted, true), Step::Hold);
        assert_eq!(own(&Want::Away, &Have::Attached(Filesystem::Ours), true), Step::Hold);
    }

    #[test]
    fn a_deleted_volume_of_the_nodes_own_storage_is_unmounted_then_destroyed() {
        assert_eq!(own(&Want::Deleted, &Have::Mounted, false), Step::Unmount);
        let attached = Have::Attached(Filesystem::Ours);
        assert_eq!(own(&Want::Deleted, &attached, false), Step::Destroy);
        assert_eq!(own(&Want::Deleted, &attached, true), Step::Hold);
        assert_eq!(own(&Want::Deleted, &Have::Missing, false), Step::Done);
    }

    #[test]
    fn the_plan_keeps_a_volume_of_the_nodes_own_storage_that_moved_away() {
        let (moved_away, unmounted) = (DatasetId::random(), DatasetId::random());
        let desired = AgentConfiguration::default();
        let have = BTreeMap::from([
            (moved_away, Have::Mounted),
            (unmounted, Have::Attached(Filesystem::Ours)),
        ]);
        let mut expected = vec![(moved_away, Step::Unmount), (unmounted, Step::KeepUntilPushed)];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(plan(&desired, &have, Moves::ByCopy), expected);
    }

    #[test]
    fn a_dataset_arriving_by_push_is_waited_for_then_mounted_and_a_discarded_one_destroyed() {
        let (arriving, promoted, discarded) =
            (DatasetId::random(), DatasetId::random(), DatasetId::random());
        let from = NodeUuid::random();
        let desired = AgentConfiguration {
            datasets: vec![dataset(arriving, false, None), dataset(promoted, false, None)],
            had_volume: [arriving, promoted].into(),
            arriving: [(arriving, [from].into()), (promoted, [from].into())].into(),
            discard: [discarded].into(),
            ..Default::default()
        };
        let have = BTreeMap::from([
            (promoted, Have::Attached(Filesystem::Ours)),
            (discarded, Have::Attached(Filesystem::Ours)),
        ]);
        let mut expected = vec![
            (arriving, Step::WaitForCopy),
            (promoted, Step::Mount),
            (discarded, Step::Destroy),
        ];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(plan(&desired, &have, Moves::ByCopy), expected);
        // Shared storage has no pushes: a volume it cannot see is refused as before.
        let shared = plan(&desired, &have, Moves::ByAttach);
        let step = shared.iter().find(|(id, _)| *id == arriving).map(|(_, step)| step);
        assert_eq!(step, Some(&Step::Refuse(Refusal::NotVisible)));
    }
}
