//! What the control service says about the app's volume, through the v1 REST API: its dataset,
//! where it is mounted, who leases it — and its deletion.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use flocker_api::{Client, Dataset, DatasetId, Lease, NodeUuid};

/// How long the agents may take to destroy a deleted volume.
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// The live datasets the volume `flocker_id` names.
pub fn datasets_named(client: &Client, flocker_id: &str) -> anyhow::Result<Vec<Dataset>> {
    let (datasets, _) = client.datasets_named(flocker_id).context("cannot look up the datasets")?;
    Ok(datasets.into_iter().filter(|d| !d.deleted).collect())
}

/// The one live dataset the volume names; an error if there is none or several.
pub fn the_dataset(client: &Client, flocker_id: &str) -> anyhow::Result<Dataset> {
    let mut named = datasets_named(client, flocker_id)?;
    match named.len() {
        1 => Ok(named.remove(0)),
        n => anyhow::bail!("the control service has {n} datasets named {flocker_id}, not one"),
    }
}

/// Where `/v1/state/datasets` says `node` has the dataset mounted, if it does.
pub fn mounted_on(
    client: &Client,
    id: DatasetId,
    node: NodeUuid,
) -> anyhow::Result<Option<PathBuf>> {
    let states = client.dataset_states().context("cannot read the cluster state")?;
    Ok(states
        .into_iter()
        .find(|s| s.dataset_id == id && s.primary == Some(node))
        .and_then(|s| s.path.map(PathBuf::from)))
}

/// The leases on the dataset (at most one).
pub fn leases_on(client: &Client, id: DatasetId) -> anyhow::Result<Vec<Lease>> {
    let leases = client.list_leases().context("cannot list the leases")?;
    Ok(leases.into_iter().filter(|l| l.dataset_id == id).collect())
}

/// How a deletion went, timed from the `DELETE`.
pub struct Deletion {
    /// Until no node reported the volume mounted.
    pub unmounted: Duration,
    /// Until `/v1/state/datasets` no longer listed it at all.
    pub gone: Duration,
}

/// `DELETE /v1/configuration/datasets/<id>`, then waits until `/v1/state/datasets` no longer
/// lists it: the agent that had it destroyed it, and no other still reports it.
pub fn delete_and_wait(client: &Client, id: DatasetId) -> anyhow::Result<Deletion> {
    client.delete_dataset(&id, None).context("the API refused to delete the dataset")?;
    let started = Instant::now();
    let mut unmounted = None;
    loop {
        let states = client.dataset_states().context("cannot read the cluster state")?;
        let listed: Vec<_> = states.iter().filter(|s| s.dataset_id == id).collect();
        if listed.iter().all(|s| s.path.is_none()) {
            unmounted.get_or_insert(started.elapsed());
        }
        if listed.is_empty() {
            let gone = started.elapsed();
            return Ok(Deletion { unmounted: unmounted.unwrap_or(gone), gone });
        }
        if started.elapsed() >= DELETE_TIMEOUT {
            anyhow::bail!(
                "dataset {id} was still in /v1/state/datasets {DELETE_TIMEOUT:?} after its deletion"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
