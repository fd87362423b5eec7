//! A move with the btrfs backend, as an operator can follow it: node A's agent pushes the
//! volume from its pool to node B's (a pre-copy, then the handoff), reporting how far it got,
//! which `/v1/state/transfers` serves and `flockerctl list` prints under its table; once B has
//! it, A deletes its own copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use flocker_api::types::DatasetTransfer;
use flocker_api::{Client, DatasetId};

use crate::ops::view;

/// How often the push is looked at while it runs.
const LOOK_EVERY: Duration = Duration::from_millis(2);
/// How long the old node may take to delete its copy once the new one has the volume.
const GONE_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `work` while looking at `/v1/state/transfers` for pushes of `id`: its result, and the
/// push as last seen in each of its phases (and failing, if it was), in the order first seen.
pub fn watching<T>(
    client: &Client,
    id: DatasetId,
    work: impl FnOnce() -> T,
) -> (T, Vec<DatasetTransfer>) {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen: Vec<DatasetTransfer> = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let transfers = client.dataset_transfers().ok().flatten().unwrap_or_default();
                for transfer in transfers.into_iter().filter(|t| t.dataset_id == id) {
                    match seen.iter_mut().find(|s| same_stage(s, &transfer)) {
                        Some(stage) => *stage = transfer,
                        None => seen.push(transfer),
                    }
                }
                std::thread::sleep(LOOK_EVERY);
            }
            seen
        });
        let result = work();
        done.store(true, Ordering::SeqCst);
        (result, watcher.join().unwrap_or_default())
    })
}

/// Whether two looks at a push saw it at the same stage: between the same nodes, in the same
/// phase, failing or not.
fn same_stage(a: &DatasetTransfer, b: &DatasetTransfer) -> bool {
    (a.from, a.to, a.phase, a.problem.is_some()) == (b.from, b.to, b.phase, b.problem.is_some())
}

/// A push as `flockerctl list --human` prints it under its table:
/// `0d934e7f: pushing to 5b87a5d6: 584 B (pre-copy)`.
pub fn as_listed(transfer: &DatasetTransfer) -> String {
    let push = view::Push {
        from: transfer.from,
        to: transfer.to,
        phase: transfer.phase,
        sent: transfer.sent,
        estimate: transfer.estimate,
        problem: transfer.problem.clone(),
    };
    format!("{}: {}", view::short(&transfer.dataset_id.to_string(), false), push.describe(false))
}

/// What of `id` is still in the btrfs pool mounted at `pool`: its volume (`volumes/`), a volume
/// set aside for a handoff (`handoff/<node>/`), its snapshots (`snapshots/<id>/`).
pub fn held_in(pool: &Path, id: DatasetId) -> Vec<PathBuf> {
    let of_dataset = |directory: &Path| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(directory) else { return Vec::new() };
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.split_once('_').is_some_and(|(dataset, _)| dataset == id.to_string())
            })
            .collect()
    };
    let mut held = of_dataset(&pool.join("volumes"));
    if let Ok(nodes) = std::fs::read_dir(pool.join("handoff")) {
        for node in nodes.filter_map(Result::ok) {
            held.extend(of_dataset(&node.path()));
        }
    }
    let snapshots = pool.join("snapshots").join(id.to_string());
    if snapshots.exists() {
        held.push(snapshots);
    }
    held
}

/// Waits until the pool mounted at `pool` holds nothing of `id` and no push of it is under
/// way: how long that took.
pub fn wait_until_gone(client: &Client, pool: &Path, id: DatasetId) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let held = held_in(pool, id);
        let transfers = client.dataset_transfers().context("cannot read the transfers")?;
        let pushing = transfers.unwrap_or_default().into_iter().any(|t| t.dataset_id == id);
        if held.is_empty() && !pushing {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= GONE_TIMEOUT {
            let mut still: Vec<String> = held.iter().map(|p| p.display().to_string()).collect();
            if pushing {
                still.push("a push in /v1/state/transfers".to_owned());
            }
            anyhow::bail!("{GONE_TIMEOUT:?} after the move, still there: {}", still.join(", "));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use flocker_api::NodeUuid;
    use flocker_api::agent_protocol::TransferPhase;

    use super::*;

    fn transfer(phase: TransferPhase, sent: u64) -> DatasetTransfer {
        DatasetTransfer {
            dataset_id: "11111111-0000-0000-0000-000000000000".parse().unwrap(),
            from: "22222222-0000-0000-0000-000000000000".parse::<NodeUuid>().unwrap(),
            to: "33333333-0000-0000-0000-000000000000".parse::<NodeUuid>().unwrap(),
            phase,
            sent,
            estimate: Some(4 * 1024 * 1024),
            problem: None,
        }
    }

    #[test]
    fn a_push_is_shown_as_flockerctl_list_shows_it_and_progress_is_one_stage() {
        let pre_copy = transfer(TransferPhase::PreCopy, 1024 * 1024);
        assert_eq!(
            as_listed(&pre_copy),
            "11111111: pushing to 33333333: 1 MiB of 4 MiB (pre-copy)"
        );
        let further = transfer(TransferPhase::PreCopy, 3 * 1024 * 1024);
        assert!(same_stage(&pre_copy, &further));
        let handoff = transfer(TransferPhase::Handoff, 1024);
        assert!(!same_stage(&further, &handoff));
        assert!(as_listed(&handoff).starts_with("11111111: handing off to 33333333: "));
    }

    #[test]
    fn what_a_pool_holds_of_a_dataset_is_its_volume_a_volume_set_aside_and_its_snapshots() {
        let pool = tempfile::tempdir().unwrap();
        let id: DatasetId = "11111111-0000-0000-0000-000000000000".parse().unwrap();
        let other = "44444444-0000-0000-0000-000000000000";
        for directory in [
            format!("volumes/{id}_67108864"),
            format!("volumes/{other}_67108864"),
            format!("handoff/33333333-0000-0000-0000-000000000000/{id}_67108864"),
            format!("snapshots/{id}/0000000001"),
            format!("snapshots/{other}/0000000001"),
        ] {
            std::fs::create_dir_all(pool.path().join(directory)).unwrap();
        }
        let held = held_in(pool.path(), id);
        assert_eq!(held.len(), 3, "{held:?}");
        assert!(held.iter().all(|p| p.to_string_lossy().contains(&id.to_string())), "{held:?}");
        assert!(
            held_in(pool.path(), "55555555-0000-0000-0000-000000000000".parse().unwrap())
                .is_empty()
        );
    }
}
