//! The control service itself: the desired configuration with its store, and the cluster state
//! the agents report, behind the operations the HTTP layers call.
//!
//! Writes are serialised by one lock around the configuration and its store, as Flocker's
//! single-threaded service serialised them: check the tag, decide (in [`crate::model`]), append
//! to the store, apply, answer once durable. The file store makes changes durable in groups:
//! a write appends and applies under the lock, then waits for a sync outside it, so the writes
//! that arrive meanwhile share the next fsync. Until a change is durable nobody sees it: every
//! other use of the configuration first waits for what was applied to be durable, and a failed
//! sync takes back every change in doubt before anyone holds the lock again ([`crate::undo`]).
//! Operations block (the store fsyncs), so the HTTP layers run them on tokio's blocking pool.
//!
//! With a store that other control services share (ZooKeeper), a write this service decided
//! may lose to one another service made first: the store refuses it, this service catches up
//! with what the other wrote, and decides again. A decision that writes nothing (a 412, a 404,
//! a lease already held) is made again after confirming the view is current, so no answer
//! rests on a view older than the request. Reads of the configuration confirm it the same way
//! (one ZooKeeper round trip, shared by the reads that arrive meanwhile); when the store
//! cannot be reached, they answer from the last view, and the HTTP layer says how old it is.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flocker_api::agent_protocol::{AgentConfiguration, StateReport};
use flocker_api::types::DatasetTransfer;
use flocker_api::{
    AcquireLease, ConfigurationTag, CreateDataset, Dataset, DatasetId, DatasetProblem,
    DatasetState, Era, Lease, Node, NodeUuid, UpdateDataset,
};
use tokio::sync::watch;

use crate::cluster::{ClusterState, Report};
use crate::error::ApiError;
use crate::index::Index;
use crate::limits::{Limits, Usage};
use crate::metrics::Tally;
use crate::model::{Change, Configuration};
use crate::store::zookeeper::nodes::{SharedNode, SharedNodes};
use crate::store::{CatchUp, GroupSync, Store, StoreError, Stored, Ticket, ViewHealth};
use crate::undo::Undo;

/// The version `/v1/version` reports: the Flocker API level we implement, and ours.
pub const VERSION: &str = concat!("1.15.0+flocker-rs.", env!("CARGO_PKG_VERSION"));

/// How often one write is decided again after losing to other services' writes.
const WRITE_ATTEMPTS: usize = 32;

struct Desired {
    configuration: Configuration,
    generation: u64,
    store: Box<dyn Store>,
    /// `/v1/configuration/datasets`: a large cluster's list is megabytes, and reads outnumber
    /// writes.
    datasets_body: CachedJson,
    /// What the configuration uses of `limits`.
    usage: Usage,
    /// The configuration's datasets by name and by node, its leases by node.
    index: Index,
    /// Changes applied but maybe not durable yet, oldest first, and how to take each back.
    pending: Vec<(u64, Undo)>,
    /// When the last confirmation that the view is current began (a shared store).
    confirmed_at: Option<Instant>,
}

struct Actual {
    cluster: ClusterState,
    /// Kept for the cluster's generation and the datasets' version: the listing depends on
    /// which node each dataset's primary is.
    states_body: CachedJson<(u64, u64)>,
}

/// A JSON answer, kept while what it shows has not changed (`K`: what it was made from).
struct CachedJson<K = u64>(Option<(K, Bytes)>);

impl<K> Default for CachedJson<K> {
    fn default() -> Self {
        Self(None)
    }
}

impl<K: PartialEq> CachedJson<K> {
    /// The answer kept for `generation`, if it is the one kept.
    fn kept(&self, generation: &K) -> Option<Bytes> {
        self.0.as_ref().filter(|(kept, _)| kept == generation).map(|(_, body)| body.clone())
    }

    /// The answer for `generation`, rendered by `value` only if it was not kept.
    fn get<T: serde::Serialize>(&mut self, generation: K, value: impl FnOnce() -> T) -> Bytes {
        if let Some(body) = self.kept(&generation) {
            return body;
        }
        let body = Bytes::from(serde_json::to_vec(&value()).unwrap_or_default());
        self.0 = Some((generation, body.clone()));
        body
    }
}

pub struct ControlService {
    desired: Mutex<Desired>,
    actual: Mutex<Actual>,
    /// The configuration's generation, for long-polls and for reading the tag without the lock.
    generation: watch::Sender<u64>,
    /// The cluster state's count of changes to what the agents' views depend on (the nodes,
    /// what each holds, where each takes pushes), for long-polls.
    views: watch::Sender<u64>,
    /// Mixed into the tag so that a tag from before a restart never matches by accident.
    tag_nonce: u64,
    limits: Limits,
    /// Counts changes to the datasets alone: leases come and go with every task, and need not
    /// make the list be written again. Changed only under the configuration's lock; read
    /// without it, so that reading the state never waits for a write's fsync.
    datasets_version: AtomicU64,
    /// Set when the store is shared with other control services.
    sharing: Option<Sharing>,
    /// Set when the store makes changes durable in groups.
    group: Option<Arc<GroupSync>>,
}

/// What came of a change given to the store.
enum Committed {
    /// Durable and applied.
    Durable,
    /// Applied; durable once the group sync covers its ticket.
    Written(Ticket),
    /// Another service wrote first (a shared store): nothing was written.
    Lost,
}

/// What a service sharing its store with others keeps besides.
pub struct Sharing {
    /// Whether the view is confirmed current.
    pub health: Arc<ViewHealth>,
    /// Publishes the agents that report here, for the other services.
    pub nodes: Arc<SharedNodes>,
}

impl ControlService {
    /// A service over a loaded store. `node_expiry`: how long a quiet node stays listed.
    pub fn new(store: Box<dyn Store>, stored: Stored, node_expiry: Duration) -> Self {
        let Stored { configuration, generation } = stored;
        // Services sharing a store name its configurations alike; one alone names them so
        // that a tag from before a restart never matches by accident.
        let tag_nonce = store.shared_identity().unwrap_or_else(rand_u64);
        let group = store.group_sync();
        Self {
            desired: Mutex::new(Desired {
                usage: Usage::of(&configuration),
                index: Index::of(&configuration),
                pending: Vec::new(),
                configuration,
                generation,
                store,
                datasets_body: CachedJson::default(),
                confirmed_at: None,
            }),
            actual: Mutex::new(Actual {
                cluster: ClusterState::new(node_expiry),
                states_body: CachedJson::default(),
            }),
            generation: watch::Sender::new(generation),
            views: watch::Sender::new(0),
            tag_nonce,
            limits: Limits::default(),
            datasets_version: AtomicU64::new(0),
            sharing: None,
            group,
        }
    }

    /// The same service, over a store it shares with other control services.
    pub fn sharing(mut self, sharing: Sharing) -> Self {
        self.sharing = Some(sharing);
        self
    }

    /// How long the view has gone unconfirmed, while a shared store cannot be reached.
    pub fn view_age(&self) -> Option<Duration> {
        self.sharing.as_ref()?.health.unconfirmed_for()
    }

    /// The same service with other bounds than the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Watches the configuration's generation (for agents' long-polls).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Watches the changes to the cluster state that agents' views depend on (for their
    /// long-polls): a node coming or going, a report listing other datasets than the node's
    /// last one, a hello giving another address for pushes. A poll woken by either watch
    /// answers only if its node's view changed.
    pub fn subscribe_views(&self) -> watch::Receiver<u64> {
        self.views.subscribe()
    }

    fn tag_of(&self, generation: u64) -> ConfigurationTag {
        ConfigurationTag(format!("{:016x}{generation:016x}", self.tag_nonce))
    }

    /// 412 unless one of the `X-If-Configuration-Matches` values is the current tag (no header:
    /// no condition). Cheap and lock-free, so handlers call it before reading a body. With a
    /// shared store, another service may have made the tag: the write decides, once caught up.
    pub fn check_tag(&self, if_matches: &[String]) -> Result<(), ApiError> {
        if self.sharing.is_some() {
            return Ok(());
        }
        self.check_tag_at(*self.generation.borrow(), if_matches)
    }

    fn check_tag_at(&self, generation: u64, if_matches: &[String]) -> Result<(), ApiError> {
        let current = self.tag_of(generation);
        match if_matches.first() {
            Some(required) if !if_matches.contains(&current.0) => {
                Err(ApiError::TagMismatch { required: required.clone(), current: current.0 })
            }
            _ => Ok(()),
        }
    }

    /// `GET /v1/configuration/datasets`: the JSON body and the tag it goes with.
    pub fn datasets_body(&self) -> (Bytes, ConfigurationTag) {
        self.read_confirmed(|desired| {
            let version = self.datasets_version.load(Ordering::Acquire);
            let Desired { configuration, generation, datasets_body, .. } = desired;
            let body =
                datasets_body.get(version, || configuration.datasets.values().collect::<Vec<_>>());
            (body, self.tag_of(*generation))
        })
    }

    /// `GET /v1/configuration/datasets?name=…`: the datasets `name` names, tombstones
    /// included, and the tag.
    pub fn datasets_named(&self, name: &str) -> (Vec<Dataset>, ConfigurationTag) {
        self.read_confirmed(|desired| {
            let Desired { configuration, generation, index, .. } = desired;
            let datasets = (index.named(name).iter())
                .filter_map(|id| configuration.datasets.get(id))
                .filter(|dataset| dataset.is_named(name))
                .cloned()
                .collect();
            (datasets, self.tag_of(*generation))
        })
    }

    /// `POST /v1/configuration/datasets`.
    pub fn create_dataset(
        &self,
        if_matches: &[String],
        request: CreateDataset,
    ) -> Result<Dataset, ApiError> {
        self.write(if_matches, |configuration, usage| {
            self.limits.check_create(usage, &request)?;
            let dataset = configuration.plan_create(request.clone(), DatasetId::random())?;
            Ok((dataset.clone(), Some(Change::CreateDataset { dataset })))
        })
    }

    /// `POST /v1/configuration/datasets/<id>`.
    pub fn move_dataset(
        &self,
        if_matches: &[String],
        path_id: &str,
        request: &UpdateDataset,
    ) -> Result<Dataset, ApiError> {
        self.write(if_matches, |configuration, _| configuration.plan_move(path_id, request))
    }

    /// `DELETE /v1/configuration/datasets/<id>`.
    pub fn delete_dataset(
        &self,
        if_matches: &[String],
        path_id: &str,
    ) -> Result<Dataset, ApiError> {
        self.write(if_matches, |configuration, _| configuration.plan_delete(path_id))
    }

    /// `GET /v1/configuration/leases`.
    pub fn leases(&self) -> Vec<Lease> {
        self.read_confirmed(|desired| desired.configuration.api_leases(unix_now()))
    }

    /// `GET /v1/configuration/leases?dataset_id=…`.
    pub fn lease_of(&self, dataset_id: &DatasetId) -> Vec<Lease> {
        self.read_confirmed(|desired| {
            desired.configuration.api_lease_of(dataset_id, unix_now()).into_iter().collect()
        })
    }

    /// `POST /v1/configuration/leases`: the lease, and whether it is new (201) or renewed.
    pub fn acquire_lease(&self, request: &AcquireLease) -> Result<(Lease, bool), ApiError> {
        self.limits.check_lease(request)?;
        self.write(&[], |configuration, _| {
            let decision = configuration.plan_acquire_lease(request, unix_now())?;
            Ok(((decision.lease, decision.created), decision.change))
        })
    }

    /// `DELETE /v1/configuration/leases/<id>`.
    pub fn release_lease(&self, dataset_id: &DatasetId) -> Result<Lease, ApiError> {
        self.write(&[], |configuration, _| {
            let (change, lease) = configuration.plan_release_lease(dataset_id, unix_now())?;
            Ok((lease, Some(change)))
        })
    }

    /// The agent API's block-device record.
    pub fn record_blockdevice(
        &self,
        node: &NodeUuid,
        dataset_id: DatasetId,
        blockdevice_id: &str,
    ) -> Result<(), ApiError> {
        self.write(&[], |configuration, _| {
            let change = configuration.plan_record_blockdevice(node, dataset_id, blockdevice_id)?;
            Ok(((), change))
        })
    }

    /// Drops expired leases and nodes that went quiet; called about once a second.
    pub fn sweep(&self) {
        // While a shared store cannot be reached, expiry waits for it (writes would only fail).
        if self.view_age().is_none() {
            let expiry = self.write_unconfirmed(|configuration, _| {
                Ok(((), configuration.plan_expiry(unix_now())))
            });
            if let Err(e) = expiry {
                log::error!("could not store the expiry of leases: {e}");
            }
        }
        let gone = self.change_cluster(|cluster| cluster.sweep(Instant::now()));
        if let Some(sharing) = &self.sharing {
            for node in &gone {
                sharing.nodes.withdraw(node);
            }
        }
    }

    /// What one node should have, and an etag that changes whenever that does: from the
    /// configuration, and for the pushes between nodes' own disks, from what the live nodes
    /// hold (their latest reports) and where they take pushes.
    pub fn agent_configuration(&self, node: &NodeUuid) -> AgentConfiguration {
        let (view, (pushes, peers)) = self.read(|desired| {
            let configuration = &desired.configuration;
            let view = configuration.node_view_in(node, &desired.index);
            // The configuration, then the state: the one order in which both are ever held.
            let actual = self.lock_actual();
            if !actual.cluster.takes_pushes(node) {
                return (view, Default::default()); // shared storage: nothing is pushed
            }
            let wanted = desired.index.on(node).iter().copied();
            let holdings = actual.cluster.holdings_for(node, wanted);
            (view, (configuration.push_view(node, holdings), actual.cluster.peers(node)))
        });
        let mut answer = AgentConfiguration {
            etag: String::new(),
            datasets: view.datasets,
            leases: view.leases,
            blockdevice_ids: view.blockdevice_ids,
            had_volume: view.had_volume,
            pushes: pushes.pushes,
            arriving: pushes.arriving,
            discard: pushes.discard,
            peers,
        };
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(&serde_json::to_vec(&answer).unwrap_or_default());
        answer.etag = format!("{:016x}{:016x}", self.tag_nonce, hasher.finish());
        answer
    }

    /// An agent's hello from `host`, taking pushes on `transfer_port` if it gives one.
    pub fn hello(&self, node: NodeUuid, era: Era, host: String, transfer_port: Option<u16>) {
        match transfer_port {
            Some(port) => {
                log::info!(
                    "node {node} ({host}) said hello, era {era}, taking pushes on port {port}"
                );
            }
            None => log::info!("node {node} ({host}) said hello, era {era}"),
        }
        self.change_cluster(|cluster| {
            cluster.hello(node, era, host, transfer_port, Instant::now());
        });
        self.share(&node);
    }

    /// Changes the cluster state, then wakes the agents' polls if what their views depend on
    /// changed.
    fn change_cluster<T>(&self, change: impl FnOnce(&mut ClusterState) -> T) -> T {
        let (answer, views) = {
            let mut actual = self.lock_actual();
            let answer = change(&mut actual.cluster);
            (answer, actual.cluster.views)
        };
        // Two changes may send in either order: the later count stands.
        self.views.send_if_modified(|seen| {
            let newer = views > *seen;
            if newer {
                *seen = views;
            }
            newer
        });
        answer
    }

    /// Notes that an agent is alive; 409 if it must say hello first.
    pub fn touch(&self, node: &NodeUuid) -> Result<(), ApiError> {
        let came_here = self.lock_actual().cluster.touch(node, Instant::now())?;
        if came_here {
            log::info!("node {node} reports to this control service now");
            self.share(node);
        }
        Ok(())
    }

    /// Publishes what `node` said here, for the services sharing the store.
    fn share(&self, node: &NodeUuid) {
        let Some(sharing) = &self.sharing else { return };
        let shared = self.lock_actual().cluster.shared(node);
        if let Some(shared) = shared {
            sharing.nodes.publish(node, &shared);
        }
    }

    /// A node another service shares (the follower saw it), or `None` once it is gone.
    pub fn mirror_node(&self, node: NodeUuid, shared: Option<SharedNode>) {
        let Some(shared) = shared else {
            if self.change_cluster(|cluster| cluster.forget_mirrored(&node)) {
                log::debug!("node {node} is no longer shared by any control service");
            }
            return;
        };
        if let Some(sharing) = &self.sharing {
            sharing.nodes.given_up(&node);
        }
        // The agent's service knew every dataset it kept of the report, and wrote the record
        // after: catching up (on the session that read the record) learns them all.
        let ids: Vec<DatasetId> = (shared.datasets.iter().map(|d| d.dataset_id))
            .chain(shared.transfers.iter().map(|t| t.dataset_id))
            .collect();
        self.learn_of(&ids, false);
        let primaries = self.primaries_of(&ids);
        self.change_cluster(|cluster| cluster.mirror(node, shared, &primaries, Instant::now()));
    }

    /// With a shared store, catches up if `datasets` names one this service has not heard of
    /// (another service may have made it a moment ago), so that it is not taken for unknown;
    /// with `confirm`, it will not miss one acknowledged anywhere before now.
    fn learn_of(&self, datasets: &[DatasetId], confirm: bool) {
        if self.sharing.is_none() {
            return;
        }
        self.read(|desired| {
            if datasets.iter().all(|id| desired.configuration.datasets.contains_key(id)) {
                return;
            }
            if let Err(error) = self.catch_up(desired, confirm) {
                log::debug!("could not catch up with the store: {error}");
            }
        });
    }

    /// Every node the other services share now; mirrored nodes not among them are dropped.
    pub fn mirror_all(&self, nodes: Vec<(NodeUuid, SharedNode)>) {
        let shared: std::collections::BTreeSet<NodeUuid> = nodes.iter().map(|(n, _)| *n).collect();
        for node in self.lock_actual().cluster.mirrored() {
            if !shared.contains(&node) {
                self.mirror_node(node, None);
            }
        }
        for (node, record) in nodes {
            self.mirror_node(node, Some(record));
        }
    }

    /// Publishes again the agents that reported here (a new session lost the old ones).
    pub fn republish_shared(&self) {
        if let Some(sharing) = &self.sharing {
            sharing.nodes.republish();
        }
    }

    /// Takes in what other services wrote (the follower saw the store change).
    pub fn follow_store(&self) {
        self.read(|desired| {
            if let Err(error) = self.catch_up(desired, false) {
                log::debug!("could not catch up with the store: {error}");
            }
        });
    }

    /// The configured primary of each of `ids` the configuration has.
    fn primaries_of(&self, ids: &[DatasetId]) -> crate::cluster::Primaries {
        self.read(|desired| {
            let configuration = &desired.configuration;
            ids.iter().filter_map(|id| Some((*id, configuration.primary_of(id)?))).collect()
        })
    }

    /// An agent's state report. The volumes it names are remembered durably before the state
    /// shows them: a volume a client can see mounted, and write to, is never one an agent
    /// could take for never made. Its problems are kept only for its own datasets; its
    /// transfers only for datasets of the configuration.
    pub fn report(&self, node: &NodeUuid, report: StateReport) -> Result<(), ApiError> {
        let StateReport { era, datasets, problems, transfers } = report;
        self.lock_actual().cluster.check_era(node, era)?;
        let reported: Vec<DatasetId> = datasets.iter().map(|d| d.dataset_id).collect();
        let named: Vec<DatasetId> =
            reported.iter().copied().chain(transfers.iter().map(|t| t.dataset_id)).collect();
        self.learn_of(&named, true);
        // A large report's new volumes are recorded a bounded number at a time.
        while self.write_unconfirmed(|configuration, _| {
            let change = configuration.plan_volumes_reported(reported.iter().copied());
            Ok((change.is_some(), change))
        })? {}
        let (problems, primaries) = self.read(|desired| {
            let configuration = &desired.configuration;
            let primaries: crate::cluster::Primaries = (named.iter())
                .filter_map(|id| Some((*id, configuration.primary_of(id)?)))
                .collect();
            (configuration.problems_of(node, problems.clone()), primaries)
        });
        if !problems.dropped.is_empty() {
            log::warn!(
                "node {node} reported problems of datasets whose primary is not that node; \
                 ignoring them: {:?}",
                problems.dropped
            );
        }
        let now = Instant::now();
        let report = Report { datasets, problems: problems.kept, transfers };
        self.change_cluster(|cluster| cluster.report(node, era, report, &primaries, now))?;
        self.share(node);
        Ok(())
    }

    /// `GET /v1/state/transfers`: the pushes under way, as the pushing nodes last reported
    /// them, by dataset.
    pub fn dataset_transfers(&self) -> Vec<DatasetTransfer> {
        self.lock_actual().cluster.transfers()
    }

    /// `GET /v1/state/problems`: the problems that the primary of each dataset reported. One
    /// from a node that is no longer the primary (the dataset moved since it reported) is left
    /// out: a client waiting for the dataset on its new node must not fail on the old one's.
    pub fn dataset_problems(&self) -> Vec<DatasetProblem> {
        // Few problems, many datasets: collect the first, then look each up; one lock at a time.
        let problems = self.lock_actual().cluster.problems();
        self.read(|desired| {
            let configuration = &desired.configuration;
            let mut problems = problems.clone();
            problems.retain(|p| configuration.is_primary(&p.dataset_id, &p.node_uuid));
            problems
        })
    }

    /// `GET /v1/state/datasets` as JSON. The answer kept is given without the configuration's
    /// lock (a write holds it through its fsync, and isolators poll this); a new one needs the
    /// primaries, so takes the configuration, then the state: the one order in which both are
    /// ever held.
    pub fn dataset_states_body(&self) -> Bytes {
        let version = self.datasets_version.load(Ordering::Acquire);
        {
            let actual = self.lock_actual();
            if let Some(body) = actual.states_body.kept(&(actual.cluster.generation, version)) {
                return body;
            }
        }
        self.read(|desired| {
            let version = self.datasets_version.load(Ordering::Acquire);
            let mut actual = self.lock_actual();
            let Actual { cluster, states_body } = &mut *actual;
            let configuration = &desired.configuration;
            states_body.get((cluster.generation, version), || {
                cluster.dataset_states(|id| configuration.primary_of(id))
            })
        })
    }

    /// `GET /v1/state/datasets?dataset_id=…`: what the state lists of one dataset.
    pub fn dataset_state_of(&self, id: &DatasetId) -> Vec<DatasetState> {
        let Some(primary) = self.read(|desired| desired.configuration.primary_of(id)) else {
            return Vec::new();
        };
        self.lock_actual().cluster.dataset_state(id, primary).into_iter().collect()
    }

    /// What the metrics show of the configuration and the cluster: datasets not deleted,
    /// leases, live nodes; as this service sees them now (a shared store is not asked).
    pub fn tally(&self) -> Tally {
        let (datasets, leases) = self.read(|desired| {
            let configuration = &desired.configuration;
            (
                configuration.datasets.values().filter(|d| !d.deleted).count(),
                configuration.leases.len(),
            )
        });
        Tally { datasets, leases, nodes: self.nodes().len() }
    }

    /// `GET /v1/state/nodes`.
    pub fn nodes(&self) -> Vec<Node> {
        self.lock_actual().cluster.nodes()
    }

    /// `GET /v1/state/nodes/by_era/<era>`.
    pub fn node_by_era(&self, era: &Era) -> Result<NodeUuid, ApiError> {
        self.lock_actual().cluster.node_by_era(era).ok_or(ApiError::NoNodeForEra)
    }

    /// Checks the tag under the lock, plans, commits what was planned; answers with what the
    /// plan said to answer. With a shared store, a plan that lost to another service's write
    /// is made again on the caught-up configuration, and one that writes nothing is made again
    /// if confirming the view finds it was behind.
    fn write<T>(
        &self,
        if_matches: &[String],
        plan: impl FnMut(&Configuration, &Usage) -> Result<(T, Option<Change>), ApiError>,
    ) -> Result<T, ApiError> {
        self.write_with(if_matches, true, plan)
    }

    /// [`Self::write`] for the service's own housekeeping: a plan that writes nothing is not
    /// confirmed (it is made again at the next sweep or report anyway).
    fn write_unconfirmed<T>(
        &self,
        plan: impl FnMut(&Configuration, &Usage) -> Result<(T, Option<Change>), ApiError>,
    ) -> Result<T, ApiError> {
        self.write_with(&[], false, plan)
    }

    fn write_with<T>(
        &self,
        if_matches: &[String],
        confirm_unwritten: bool,
        mut plan: impl FnMut(&Configuration, &Usage) -> Result<(T, Option<Change>), ApiError>,
    ) -> Result<T, ApiError> {
        let mut desired = self.lock_applied();
        let mut confirmed = self.sharing.is_none() || !confirm_unwritten;
        for _ in 0..WRITE_ATTEMPTS {
            let decided = self
                .check_tag_at(desired.generation, if_matches)
                .and_then(|()| plan(&desired.configuration, &desired.usage));
            match decided {
                Ok((answer, Some(change))) => match self.commit(&mut desired, change)? {
                    Committed::Durable => return Ok(answer),
                    Committed::Written(ticket) => {
                        drop(desired); // the writes that come meanwhile share the sync
                        return self.made_durable(ticket).map(|()| answer);
                    }
                    Committed::Lost => {
                        self.catch_up_to_write(&mut desired, false)?;
                    }
                },
                unwritten => {
                    if confirmed || !self.catch_up_to_write(&mut desired, true)? {
                        // The answer (a 409, say) may rest on changes not durable yet.
                        let seen = self.group.as_ref().map(|g| g.ticket(desired.generation));
                        drop(desired);
                        if let Some(ticket) = seen {
                            self.made_durable(ticket)?;
                        }
                        return unwritten.map(|(answer, _)| answer);
                    }
                    confirmed = true;
                }
            }
        }
        Err(ApiError::StoreBusy)
    }

    /// Gives a change to the store, then applies it. If the store fails, nothing changes.
    fn commit(&self, desired: &mut Desired, change: Change) -> Result<Committed, ApiError> {
        let generation = desired.generation + 1;
        let deferred =
            match desired.store.append_deferred(&desired.configuration, generation, &change) {
                Ok(deferred) => deferred,
                Err(StoreError::Conflict) => return Ok(Committed::Lost),
                Err(error) => return Err(self.store_failed(error)),
            };
        let undo = self.apply(desired, generation, &change);
        if let Err(error) = desired.store.applied(&desired.configuration, generation) {
            // The change is in the journal; only compaction failed.
            log::warn!("{:#}", anyhow::Error::new(error));
        }
        if let Some(ticket) = deferred {
            desired.pending.push((generation, undo));
            return Ok(Committed::Written(ticket));
        }
        self.publish(generation);
        Ok(Committed::Durable)
    }

    /// Waits until the group sync made the ticket's change durable. If it failed, the changes
    /// in doubt are taken back before this answers.
    fn made_durable(&self, ticket: Ticket) -> Result<(), ApiError> {
        let Some(group) = &self.group else { return Ok(()) };
        match group.sync_through(ticket) {
            Ok(()) => {
                self.publish(ticket.generation);
                Ok(())
            }
            Err(_) => {
                drop(self.lock_applied()); // takes them back
                Err(ApiError::StoreFailed)
            }
        }
    }

    /// Tells the long-polls and the lock-free tag check about a durable generation.
    fn publish(&self, generation: u64) {
        // Writers may publish in either order: the later generation stands.
        self.generation.send_if_modified(|seen| {
            let newer = generation > *seen;
            if newer {
                *seen = generation;
            }
            newer
        });
    }

    fn apply(&self, desired: &mut Desired, generation: u64, change: &Change) -> Undo {
        desired.index.note(&desired.configuration, change);
        let undo = desired.configuration.apply_undoably(change);
        desired.usage.add(change);
        desired.generation = generation;
        if change.changes_datasets() {
            self.datasets_version.fetch_add(1, Ordering::Release);
        }
        undo
    }

    /// After a failed group sync: takes back every change after the durable one, newest
    /// first, and has the store rebuild itself from what is left. Otherwise forgets how to
    /// take back the changes that are durable now.
    fn settle(&self, desired: &mut Desired) {
        let Some(group) = &self.group else { return };
        let Some((durable, why)) = group.take_failure() else {
            let durable = group.durable();
            desired.pending.retain(|(generation, _)| *generation > durable);
            return;
        };
        let mut taken_back = 0;
        while let Some((generation, undo)) = desired.pending.pop() {
            if generation > durable {
                desired.configuration.undo(undo);
                taken_back += 1;
            }
        }
        desired.pending.clear();
        desired.generation = durable;
        desired.usage = Usage::of(&desired.configuration);
        desired.index = Index::of(&desired.configuration);
        self.datasets_version.fetch_add(1, Ordering::Release);
        desired.store.sync_failed(durable, &why);
        log::error!(
            "the store's journal could not be synced ({why}): the {taken_back} changes after \
             generation {durable} were refused and taken back; the store is rewritten from \
             memory at the next change"
        );
    }

    /// [`Self::catch_up`] within a write, which waits for the store (a ZooKeeper election, a
    /// server lost) as long as its change would, where a read answers from the last view.
    fn catch_up_to_write(&self, desired: &mut Desired, confirm: bool) -> Result<bool, ApiError> {
        if self.sharing.is_some() {
            desired.store.wait_until_reachable().map_err(|error| self.store_failed(error))?;
        }
        self.catch_up(desired, confirm)
    }

    /// Applies what other services wrote; true if there was anything. With `confirm`, first
    /// makes sure nothing acknowledged before now is missed.
    fn catch_up(&self, desired: &mut Desired, confirm: bool) -> Result<bool, ApiError> {
        let Some(sharing) = &self.sharing else { return Ok(false) };
        let started = Instant::now();
        let found = match desired.store.catch_up(desired.generation, confirm) {
            Ok(found) => found,
            Err(error) => {
                sharing.health.unconfirmed();
                return Err(self.store_failed(error));
            }
        };
        if confirm {
            desired.confirmed_at = Some(started);
            sharing.health.confirmed();
        }
        match found {
            CatchUp::Changes(changes) if changes.is_empty() => return Ok(false),
            CatchUp::Changes(changes) => {
                for (generation, change) in &changes {
                    let _durable_already = self.apply(desired, *generation, change);
                }
            }
            CatchUp::Reload(Stored { configuration, generation }) => {
                log::info!("reloaded the configuration from the store at generation {generation}");
                desired.usage = Usage::of(&configuration);
                desired.index = Index::of(&configuration);
                desired.configuration = configuration;
                desired.generation = generation;
                self.datasets_version.fetch_add(1, Ordering::Release);
            }
        }
        self.generation.send_replace(desired.generation);
        Ok(true)
    }

    /// Reads the configuration with `read`, and answers once what it read is durable. With
    /// group commit that wait runs without the lock, so the writes that arrive meanwhile share
    /// the next sync; if the sync fails, what was read may be taken back, so it reads again.
    fn read<T>(&self, read: impl FnMut(&mut Desired) -> T) -> T {
        self.read_with(false, read)
    }

    /// [`Self::read`] of a configuration confirmed current, if the store is shared.
    fn read_confirmed<T>(&self, read: impl FnMut(&mut Desired) -> T) -> T {
        self.read_with(true, read)
    }

    fn read_with<T>(&self, confirm: bool, mut read: impl FnMut(&mut Desired) -> T) -> T {
        loop {
            let mut desired = if confirm { self.confirmed_desired() } else { self.lock_applied() };
            let answer = read(&mut desired);
            let generation = desired.generation;
            let Some(group) = self.group.as_ref().filter(|g| g.durable() < generation) else {
                return answer;
            };
            let ticket = group.ticket(generation);
            drop(desired);
            if group.sync_through(ticket).is_ok() {
                self.publish(generation);
                return answer;
            }
        }
    }

    /// The configuration, confirmed current if the store is shared and can be reached (one
    /// confirmation serves every read that was waiting for it); durable or not (see `read`).
    fn confirmed_desired(&self) -> MutexGuard<'_, Desired> {
        let asked = Instant::now();
        let mut desired = self.lock_applied();
        if self.sharing.is_some()
            && desired.confirmed_at.is_none_or(|at| at < asked)
            && let Err(error) = self.catch_up(&mut desired, true)
        {
            log::debug!("answering from the last view of the configuration: {error}");
        }
        desired
    }

    /// The answer to a request whose change the store did not take.
    fn store_failed(&self, error: StoreError) -> ApiError {
        let answer = match &error {
            error if error.is_out_of_space() => ApiError::InsufficientStorage,
            StoreError::Unavailable { reason, .. } => {
                ApiError::StoreUnavailable { reason: reason.clone() }
            }
            StoreError::Unconfirmed { reason, .. } => {
                ApiError::StoreUnconfirmed { reason: reason.clone() }
            }
            _ => ApiError::StoreFailed,
        };
        // The store tries again at the next change: once it is back (space freed, the
        // quorum restored), writes resume by themselves.
        log::error!("{:#}", anyhow::Error::new(error));
        answer
    }

    /// The configuration with the changes applied so far, durable or not (writes follow them;
    /// reads wait for them to be durable, see `read`); a failed sync's changes are taken back
    /// first.
    fn lock_applied(&self) -> MutexGuard<'_, Desired> {
        // A panic never leaves the configuration half-changed (changes are applied whole, after
        // the store accepted them), so a poisoned lock is still consistent.
        let mut desired = self.desired.lock().unwrap_or_else(PoisonError::into_inner);
        self.settle(&mut desired);
        desired
    }

    fn lock_actual(&self) -> MutexGuard<'_, Actual> {
        self.actual.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Seconds since the Unix epoch, as leases count them.
fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

fn rand_u64() -> u64 {
    let uuid = uuid::Uuid::new_v4();
    let (high, _) = uuid.as_u64_pair();
    high
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicBool;

    /// A stand-in for a disk whose fsync fails, which no test can make happen on demand here:
    /// the group sync has no journal, so every sync fails, until the service reports the
    /// failure (`sync_failed`); from then on it syncs a real temporary file.
    struct FailingSync {
        group: Arc<GroupSync>,
        directory: tempfile::TempDir,
        failures_reported: Arc<AtomicU64>,
    }

    impl Store for FailingSync {
        fn load(&mut self) -> Result<Stored, StoreError> {
            Ok(Stored::default())
        }
        fn append(&mut self, _: &Configuration, _: u64, _: &Change) -> Result<(), StoreError> {
            unreachable!("the service defers every append to this store")
        }
        fn append_deferred(
            &mut self,
            _: &Configuration,
            generation: u64,
            _: &Change,
        ) -> Result<Option<Ticket>, StoreError> {
            Ok(Some(self.group.wrote(generation)))
        }
        fn group_sync(&self) -> Option<Arc<GroupSync>> {
            Some(self.group.clone())
        }
        fn sync_failed(&mut self, durable: u64, _why: &str) {
            self.failures_reported.fetch_add(1, Ordering::Relaxed);
            let journal = std::fs::File::create(self.directory.path().join("journal")).unwrap();
            self.group.journal(Arc::new(journal), durable);
        }
        fn applied(&mut self, _: &Configuration, _: u64) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn create(service: &ControlService, name: &str) -> Result<Dataset, ApiError> {
        let request = CreateDataset {
            primary: NodeUuid::random(),
            dataset_id: None,
            maximum_size: None,
            metadata: [("name".to_owned(), name.to_owned())].into(),
        };
        service.create_dataset(&[], request)
    }

    #[test]
    fn changes_whose_group_sync_failed_are_refused_taken_back_and_never_seen() {
        let reported = Arc::new(AtomicU64::new(0));
        let store = FailingSync {
            group: Arc::new(GroupSync::new(0)),
            directory: tempfile::tempdir().unwrap(),
            failures_reported: reported.clone(),
        };
        let service = Arc::new(ControlService::new(
            Box::new(store),
            Stored::default(),
            Duration::from_secs(60),
        ));
        let names_in = |body: &Bytes| -> Vec<String> {
            let datasets: Vec<Dataset> = serde_json::from_slice(body).unwrap();
            datasets.into_iter().filter_map(|d| d.name().map(str::to_owned)).collect()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (service, stop) = (service.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.extend(names_in(&service.datasets_body().0));
                }
                seen
            })
        };
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let service = service.clone();
                std::thread::spawn(move || create(&service, &format!("volume-{i}")))
            })
            .collect();
        let answers: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        let seen = reader.join().unwrap();
        // The first sync fails; whoever waited for it is refused. Writers that came after
        // the store was rebuilt may succeed.
        let refused = answers.iter().filter(|a| **a == Err(ApiError::StoreFailed)).count();
        assert!(refused >= 1, "{answers:?}");
        assert_eq!(reported.load(Ordering::Relaxed), 1, "the store heard of the failure once");
        let acknowledged: BTreeSet<String> = (answers.iter().filter_map(|a| a.as_ref().ok()))
            .filter_map(|d| d.name().map(str::to_owned))
            .collect();
        let listed: BTreeSet<String> = names_in(&service.datasets_body().0).into_iter().collect();
        assert_eq!(listed, acknowledged, "exactly the acknowledged changes remain");
        assert!(seen.is_subset(&acknowledged), "a reader saw a refused change: {seen:?}");
        // Writes go on, on the rebuilt store.
        let dataset = create(&service, "after").unwrap();
        assert_eq!(service.datasets_named("after").0, vec![dataset]);
    }

    #[test]
    fn a_change_is_shown_to_nobody_until_its_sync_ends_and_taken_back_if_it_failed() {
        let group = Arc::new(GroupSync::new(0));
        let store = FailingSync {
            group: group.clone(),
            directory: tempfile::tempdir().unwrap(),
            failures_reported: Arc::new(AtomicU64::new(0)),
        };
        let service = Arc::new(ControlService::new(
            Box::new(store),
            Stored::default(),
            Duration::from_secs(60),
        ));
        group.hold_sync();
        let writer = {
            let service = service.clone();
            std::thread::spawn(move || create(&service, "held"))
        };
        while service.lock_applied().generation == 0 {
            std::thread::sleep(Duration::from_millis(1)); // until it is applied
        }
        let reader = {
            let service = service.clone();
            std::thread::spawn(move || service.datasets_named("held").0)
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!reader.is_finished(), "the reader waits for the sync");
        assert!(!writer.is_finished(), "the writer is not answered before it");
        group.end_held_sync(Err("the disk is gone".into()));
        assert_eq!(writer.join().unwrap(), Err(ApiError::StoreFailed));
        assert_eq!(reader.join().unwrap(), Vec::new(), "it never saw the change");
        assert!(service.datasets_named("held").0.is_empty());
        assert_eq!(service.lock_applied().generation, 0);
    }
}
