//! The receiving node's side of a push: what it holds, whether it takes a stream or a
//! promotion from the node calling, and doing so. It takes them only for a dataset whose
//! primary it is, and only from a node the control service says holds that dataset
//! ([`may_arrive`], pure); never while it has a volume of that dataset.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use flocker_api::agent_protocol::AgentConfiguration;
use flocker_api::{DEFAULT_MAXIMUM_SIZE, DatasetId, NodeUuid};

use super::snapshots::{complete, promote, show};
use super::{Pool, TransferError, receive_trailed};
use crate::backend::btrfs::name;
use crate::converge::Mailbox;
use crate::peer::server::{Answer, Receiver};
use crate::peer::{HeldSnapshot, HeldVolume, Holding, Promote};

/// Why `peer` may not push `dataset` here now, or the volume's size (its quota) if it may.
pub fn may_arrive(
    configuration: Option<&AgentConfiguration>,
    peer: NodeUuid,
    dataset: &DatasetId,
) -> Result<u64, String> {
    let Some(configuration) = configuration else {
        return Err("this node has no configuration from the control service yet".into());
    };
    let wanted = configuration.datasets.iter().find(|d| d.dataset_id == *dataset && !d.deleted);
    let Some(wanted) = wanted else {
        return Err(format!("dataset {dataset} is not to be on this node"));
    };
    if !configuration.arriving.get(dataset).is_some_and(|from| from.contains(&peer)) {
        return Err(format!(
            "the control service does not say that node {peer} holds dataset {dataset}"
        ));
    }
    Ok(wanted.maximum_size.unwrap_or(DEFAULT_MAXIMUM_SIZE))
}

/// The largest stream taken for a volume of `size` bytes: its data, the stream's own commands
/// (a few per file), and room for many small files.
fn largest_stream(size: u64) -> u64 {
    size.saturating_add(size / 8).saturating_add(64 << 20)
}

/// This node's receiver, serving [`crate::peer::server`].
pub struct Incoming {
    pool: Pool,
    mailbox: Arc<Mailbox>,
    /// The last receive of each dataset that failed for want of room, for the node's
    /// problems. Other failures (a stream cut short, a busy dataset) pass: the sender tries
    /// again, and a task waiting for the volume should not fail for them.
    failures: Mutex<BTreeMap<DatasetId, String>>,
}

impl Incoming {
    pub fn new(pool: Pool, mailbox: Arc<Mailbox>) -> Self {
        Self { pool, mailbox, failures: Mutex::default() }
    }

    /// Why the last copy of each dataset failed, while it has not succeeded since.
    pub fn failures(&self) -> BTreeMap<DatasetId, String> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn record(
        &self,
        dataset: &DatasetId,
        outcome: Result<Holding, Answer>,
    ) -> Result<Holding, Answer> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match &outcome {
            Ok(_) => _ = failures.remove(dataset),
            Err(answer) if answer.status == 507 => {
                failures.insert(*dataset, answer.description.clone());
            }
            Err(answer) => log::warn!("dataset {dataset}: {}", answer.description),
        }
        outcome
    }

    fn check(&self, peer: NodeUuid, dataset: &DatasetId) -> Result<u64, Answer> {
        let size = may_arrive(self.mailbox.latest().as_deref(), peer, dataset)
            .map_err(|problem| Answer::new(403, problem))?;
        if let Some(path) = self.pool.volume_of(dataset).map_err(refused)? {
            let problem =
                format!("this node has a volume of dataset {dataset}: {}", path.display());
            return Err(Answer::new(409, problem));
        }
        Ok(size)
    }

    fn describe(&self, peer: Option<NodeUuid>, dataset: &DatasetId) -> Result<Holding, Answer> {
        let snapshots = complete(&self.pool, dataset).map_err(refused)?;
        let promoted_from = |parent: Option<uuid::Uuid>| {
            let parent = parent?;
            let snapshot = snapshots.iter().find(|s| s.subvolume.uuid == parent)?;
            Some(snapshot.held().origin)
        };
        let volume = match self.pool.volume_of(dataset).map_err(refused)? {
            Some(path) => {
                let parent = show(&path).map_err(refused)?.parent;
                Some(HeldVolume { promoted_from: promoted_from(parent) })
            }
            None => None,
        };
        let held = snapshots
            .iter()
            .map(|s| HeldSnapshot { name: s.generation.0, origin: s.held().origin });
        let refuses = peer.and_then(|peer| self.check(peer, dataset).err());
        Ok(Holding {
            snapshots: held.collect(),
            volume,
            refuses: refuses.map(|answer| answer.description),
        })
    }
}

impl Receiver for Incoming {
    fn holding(&self, peer: NodeUuid, dataset: &DatasetId) -> Result<Holding, Answer> {
        self.describe(Some(peer), dataset)
    }

    fn may_receive(&self, peer: NodeUuid, dataset: &DatasetId) -> Result<u64, Answer> {
        self.check(peer, dataset).map(largest_stream)
    }

    fn receive(
        &self,
        peer: NodeUuid,
        dataset: &DatasetId,
        stream: &mut dyn Read,
    ) -> Result<Holding, Answer> {
        let outcome = self.check(peer, dataset).and_then(|_| {
            let received = receive_trailed(&self.pool, dataset, stream).map_err(|error| {
                let answer = refused(error);
                let description =
                    format!("the copy from node {peer} failed: {}", answer.description);
                Answer::new(answer.status, description)
            })?;
            log::info!(
                "dataset {dataset}: received snapshot {} from node {peer} ({} bytes)",
                received.snapshot.generation,
                received.bytes
            );
            self.describe(None, dataset)
        });
        self.record(dataset, outcome)
    }

    fn promote(
        &self,
        peer: NodeUuid,
        dataset: &DatasetId,
        request: Promote,
    ) -> Result<Holding, Answer> {
        let outcome = self.check(peer, dataset).and_then(|size| {
            let snapshots = complete(&self.pool, dataset).map_err(refused)?;
            let Some(snapshot) = snapshots.iter().find(|s| s.held().origin == request.origin)
            else {
                let problem =
                    format!("no complete snapshot {} of dataset {dataset}", request.origin);
                return Err(Answer::new(409, problem));
            };
            let path =
                promote(&self.pool, snapshot, &name(dataset, size), Some(size)).map_err(refused)?;
            log::info!("dataset {dataset}: handed off by node {peer}, now {}", path.display());
            self.mailbox.poke();
            self.describe(None, dataset)
        });
        self.record(dataset, outcome)
    }
}

/// A failed step as an answer: the status says whose problem it is.
fn refused(error: TransferError) -> Answer {
    let text = format!("{:#}", anyhow::Error::new(error));
    let status = if text.contains("No space left") || text.contains("Disk quota exceeded") {
        507
    } else if text.contains("is there already") || text.contains("in use by another transfer") {
        409
    } else {
        400
    };
    Answer::new(status, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flocker_api::Dataset;

    fn configuration(dataset: DatasetId, deleted: bool, from: NodeUuid) -> AgentConfiguration {
        AgentConfiguration {
            datasets: vec![Dataset {
                dataset_id: dataset,
                primary: NodeUuid::random(),
                metadata: Default::default(),
                deleted,
                maximum_size: Some(1 << 30),
            }],
            arriving: [(dataset, [from].into())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_push_is_taken_only_from_a_node_holding_a_dataset_wanted_here() {
        let (dataset, holder) = (DatasetId::random(), NodeUuid::random());
        let wanted = configuration(dataset, false, holder);
        assert_eq!(may_arrive(Some(&wanted), holder, &dataset), Ok(1 << 30));
        let stranger = may_arrive(Some(&wanted), NodeUuid::random(), &dataset).unwrap_err();
        assert!(stranger.contains("does not say that node"), "{stranger}");
        let other = may_arrive(Some(&wanted), holder, &DatasetId::random()).unwrap_err();
        assert!(other.contains("is not to be on this node"), "{other}");
        let deleted = configuration(dataset, true, holder);
        assert!(may_arrive(Some(&deleted), holder, &dataset).is_err());
        assert!(may_arrive(None, holder, &dataset).is_err());
    }

    #[test]
    fn a_stream_may_be_somewhat_larger_than_the_volume_never_unbounded() {
        assert_eq!(largest_stream(1 << 30), (1 << 30) + (1 << 27) + (64 << 20));
        assert_eq!(largest_stream(u64::MAX), u64::MAX);
    }
}
