//! The control service itself: the desired configuration with its store, and the cluster state
//! the agents report, behind the operations the HTTP layers call.
//!
//! Writes are serialised by one lock around the configuration and its store, as Flocker's
//! single-threaded service serialised them: check the tag, decide (in [`crate::model`]), append
//! to the store (durable), apply, answer. Operations block (the store fsyncs), so the HTTP
//! layers run them on tokio's blocking pool.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flocker_api::agent_protocol::{AgentConfiguration, StateReport};
use flocker_api::{
    AcquireLease, ConfigurationTag, CreateDataset, Dataset, DatasetId, DatasetProblem, Era, Lease,
    Node, NodeUuid, UpdateDataset,
};
use tokio::sync::watch;

use crate::cluster::ClusterState;
use crate::error::ApiError;
use crate::limits::{Limits, Usage};
use crate::model::{Change, Configuration};
use crate::store::{Store, Stored};

/// The version `/v1/version` reports: the Flocker API level we implement, and ours.
pub const VERSION: &str = concat!("1.15.0+flocker-rs.", env!("CARGO_PKG_VERSION"));

struct Desired {
    configuration: Configuration,
    generation: u64,
    store: Box<dyn Store>,
    /// `/v1/configuration/datasets`: a large cluster's list is megabytes, and reads outnumber
    /// writes.
    datasets_body: CachedJson,
    /// What the configuration uses of `limits`.
    usage: Usage,
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
    /// Mixed into the tag so that a tag from before a restart never matches by accident.
    tag_nonce: u64,
    limits: Limits,
    /// Counts changes to the datasets alone: leases come and go with every task, and need not
    /// make the list be written again. Changed only under the configuration's lock; read
    /// without it, so that reading the state never waits for a write's fsync.
    datasets_version: AtomicU64,
}

impl ControlService {
    /// A service over a loaded store. `node_expiry`: how long a quiet node stays listed.
    pub fn new(store: Box<dyn Store>, stored: Stored, node_expiry: Duration) -> Self {
        let Stored { configuration, generation } = stored;
        Self {
            desired: Mutex::new(Desired {
                usage: Usage::of(&configuration),
                configuration,
                generation,
                store,
                datasets_body: CachedJson::default(),
            }),
            actual: Mutex::new(Actual {
                cluster: ClusterState::new(node_expiry),
                states_body: CachedJson::default(),
            }),
            generation: watch::Sender::new(generation),
            tag_nonce: rand_u64(),
            limits: Limits::default(),
            datasets_version: AtomicU64::new(0),
        }
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

    fn tag_of(&self, generation: u64) -> ConfigurationTag {
        ConfigurationTag(format!("{:016x}{generation:016x}", self.tag_nonce))
    }

    /// 412 unless one of the `X-If-Configuration-Matches` values is the current tag (no header:
    /// no condition). Cheap and lock-free, so handlers call it before reading a body.
    pub fn check_tag(&self, if_matches: &[String]) -> Result<(), ApiError> {
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
        let mut desired = self.lock_desired();
        let version = self.datasets_version.load(Ordering::Acquire);
        let Desired { configuration, generation, datasets_body, .. } = &mut *desired;
        let body =
            datasets_body.get(version, || configuration.datasets.values().collect::<Vec<_>>());
        (body, self.tag_of(*generation))
    }

    /// `POST /v1/configuration/datasets`.
    pub fn create_dataset(
        &self,
        if_matches: &[String],
        request: CreateDataset,
    ) -> Result<Dataset, ApiError> {
        self.write(if_matches, |configuration, usage| {
            self.limits.check_create(usage, &request)?;
            let dataset = configuration.plan_create(request, DatasetId::random())?;
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
        self.lock_desired().configuration.api_leases(unix_now())
    }

    /// `POST /v1/configuration/leases`: the lease, and whether it is new (201) or renewed.
    pub fn acquire_lease(&self, request: &AcquireLease) -> Result<(Lease, bool), ApiError> {
        self.limits.check_lease(request)?;
        let mut desired = self.lock_desired();
        let decision = desired.configuration.plan_acquire_lease(request, unix_now())?;
        if let Some(change) = decision.change {
            self.commit(&mut desired, change)?;
        }
        Ok((decision.lease, decision.created))
    }

    /// `DELETE /v1/configuration/leases/<id>`.
    pub fn release_lease(&self, dataset_id: &DatasetId) -> Result<Lease, ApiError> {
        let mut desired = self.lock_desired();
        let (change, lease) = desired.configuration.plan_release_lease(dataset_id, unix_now())?;
        self.commit(&mut desired, change)?;
        Ok(lease)
    }

    /// The agent API's block-device record.
    pub fn record_blockdevice(
        &self,
        node: &NodeUuid,
        dataset_id: DatasetId,
        blockdevice_id: &str,
    ) -> Result<(), ApiError> {
        let mut desired = self.lock_desired();
        let configuration = &desired.configuration;
        let change = configuration.plan_record_blockdevice(node, dataset_id, blockdevice_id)?;
        if let Some(change) = change {
            self.commit(&mut desired, change)?;
        }
        Ok(())
    }

    /// Drops expired leases and nodes that went quiet; called about once a second.
    pub fn sweep(&self) {
        {
            let mut desired = self.lock_desired();
            if let Some(change) = desired.configuration.plan_expiry(unix_now())
                && let Err(e) = self.commit(&mut desired, change)
            {
                log::error!("could not store the expiry of leases: {e}");
            }
        }
        self.lock_actual().cluster.sweep(Instant::now());
    }

    /// What one node should have, and an etag that changes whenever that does.
    pub fn agent_configuration(&self, node: &NodeUuid) -> AgentConfiguration {
        let view = self.lock_desired().configuration.node_view(node);
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(&serde_json::to_vec(&view).unwrap_or_default());
        AgentConfiguration {
            etag: format!("{:016x}{:016x}", self.tag_nonce, hasher.finish()),
            datasets: view.datasets,
            leases: view.leases,
            blockdevice_ids: view.blockdevice_ids,
            had_volume: view.had_volume,
        }
    }

    /// An agent's hello from `host`.
    pub fn hello(&self, node: NodeUuid, era: Era, host: String) {
        let mut actual = self.lock_actual();
        log::info!("node {node} ({host}) said hello, era {era}");
        actual.cluster.hello(node, era, host, Instant::now());
    }

    /// Notes that an agent is alive; 409 if it must say hello first.
    pub fn touch(&self, node: &NodeUuid) -> Result<(), ApiError> {
        self.lock_actual().cluster.touch(node, Instant::now())
    }

    /// An agent's state report. The volumes it names are remembered durably before the state
    /// shows them: a volume a client can see mounted, and write to, is never one an agent
    /// could take for never made. Its problems are kept only for its own datasets.
    pub fn report(&self, node: &NodeUuid, report: StateReport) -> Result<(), ApiError> {
        let StateReport { era, datasets, problems } = report;
        self.lock_actual().cluster.check_era(node, era)?;
        let (problems, primaries) = {
            let mut desired = self.lock_desired();
            let reported = datasets.iter().map(|d| d.dataset_id);
            if let Some(change) = desired.configuration.plan_volumes_reported(reported) {
                self.commit(&mut desired, change)?;
            }
            let configuration = &desired.configuration;
            let primaries = datasets
                .iter()
                .filter_map(|d| Some((d.dataset_id, configuration.primary_of(&d.dataset_id)?)))
                .collect();
            (configuration.problems_of(node, problems), primaries)
        };
        if !problems.dropped.is_empty() {
            log::warn!(
                "node {node} reported problems of datasets whose primary is not that node; \
                 ignoring them: {:?}",
                problems.dropped
            );
        }
        let now = Instant::now();
        self.lock_actual().cluster.report(node, era, datasets, problems.kept, &primaries, now)
    }

    /// `GET /v1/state/problems`: the problems that the primary of each dataset reported. One
    /// from a node that is no longer the primary (the dataset moved since it reported) is left
    /// out: a client waiting for the dataset on its new node must not fail on the old one's.
    pub fn dataset_problems(&self) -> Vec<DatasetProblem> {
        // Few problems, many datasets: collect the first, then look each up; one lock at a time.
        let mut problems = self.lock_actual().cluster.problems();
        let desired = self.lock_desired();
        problems.retain(|p| desired.configuration.is_primary(&p.dataset_id, &p.node_uuid));
        problems
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
        let desired = self.lock_desired();
        let version = self.datasets_version.load(Ordering::Acquire);
        let mut actual = self.lock_actual();
        let Actual { cluster, states_body } = &mut *actual;
        let configuration = &desired.configuration;
        states_body.get((cluster.generation, version), || {
            cluster.dataset_states(|id| configuration.primary_of(id))
        })
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
    /// plan said to answer.
    fn write<T>(
        &self,
        if_matches: &[String],
        plan: impl FnOnce(&Configuration, &Usage) -> Result<(T, Option<Change>), ApiError>,
    ) -> Result<T, ApiError> {
        let mut desired = self.lock_desired();
        self.check_tag_at(desired.generation, if_matches)?;
        let (answer, change) = plan(&desired.configuration, &desired.usage)?;
        if let Some(change) = change {
            self.commit(&mut desired, change)?;
        }
        Ok(answer)
    }

    /// Makes a change durable, then applies it. If the store fails, nothing changes.
    fn commit(&self, desired: &mut Desired, change: Change) -> Result<(), ApiError> {
        let generation = desired.generation + 1;
        if let Err(error) = desired.store.append(&desired.configuration, generation, &change) {
            // The store tries again at the next change: once space is freed, writes resume.
            let out_of_space = error.is_out_of_space();
            log::error!("{:#}", anyhow::Error::new(error));
            return Err(if out_of_space {
                ApiError::InsufficientStorage
            } else {
                ApiError::StoreFailed
            });
        }
        desired.configuration.apply(&change);
        desired.usage.add(&change);
        desired.generation = generation;
        if change.changes_datasets() {
            self.datasets_version.fetch_add(1, Ordering::Release);
        }
        if let Err(error) = desired.store.applied(&desired.configuration, generation) {
            // The change is durable in the journal; only compaction failed.
            log::warn!("{:#}", anyhow::Error::new(error));
        }
        self.generation.send_replace(generation);
        Ok(())
    }

    fn lock_desired(&self) -> MutexGuard<'_, Desired> {
        // A panic never leaves the configuration half-changed (changes are applied whole, after
        // the store accepted them), so a poisoned lock is still consistent.
        self.desired.lock().unwrap_or_else(PoisonError::into_inner)
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
