//! Which push each dataset needs from this node, and what becomes of a volume set aside for a
//! handoff whose destination changed. Pure: the configuration, what is here, and what the
//! other node says it holds.

use std::collections::BTreeMap;

use flocker_api::agent_protocol::AgentConfiguration;
use flocker_api::{DatasetId, NodeUuid};
use uuid::Uuid;

use crate::peer::Holding;

/// One dataset's part in a push from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// The volume is still in use here (a lease holds it): send what it holds now, again and
    /// again, so that little is left for the handoff.
    PreCopy { to: NodeUuid },
    /// The volume is free: send it (all of it first, if the receiver has nothing of it), set it
    /// aside, send its last difference, have the receiver make its volume, then delete ours.
    HandOff { to: NodeUuid },
    /// Set aside for `to`, still its destination: finish the handoff.
    Finish { to: NodeUuid },
    /// Set aside for `target`, which is no longer the destination: ask `target` what it did.
    Settle { target: NodeUuid },
    /// Set aside, and the dataset was deleted.
    Discard,
}

impl Duty {
    /// The node the push goes to, or the one asked.
    pub fn node(&self) -> Option<NodeUuid> {
        match *self {
            Self::PreCopy { to } | Self::HandOff { to } | Self::Finish { to } => Some(to),
            Self::Settle { target } => Some(target),
            Self::Discard => None,
        }
    }

    /// Whether it moves the volume out of the agent's sight: nothing else may touch it then.
    pub fn sets_aside(&self) -> bool {
        !matches!(self, Self::PreCopy { .. })
    }
}

/// The duty of each dataset: `volumes` are those in the pool (true when mounted), `aside` those
/// set aside and the node each was set aside for. A volume wanted elsewhere that is still
/// mounted without a lease has none yet: the plan unmounts it first.
pub fn duties(
    desired: &AgentConfiguration,
    volumes: &BTreeMap<DatasetId, bool>,
    aside: &BTreeMap<DatasetId, NodeUuid>,
) -> BTreeMap<DatasetId, Duty> {
    let mut duties = BTreeMap::new();
    for (id, target) in aside {
        let deleted_here = desired.datasets.iter().any(|d| d.dataset_id == *id && d.deleted);
        let duty = if desired.discard.contains(id) || deleted_here {
            Duty::Discard
        } else if desired.pushes.get(id) == Some(target) {
            Duty::Finish { to: *target }
        } else {
            Duty::Settle { target: *target }
        };
        duties.insert(*id, duty);
    }
    for (id, to) in &desired.pushes {
        let (Some(mounted), false) = (volumes.get(id), aside.contains_key(id)) else { continue };
        if desired.leases.contains(id) {
            duties.insert(*id, Duty::PreCopy { to: *to });
        } else if !mounted {
            duties.insert(*id, Duty::HandOff { to: *to });
        }
    }
    duties
}

/// What becomes of a volume set aside for `target` whose destination changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// `target` made its volume of our copy: ours is superseded.
    Delete,
    /// `target` took nothing, and the dataset is wanted here again: ours is the volume.
    Restore,
    /// `target` took nothing, and the dataset now goes to this node: hand it off there.
    Retarget(NodeUuid),
    /// Nothing is certain: keep it aside, and say why.
    Keep(String),
}

/// `ours`: the origins of our snapshots of the dataset.
pub fn fate(
    desired: &AgentConfiguration,
    dataset: &DatasetId,
    target: NodeUuid,
    theirs: &Holding,
    ours: &[Uuid],
) -> Fate {
    if let Some(volume) = theirs.volume {
        if volume.promoted_from.is_some_and(|origin| ours.contains(&origin)) {
            return Fate::Delete;
        }
        return Fate::Keep(format!(
            "node {target} has a volume of dataset {dataset} that was not made of this node's \
             copy; this node's copy is kept aside"
        ));
    }
    if let Some(to) = desired.pushes.get(dataset) {
        return Fate::Retarget(*to);
    }
    let wanted_here = desired.datasets.iter().any(|d| d.dataset_id == *dataset && !d.deleted);
    let elsewhere = desired.arriving.get(dataset).is_some_and(|from| !from.is_empty());
    if wanted_here && !elsewhere {
        return Fate::Restore;
    }
    Fate::Keep(format!(
        "dataset {dataset} was being handed off to node {target}, which did not take it, and \
         another node holds it now; this node's copy is kept aside"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::HeldVolume;
    use flocker_api::Dataset;

    fn wanted_here(id: DatasetId) -> Dataset {
        Dataset {
            dataset_id: id,
            primary: NodeUuid::random(),
            metadata: Default::default(),
            deleted: false,
            maximum_size: None,
        }
    }

    fn holding(promoted_from: Option<Option<Uuid>>) -> Holding {
        Holding {
            snapshots: vec![],
            volume: promoted_from.map(|promoted_from| HeldVolume { promoted_from }),
            refuses: None,
        }
    }

    #[test]
    fn a_leased_volume_is_pre_copied_a_free_one_handed_off_a_mounted_free_one_waits() {
        let (leased, free, mounted) =
            (DatasetId::random(), DatasetId::random(), DatasetId::random());
        let to = NodeUuid::random();
        let desired = AgentConfiguration {
            pushes: [(leased, to), (free, to), (mounted, to)].into(),
            leases: vec![leased],
            ..Default::default()
        };
        let volumes = BTreeMap::from([(leased, true), (free, false), (mounted, true)]);
        let duties = duties(&desired, &volumes, &BTreeMap::new());
        assert_eq!(duties.get(&leased), Some(&Duty::PreCopy { to }));
        assert_eq!(duties.get(&free), Some(&Duty::HandOff { to }));
        assert_eq!(duties.get(&mounted), None);
    }

    #[test]
    fn a_volume_set_aside_is_finished_settled_or_discarded() {
        let (finish, settle, discard) =
            (DatasetId::random(), DatasetId::random(), DatasetId::random());
        let (to, other) = (NodeUuid::random(), NodeUuid::random());
        let desired = AgentConfiguration {
            pushes: [(finish, to), (settle, other)].into(),
            discard: [discard].into(),
            ..Default::default()
        };
        let aside = BTreeMap::from([(finish, to), (settle, to), (discard, to)]);
        let volumes = BTreeMap::new();
        let duties = duties(&desired, &volumes, &aside);
        assert_eq!(duties[&finish], Duty::Finish { to });
        assert_eq!(duties[&settle], Duty::Settle { target: to });
        assert_eq!(duties[&discard], Duty::Discard);
    }

    #[test]
    fn nothing_is_pushed_without_a_volume_here() {
        let desired = AgentConfiguration {
            pushes: [(DatasetId::random(), NodeUuid::random())].into(),
            ..Default::default()
        };
        assert!(duties(&desired, &BTreeMap::new(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_copy_set_aside_is_deleted_only_once_the_target_made_its_volume_of_it() {
        let (dataset, target) = (DatasetId::random(), NodeUuid::random());
        let ours = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let desired = AgentConfiguration::default();
        let theirs = holding(Some(Some(Uuid::from_u128(2))));
        assert_eq!(fate(&desired, &dataset, target, &theirs, &ours), Fate::Delete);
        for foreign in [holding(Some(Some(Uuid::from_u128(9)))), holding(Some(None))] {
            let fate = fate(&desired, &dataset, target, &foreign, &ours);
            assert!(matches!(fate, Fate::Keep(_)), "{fate:?}");
        }
    }

    #[test]
    fn a_copy_the_target_never_took_goes_back_or_on_never_beside_another_holder() {
        let (dataset, target, next) = (DatasetId::random(), NodeUuid::random(), NodeUuid::random());
        let none = holding(None);
        let back =
            AgentConfiguration { datasets: vec![wanted_here(dataset)], ..Default::default() };
        assert_eq!(fate(&back, &dataset, target, &none, &[]), Fate::Restore);
        let on = AgentConfiguration { pushes: [(dataset, next)].into(), ..Default::default() };
        assert_eq!(fate(&on, &dataset, target, &none, &[]), Fate::Retarget(next));
        let held_elsewhere = AgentConfiguration {
            datasets: vec![wanted_here(dataset)],
            arriving: [(dataset, [next].into())].into(),
            ..Default::default()
        };
        let fate = fate(&held_elsewhere, &dataset, target, &none, &[]);
        assert!(matches!(fate, Fate::Keep(_)), "{fate:?}");
    }
}
