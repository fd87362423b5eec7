//! The isolator's decisions, without I/O: which dataset a FLOCKER_ID names, what a new one is
//! made of, what the cluster state says of it, how long to wait before looking again.

use std::path::PathBuf;
use std::time::Duration;

use flocker_api::{CreateDataset, Dataset, DatasetId, DatasetState, NAME_KEYS, NodeUuid};

use crate::request::{FlockerId, VolumeRequest};

/// Where Flocker kept a storage profile.
pub const PROFILE_KEY: &str = "clusterhq:flocker:profile";

/// The live dataset a FLOCKER_ID names; tombstones never count. Several is an error the
/// operator must settle: guessing could hand a task someone else's data.
pub fn find_dataset<'a>(
    datasets: &'a [Dataset],
    id: &FlockerId,
) -> Result<Option<&'a Dataset>, Vec<DatasetId>> {
    let named: Vec<&Dataset> =
        datasets.iter().filter(|d| !d.deleted).filter(|d| d.is_named(id.as_str())).collect();
    match named.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(many.iter().map(|d| d.dataset_id).collect()),
    }
}

/// What a new volume is made of, whoever asks for it (a Mesos task, a Docker container).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewVolume<'a> {
    pub flocker_id: &'a FlockerId,
    pub maximum_size: Option<u64>,
    pub profile: Option<&'a str>,
}

impl<'a> From<&'a VolumeRequest> for NewVolume<'a> {
    fn from(volume: &'a VolumeRequest) -> Self {
        Self {
            flocker_id: &volume.flocker_id,
            maximum_size: volume.maximum_size,
            profile: volume.profile.as_deref(),
        }
    }
}

/// The dataset to create for a volume, here.
pub fn new_dataset(volume: NewVolume<'_>, node: NodeUuid, default_size: u64) -> CreateDataset {
    let mut metadata: flocker_api::Metadata = NAME_KEYS
        .iter()
        .map(|key| ((*key).to_owned(), volume.flocker_id.as_str().to_owned()))
        .collect();
    if let Some(profile) = volume.profile {
        metadata.insert(PROFILE_KEY.to_owned(), profile.to_owned());
    }
    CreateDataset {
        primary: node,
        dataset_id: None,
        maximum_size: Some(volume.maximum_size.unwrap_or(default_size)),
        metadata,
    }
}

/// What `/v1/state/datasets` says of a dataset, seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Here(PathBuf),
    Elsewhere { node: NodeUuid, path: String },
    NotMounted,
    Unreported,
}

pub fn seen(states: &[DatasetState], dataset: &DatasetId, node: &NodeUuid) -> Seen {
    let mine = || states.iter().filter(|s| s.dataset_id == *dataset);
    let mounted =
        |s: &&DatasetState| s.primary.is_some() && s.path.as_deref().is_some_and(|p| !p.is_empty());
    if let Some(here) = mine().filter(mounted).find(|s| s.primary == Some(*node)) {
        return Seen::Here(PathBuf::from(here.path.clone().unwrap_or_default()));
    }
    if let Some(there) = mine().find(mounted) {
        let (node, path) = (there.primary.unwrap_or(*node), there.path.clone().unwrap_or_default());
        return Seen::Elsewhere { node, path };
    }
    if mine().next().is_some() { Seen::NotMounted } else { Seen::Unreported }
}

impl Seen {
    /// For a message: where the dataset was last seen.
    pub fn describe(&self) -> String {
        match self {
            Self::Here(path) => format!("mounted here at {}", path.display()),
            Self::Elsewhere { node, path } => {
                format!("still mounted on node {node} at {path} (not yet released by that node)")
            }
            Self::NotMounted => "present but mounted nowhere".to_owned(),
            Self::Unreported => {
                "not reported by any dataset agent (is flocker-dataset-agent running on this node?)"
                    .to_owned()
            }
        }
    }
}

/// The next pause while waiting for a mount: short at first, since a loopback volume is ready in
/// tens of milliseconds, then longer, never more than a quarter second.
pub fn next_poll(previous: Duration) -> Duration {
    (previous.mul_f64(1.5)).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flocker_api::Metadata;

    fn dataset(metadata: &[(&str, &str)], deleted: bool) -> Dataset {
        Dataset {
            dataset_id: DatasetId::random(),
            primary: NodeUuid::random(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Metadata>(),
            deleted,
            maximum_size: None,
        }
    }

    #[test]
    fn a_dataset_is_found_by_name_or_by_the_old_modules_key_but_never_as_a_tombstone() {
        let id: FlockerId = "webapp-data".parse().unwrap();
        let docker = dataset(&[("name", "webapp-data")], false);
        let old_module = dataset(&[("FLOCKER_ID", "webapp-data")], false);
        let gone = dataset(&[("name", "webapp-data")], true);
        let other = dataset(&[("name", "other")], false);
        assert_eq!(
            find_dataset(&[docker.clone(), gone.clone(), other.clone()], &id),
            Ok(Some(&docker))
        );
        assert_eq!(find_dataset(&[old_module.clone(), gone.clone()], &id), Ok(Some(&old_module)));
        assert_eq!(find_dataset(&[gone, other], &id), Ok(None));
        let both = find_dataset(&[docker.clone(), old_module.clone()], &id).unwrap_err();
        assert_eq!(both, [docker.dataset_id, old_module.dataset_id]);
    }

    #[test]
    fn a_new_dataset_carries_both_names_its_size_and_profile() {
        let volume = VolumeRequest {
            flocker_id: "pg-wal".parse().unwrap(),
            path: "/var/lib/pg".parse().unwrap(),
            maximum_size: None,
            profile: Some("gold".into()),
            read_only: false,
            variable_suffix: "_2".into(),
        };
        let node = NodeUuid::random();
        let create = new_dataset((&volume).into(), node, 1 << 30);
        assert_eq!(create.primary, node);
        assert_eq!(create.maximum_size, Some(1 << 30));
        assert_eq!(create.metadata["name"], "pg-wal");
        assert_eq!(create.metadata["FLOCKER_ID"], "pg-wal");
        assert_eq!(create.metadata[PROFILE_KEY], "gold");
    }

    #[test]
    fn the_state_is_read_from_this_nodes_point_of_view() {
        let (dataset, here, there) = (DatasetId::random(), NodeUuid::random(), NodeUuid::random());
        let state = |primary: Option<NodeUuid>, path: Option<&str>| DatasetState {
            dataset_id: dataset,
            primary,
            path: path.map(str::to_owned),
            maximum_size: None,
        };
        assert_eq!(seen(&[], &dataset, &here), Seen::Unreported);
        assert_eq!(seen(&[state(None, None)], &dataset, &here), Seen::NotMounted);
        let elsewhere = seen(&[state(Some(there), Some("/flocker/x"))], &dataset, &here);
        assert_eq!(elsewhere, Seen::Elsewhere { node: there, path: "/flocker/x".into() });
        let both = [state(Some(there), Some("/flocker/x")), state(Some(here), Some("/flocker/y"))];
        assert_eq!(seen(&both, &dataset, &here), Seen::Here("/flocker/y".into()));
    }

    #[test]
    fn polling_starts_short_and_slows_down_to_a_limit() {
        let mut pause = Duration::ZERO;
        let pauses: Vec<u128> = (0..12)
            .map(|_| {
                pause = next_poll(pause);
                pause.as_millis()
            })
            .collect();
        assert_eq!(pauses[0], 5);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*pauses.last().unwrap(), 250);
    }
}
