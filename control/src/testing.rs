//! What the unit tests of several modules share: random sequences of configuration changes.

use flocker_api::{Dataset, DatasetId, NAME_KEYS, NodeUuid};

use crate::model::{Change, Configuration};

/// A small deterministic generator: the same sequence on every run.
pub struct Sequence(pub u64);

impl Sequence {
    pub fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

/// A change of any kind to `configuration`, on one of `nodes`: datasets named `volume-0` to
/// `volume-7` under either name key, moves, deletes, leases, block devices and volumes seen.
pub fn random_change(
    configuration: &Configuration,
    nodes: &[NodeUuid],
    seq: &mut Sequence,
) -> Change {
    let ids: Vec<DatasetId> = configuration.datasets.keys().copied().collect();
    let node = nodes[seq.next(nodes.len())];
    if ids.is_empty() {
        return new_dataset(node, seq);
    }
    let kind = seq.next(8);
    let (one, other) = (ids[seq.next(ids.len())], ids[seq.next(ids.len())]);
    match kind {
        0 => Change::MoveDataset { dataset_id: one, primary: node },
        1 => Change::DeleteDataset { dataset_id: one },
        2 | 3 => Change::AcquireLease { dataset_id: one, node_uuid: node, expiration: None },
        4 => Change::ReleaseLeases { dataset_ids: vec![one, other] },
        5 => {
            Change::RecordBlockDevice { dataset_id: one, blockdevice_id: format!("block-{other}") }
        }
        6 => Change::VolumesReported { dataset_ids: vec![one, other] },
        _ => new_dataset(node, seq),
    }
}

fn new_dataset(node: NodeUuid, seq: &mut Sequence) -> Change {
    let name = format!("volume-{}", seq.next(8));
    let key = NAME_KEYS[seq.next(NAME_KEYS.len())];
    let dataset = Dataset {
        dataset_id: DatasetId::random(),
        primary: node,
        metadata: [(key.to_owned(), name)].into(),
        deleted: false,
        maximum_size: None,
    };
    Change::CreateDataset { dataset }
}
