//! Agents' soft state (hellos and state reports) shared between control services.
//!
//! An agent talks to one control service at a time; a client may ask another one. So the
//! service an agent reports to publishes the agent's record as an ephemeral znode
//! (`nodes/<uuid>`), and every other service mirrors it (see `crate::follow`). The znode lives
//! as long as the publishing service's session: if that service dies, its agents' records go
//! with it after the session timeout, and come back as soon as the agents report to another
//! service. Nothing here is durable, as nothing in Flocker's cluster state was.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use flocker_api::agent_protocol::{ReportedDataset, ReportedTransfer};
use flocker_api::{DatasetId, Era, NodeUuid};
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::{Connection, layout};

/// What one agent last said, as every service needs it. The keys added since the first
/// version are left out when empty, and read as empty when absent, so that services of both
/// versions read each other's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedNode {
    pub era: Era,
    pub host: String,
    /// Where on `host` it takes pushes, as its hello said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_port: Option<u16>,
    pub datasets: Vec<ReportedDataset>,
    pub problems: BTreeMap<DatasetId, String>,
    /// The pushes under way from it, as its last report said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<ReportedTransfer>,
}

/// Publishes the records of the agents that report to this service.
pub struct SharedNodes {
    connection: Arc<Connection>,
    /// What was published of each node, and in which session.
    published: Mutex<HashMap<NodeUuid, (u64, Vec<u8>)>>,
}

impl SharedNodes {
    pub fn new(connection: Arc<Connection>) -> Self {
        Self { connection, published: Mutex::new(HashMap::new()) }
    }

    pub fn session_id(&self) -> i64 {
        self.connection.session_id()
    }

    /// Publishes `record` unless this session already did. One that cannot be published now
    /// (the ensemble is away) is published when the session is back ([`Self::republish`]); a
    /// failure is logged, and this service's own view has the record meanwhile.
    pub fn publish(&self, node: &NodeUuid, record: &SharedNode) {
        let bytes = match layout::encode(record) {
            Ok(bytes) => bytes,
            Err(problem) => {
                log::warn!(
                    "node {node}'s state is not shared with other control services: {problem}"
                );
                return;
            }
        };
        let session = self.connection.session_number();
        {
            let mut published = self.lock();
            if published.get(node).is_some_and(|(s, b)| *s == session && *b == bytes) {
                return;
            }
            // Session 0: wanted, not yet written.
            published.insert(*node, (0, bytes.clone()));
        }
        let path = layout::node_path(&node.to_string());
        let ours = self.connection.session_id();
        let ephemeral = self.connection.access().options(zk::CreateMode::Ephemeral);
        let written = self.connection.call_at_once(|client| {
            let bytes = bytes.clone();
            async move { put_ephemeral(&client, &path, &bytes, ours, &ephemeral).await }
        });
        match written {
            Ok(()) => {
                let mut published = self.lock();
                if let Some(entry) = published.get_mut(node).filter(|(_, b)| *b == bytes) {
                    entry.0 = session;
                }
            }
            Err(failure) => log::debug!("node {node}'s state is not shared yet: {failure:?}"),
        }
    }

    /// Withdraws a node this service published (it went quiet); another's is left alone.
    pub fn withdraw(&self, node: &NodeUuid) {
        if self.lock().remove(node).is_none() {
            return;
        }
        let path = layout::node_path(&node.to_string());
        let ours = self.connection.session_id();
        let deleted = self.connection.call(|client| async move {
            match client.get_data(&path).await {
                Ok((_, stat)) if stat.ephemeral_owner == ours => {
                    client.delete(&path, Some(stat.version)).await
                }
                Ok(_) | Err(zk::Error::NoNode) => Ok(()),
                Err(error) => Err(error),
            }
        });
        if let Err(failure) = deleted {
            log::warn!("could not withdraw node {node}'s shared state: {failure:?}");
        }
    }

    /// Publishes again what an earlier session published (its ephemeral znodes went with it),
    /// and what could not be published while the ensemble was away.
    pub fn republish(&self) {
        let session = self.connection.session_number();
        let stale: Vec<(NodeUuid, Vec<u8>)> = self
            .lock()
            .iter()
            .filter(|(_, (s, _))| *s != session)
            .map(|(node, (_, bytes))| (*node, bytes.clone()))
            .collect();
        for (node, bytes) in stale {
            if let Ok(record) = serde_json::from_slice::<SharedNode>(&bytes) {
                self.publish(&node, &record);
            }
        }
    }

    /// Forgets that this service published `node` (another service has it now).
    pub fn given_up(&self, node: &NodeUuid) {
        self.lock().remove(node);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeUuid, (u64, Vec<u8>)>> {
        self.published.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes `path` an ephemeral znode of this session holding `bytes`: set if it is ours
/// already, taken over (deleted and made again, in one transaction) if another service's.
async fn put_ephemeral(
    client: &zk::Client,
    path: &str,
    bytes: &[u8],
    ours: i64,
    ephemeral: &zk::CreateOptions<'_>,
) -> Result<(), zk::Error> {
    for _ in 0..3 {
        let outcome = match client.check_stat(path).await? {
            Some(stat) if stat.ephemeral_owner == ours => {
                client.set_data(path, bytes, Some(stat.version)).await.map(drop)
            }
            Some(stat) => {
                let mut writer = client.new_multi_writer();
                writer.add_delete(path, Some(stat.version))?;
                writer.add_create(path, bytes, ephemeral)?;
                writer.commit().await.map(drop).map_err(zk::Error::from)
            }
            None => client.create(path, bytes, ephemeral).await.map(drop),
        };
        match outcome {
            // Someone else changed it between the look and the write: look again.
            Err(zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists) => continue,
            other => return other,
        }
    }
    Err(zk::Error::BadVersion)
}

/// Every shared node and the session that published it.
pub async fn read_all(client: &zk::Client) -> Result<Vec<(NodeUuid, SharedNode, i64)>, zk::Error> {
    let names = client.list_children(layout::NODES).await?;
    let mut nodes = Vec::with_capacity(names.len());
    for name in names {
        if let Some(found) = read_one(client, &name).await? {
            nodes.push(found);
        }
    }
    Ok(nodes)
}

/// One shared node by its znode's name; `None` if it is gone or not a node's record.
pub async fn read_one(
    client: &zk::Client,
    name: &str,
) -> Result<Option<(NodeUuid, SharedNode, i64)>, zk::Error> {
    let Ok(node) = name.parse::<NodeUuid>() else { return Ok(None) };
    match client.get_data(&layout::node_path(name)).await {
        Ok((bytes, stat)) => match serde_json::from_slice::<SharedNode>(&bytes) {
            Ok(record) => Ok(Some((node, record, stat.ephemeral_owner))),
            Err(error) => {
                log::warn!("ignoring the shared state of node {node}: {error}");
                Ok(None)
            }
        },
        Err(zk::Error::NoNode) => Ok(None),
        Err(error) => Err(error),
    }
}
