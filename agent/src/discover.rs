//! What this node really has: the backend's volumes, where each is attached, and whether it is
//! mounted at its mount point (from `/proc/self/mountinfo`, never from a directory merely
//! existing). Discovery reads everything afresh each time, so after a crash or restart the agent
//! finds what it had — attached devices, mounts — and carries on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flocker_api::DatasetId;
use flocker_api::agent_protocol::ReportedDataset;

use crate::backend::{Attachment, Backend, BackendError, Volume};
use crate::calculate::Have;
use flocker_host::mounts::MountTable;

/// One dataset's volume and what it amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub volume: Volume,
    pub have: Have,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub found: BTreeMap<DatasetId, Found>,
}

/// Where a dataset is mounted on this node.
pub fn mount_point(mount_root: &Path, dataset_id: &DatasetId) -> PathBuf {
    mount_root.join(dataset_id.to_string())
}

pub fn discover(backend: &dyn Backend, mount_root: &Path) -> Result<Discovery, BackendError> {
    let mounts =
        MountTable::read().map_err(BackendError::io("read", Path::new("/proc/self/mountinfo")))?;
    let mut found: BTreeMap<DatasetId, Found> = BTreeMap::new();
    for volume in backend.list()? {
        let id = volume.dataset_id;
        if let Some(kept) = found.get(&id) {
            log::warn!(
                "dataset {id} has more than one volume in the backend ({:?}, {:?}); going by \
                 the one attached elsewhere first, then here, and touching no other",
                kept.volume.attachment,
                volume.attachment
            );
            if precedence(&kept.volume.attachment) >= precedence(&volume.attachment) {
                continue;
            }
        }
        let have = what_is_there(backend, &volume, &mount_point(mount_root, &id), &mounts)?;
        found.insert(id, Found { volume, have });
    }
    Ok(Discovery { found })
}

/// What a volume amounts to on this node; `target` is where it would be mounted.
fn what_is_there(
    backend: &dyn Backend,
    volume: &Volume,
    target: &Path,
    mounts: &MountTable,
) -> Result<Have, BackendError> {
    Ok(match &volume.attachment {
        Attachment::Unattached => Have::Detached,
        Attachment::Elsewhere(_) => Have::Elsewhere,
        Attachment::Here { source: None } => Have::Attaching,
        Attachment::Here { source: Some(source) } if backend.is_mounted(source, target, mounts) => {
            Have::Mounted
        }
        Attachment::Here { source: Some(source) } => Have::Attached(backend.filesystem(source)?),
    })
}

/// Which of two volumes of one dataset counts: one attached to another node (never mount what
/// a node may still use), then one attached here, then an unattached one. Two names of one
/// volume appear only after a crash in a move by `link` and `unlink` (NFS), and the attached
/// name is the one that holds.
fn precedence(attachment: &Attachment) -> u8 {
    match attachment {
        Attachment::Unattached => 0,
        Attachment::Here { .. } => 1,
        Attachment::Elsewhere(_) => 2,
    }
}

impl Discovery {
    /// What the node has of each dataset, for [`crate::calculate::plan`].
    pub fn haves(&self) -> BTreeMap<DatasetId, Have> {
        self.found.iter().map(|(id, found)| (*id, found.have.clone())).collect()
    }

    /// The same without the datasets `left_out` names.
    pub fn without(&self, left_out: impl Fn(&DatasetId) -> bool) -> Self {
        let found = self.found.iter().filter(|(id, _)| !left_out(id));
        Self { found: found.map(|(id, found)| (*id, found.clone())).collect() }
    }

    /// The node's state report: mounted datasets with their path, the rest it has or can see
    /// unattached without one. Volumes attached to other nodes are theirs to report.
    pub fn report(&self, mount_root: &Path) -> Vec<ReportedDataset> {
        self.found
            .iter()
            .filter(|(_, found)| found.have != Have::Elsewhere)
            .map(|(id, found)| ReportedDataset {
                dataset_id: *id,
                path: (found.have == Have::Mounted)
                    .then(|| mount_point(mount_root, id).to_string_lossy().into_owned()),
                maximum_size: Some(found.volume.size),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_a_path_only_to_mounted_datasets_and_skips_other_nodes_volumes() {
        let volume =
            |attachment| Volume { dataset_id: DatasetId::random(), size: 1 << 26, attachment };
        let mounted = volume(Attachment::Here { source: Some("/dev/loop0".into()) });
        let detached = volume(Attachment::Unattached);
        let theirs = volume(Attachment::Elsewhere("b".into()));
        let discovery = Discovery {
            found: BTreeMap::from([
                (mounted.dataset_id, Found { volume: mounted.clone(), have: Have::Mounted }),
                (detached.dataset_id, Found { volume: detached.clone(), have: Have::Detached }),
                (theirs.dataset_id, Found { volume: theirs, have: Have::Elsewhere }),
            ]),
        };
        let mut report = discovery.report(Path::new("/flocker"));
        report.sort_by_key(|r| r.path.is_none());
        assert_eq!(report.len(), 2);
        assert_eq!(report[0].path, Some(format!("/flocker/{}", mounted.dataset_id)));
        assert_eq!((report[1].dataset_id, &report[1].path), (detached.dataset_id, &None));
    }
}
