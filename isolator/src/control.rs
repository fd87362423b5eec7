//! The isolator's conversation with the control service: which node this is, finding or
//! creating a dataset, the lease, the move, waiting for the mount. Every call has a timeout
//! (the client's), every wait a deadline.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flocker_api::client::ClientError;
use flocker_api::{
    AcquireLease, Client, ClientConfig, Dataset, DatasetId, Lease, LeaseOutcome, NodeUuid,
    certificates,
};
use flocker_host::mounts::MountTable;

use crate::arrival::{self, Line};
use crate::error::{CreateError, IsolatorError};
use crate::params::{MountCheck, Parameters};
use crate::plan::{self, NewVolume, Seen};
use crate::request::FlockerId;

/// A conditional create lost to another writer is tried again this many times, as Flocker's
/// own client did.
const CREATE_ATTEMPTS: u32 = 20;

pub struct ControlService {
    client: Client,
    node: OnceLock<NodeUuid>,
    mount_check: MountCheck,
}

impl ControlService {
    /// A client of the control service; this node's UUID from the parameters or `node.crt` if
    /// either says, else found by era on first use.
    pub fn new(parameters: &Parameters) -> Result<Self, CreateError> {
        let config = ClientConfig {
            host: parameters.control_host.clone(),
            port: parameters.control_port,
            cluster_certificate: parameters.cluster_certificate.clone(),
            certificate: parameters.client_certificate.clone(),
            key: parameters.client_key.clone(),
            timeout: parameters.request_timeout,
            connect_timeout: parameters.request_timeout.min(Duration::from_secs(10)),
            tls: parameters.tls,
        };
        let node = OnceLock::new();
        if let Some(uuid) = parameters.node_uuid {
            let _ = node.set(uuid);
        } else if parameters.node_certificate.exists() {
            let path = &parameters.node_certificate;
            let uuid = certificates::node_uuid_of_file(path)
                .map_err(|source| CreateError::NodeCertificate { path: path.clone(), source })?;
            let _ = node.set(uuid);
        }
        let client = Client::new(&config).map_err(CreateError::Client)?;
        Ok(Self { client, node, mount_check: parameters.mount_check })
    }

    /// This node's UUID: known from the start, or asked for by era (the kernel's boot id) until
    /// `deadline` — never guessed from an IP address.
    pub fn node(&self, deadline: Instant) -> Result<NodeUuid, IsolatorError> {
        if let Some(node) = self.node.get() {
            return Ok(*node);
        }
        let era = flocker_host::boot_id()
            .map_err(|e| {
                IsolatorError::Identity(format!("cannot read {}: {e}", flocker_host::BOOT_ID))
            })?
            .parse()
            .map_err(|e| IsolatorError::Identity(format!("{e}")))?;
        loop {
            match self.client.node_by_era(&era) {
                Ok(Some(node)) => return Ok(*self.node.get_or_init(|| node)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(None) => {
                    return Err(IsolatorError::Identity(format!(
                        "no node has said hello with era {era}: is flocker-dataset-agent running here?"
                    )));
                }
                Err(error) => return Err(IsolatorError::Identity(error_chain(&error))),
            }
        }
    }

    /// The live dataset `volume` names, created here if there is none. Creation is conditional
    /// on the configuration read, so two nodes asking at once make one dataset, not two.
    pub fn find_or_create(
        &self,
        volume: NewVolume<'_>,
        node: NodeUuid,
        default_size: u64,
    ) -> Result<Dataset, IsolatorError> {
        let id = volume.flocker_id;
        let control = |doing| IsolatorError::control(id, doing);
        let mut attempt = 0;
        loop {
            let (datasets, tag) =
                self.client.datasets_named(id.as_str()).map_err(control("look up datasets"))?;
            match plan::find_dataset(&datasets, id) {
                Ok(Some(dataset)) => return Ok(dataset.clone()),
                Ok(None) => {}
                Err(datasets) => return Err(IsolatorError::Ambiguous { id: id.clone(), datasets }),
            }
            let request = plan::new_dataset(volume, node, default_size);
            match self.client.create_dataset(&request, Some(&tag)) {
                Ok(dataset) => {
                    log::info!(
                        "volume '{id}': created dataset {} on node {node}",
                        dataset.dataset_id
                    );
                    return Ok(dataset);
                }
                Err(error)
                    if matches!(error.status(), Some(412 | 409)) && attempt < CREATE_ATTEMPTS =>
                {
                    attempt += 1; // someone else wrote first: look again
                    std::thread::sleep(Duration::from_millis(u64::from(attempt)));
                }
                Err(error) => return Err(control("create a dataset")(error)),
            }
        }
    }

    /// A lease for this node. Another node's lease means another task uses the volume, or
    /// used it and is being cleaned up: it is waited for until `wait_until`, then refused with
    /// the node and its host.
    pub fn lease(
        &self,
        id: &FlockerId,
        dataset: DatasetId,
        node: NodeUuid,
        wait_until: Instant,
    ) -> Result<(), IsolatorError> {
        let request = AcquireLease { dataset_id: dataset, node_uuid: node, expires: None };
        let mut pause = Duration::ZERO;
        let mut said = false;
        loop {
            match self.client.acquire_lease(&request) {
                Err(error) if error.status() == Some(409) && Instant::now() < wait_until => {
                    if !said {
                        log::info!("volume '{id}': leased by another node; waiting for it to go");
                        said = true;
                    }
                    pause = plan::next_poll(pause);
                    std::thread::sleep(
                        pause.min(wait_until.saturating_duration_since(Instant::now())),
                    );
                }
                answer => return self.leased_or_why(id, dataset, answer),
            }
        }
    }

    fn leased_or_why(
        &self,
        id: &FlockerId,
        dataset: DatasetId,
        answer: Result<(Lease, LeaseOutcome), ClientError>,
    ) -> Result<(), IsolatorError> {
        match answer {
            Ok(_) => Ok(()),
            Err(error) if error.status() == Some(409) => {
                let holder = self.client.lease_of(&dataset).ok().flatten().map(|l| l.node_uuid);
                let Some(holder) = holder else {
                    return Err(IsolatorError::control(id, "take the lease")(error));
                };
                let host =
                    self.client.list_nodes().ok().and_then(|nodes| {
                        nodes.into_iter().find(|n| n.uuid == holder).map(|n| n.host)
                    });
                Err(IsolatorError::LeasedElsewhere { id: id.clone(), dataset, node: holder, host })
            }
            Err(source) => Err(IsolatorError::control(id, "take the lease")(source)),
        }
    }

    /// Makes this node the dataset's primary.
    pub fn move_here(
        &self,
        id: &FlockerId,
        dataset: &Dataset,
        node: NodeUuid,
    ) -> Result<(), IsolatorError> {
        if dataset.primary == node {
            return Ok(());
        }
        log::info!(
            "volume '{id}': moving dataset {} from node {} to node {node}",
            dataset.dataset_id,
            dataset.primary
        );
        self.client
            .move_dataset(&dataset.dataset_id, &node, None)
            .map(drop)
            .map_err(|source| IsolatorError::control(id, "move the dataset here")(source))
    }

    /// Waits until the cluster state shows the dataset mounted here, and it really is. A wait
    /// that lasts logs how far a copy of the volume to this node has come, if one is under way.
    pub fn wait_mounted(
        &self,
        id: &FlockerId,
        dataset: DatasetId,
        node: NodeUuid,
        started: Instant,
        deadline: Instant,
    ) -> Result<PathBuf, IsolatorError> {
        let (mut deadline, patience) = (deadline, deadline.saturating_duration_since(started));
        let mut pause = Duration::ZERO;
        // Asked once the first look did not find it mounted; dropped against a service
        // without the extension (Flocker 1.x).
        let mut ask_for_problems = false;
        let mut push = arrival::Watch::new(dataset, node, Instant::now());
        loop {
            let states = self
                .client
                .dataset_states_of(&dataset)
                .map_err(IsolatorError::control(id, "read the cluster state"))?;
            let seen = plan::seen(&states, &dataset, &node);
            if let Seen::Here(path) = &seen
                && self.really_there(path)
            {
                return Ok(path.clone());
            }
            if ask_for_problems {
                ask_for_problems = self.refused_here(id, dataset, node)?;
            }
            ask_for_problems |= pause.is_zero();
            let now = Instant::now();
            if push.due(now) {
                let before = push.last().cloned();
                self.watch_push(id, &mut push, now);
                // A volume still coming from another node's disk may take longer than the
                // timeout in all: the timeout counts from its last progress.
                if push.moved_on_from(before.as_ref()) {
                    deadline = deadline.max(now + patience);
                }
            }
            if Instant::now() >= deadline {
                let last_seen = arrival::last_seen(&seen, push.last(), self.expected());
                let waited = started.elapsed();
                return Err(IsolatorError::NotMounted {
                    id: id.clone(),
                    dataset,
                    waited,
                    last_seen,
                });
            }
            pause = plan::next_poll(pause);
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    /// Asks for the pushes under way and logs what `push` makes of them. Only for the log: an
    /// error is logged and the wait goes on; a service without them is not asked again.
    fn watch_push(&self, id: &FlockerId, push: &mut arrival::Watch, now: Instant) {
        match self.client.dataset_transfers() {
            Ok(Some(transfers)) => {
                for line in push.answered(&transfers, now) {
                    match line {
                        Line::Info(text) => log::info!("volume '{id}': {text}"),
                        Line::Warning(text) => log::warn!("volume '{id}': {text}"),
                    }
                }
            }
            Ok(None) => push.unserved(),
            Err(error) => {
                push.failed(now);
                log::debug!(
                    "volume '{id}': cannot read the pushes under way: {}",
                    error_chain(&error)
                );
            }
        }
    }

    /// Fails if this node's agent says it will not mount the dataset (its volume is not
    /// visible here, say): the task must not wait for what will not come. Whether to ask again.
    fn refused_here(
        &self,
        id: &FlockerId,
        dataset: DatasetId,
        node: NodeUuid,
    ) -> Result<bool, IsolatorError> {
        let problems = self
            .client
            .dataset_problems()
            .map_err(IsolatorError::control(id, "read the agents' problems"))?;
        let Some(problems) = problems else { return Ok(false) };
        match problems.into_iter().find(|p| p.dataset_id == dataset && p.node_uuid == node) {
            Some(found) => Err(IsolatorError::RefusedByAgent {
                id: id.clone(),
                dataset,
                problem: found.problem,
            }),
            None => Ok(true),
        }
    }

    /// The live dataset a volume's name names, if any.
    pub fn find(&self, id: &FlockerId) -> Result<Option<Dataset>, IsolatorError> {
        let (datasets, _) = (self.client.datasets_named(id.as_str()))
            .map_err(IsolatorError::control(id, "look up datasets"))?;
        match plan::find_dataset(&datasets, id) {
            Ok(found) => Ok(found.cloned()),
            Err(datasets) => Err(IsolatorError::Ambiguous { id: id.clone(), datasets }),
        }
    }

    /// Where this node has `dataset` mounted, if it really has.
    pub fn mounted_here(
        &self,
        id: &FlockerId,
        dataset: &DatasetId,
        node: NodeUuid,
    ) -> Result<Option<PathBuf>, IsolatorError> {
        let states = (self.client.dataset_states_of(dataset))
            .map_err(IsolatorError::control(id, "read the state"))?;
        Ok(match plan::seen(&states, dataset, &node) {
            Seen::Here(path) if self.really_there(&path) => Some(path),
            _ => None,
        })
    }

    /// Releases this node's lease on `dataset`, if it holds one; another node's is never
    /// touched.
    pub fn release_lease(
        &self,
        id: &FlockerId,
        dataset: &DatasetId,
        node: NodeUuid,
    ) -> Result<(), IsolatorError> {
        let control = |doing| IsolatorError::control(id, doing);
        let lease = self.client.lease_of(dataset).map_err(control("read the lease"))?;
        if lease.is_some_and(|l| l.node_uuid == node) {
            self.client.release_lease(dataset).map_err(control("release the lease"))?;
            log::info!("volume '{id}': released the lease on dataset {dataset}");
        }
        Ok(())
    }

    /// Deletes `dataset` unless a node holds a lease on it (a container or task uses it): then
    /// the refusal names the node.
    pub fn delete_unless_leased(
        &self,
        id: &FlockerId,
        dataset: &DatasetId,
    ) -> Result<(), IsolatorError> {
        let control = |doing| IsolatorError::control(id, doing);
        if let Some(lease) = self.client.lease_of(dataset).map_err(control("read the lease"))? {
            let host = self.client.list_nodes().ok().and_then(|nodes| {
                nodes.into_iter().find(|n| n.uuid == lease.node_uuid).map(|n| n.host)
            });
            let (dataset, node) = (*dataset, lease.node_uuid);
            return Err(IsolatorError::LeasedElsewhere { id: id.clone(), dataset, node, host });
        }
        self.client.delete_dataset(dataset, None).map_err(control("delete the dataset"))?;
        log::info!("volume '{id}': deleted dataset {dataset}");
        Ok(())
    }

    /// Every live dataset that has a name, by name (a name several datasets share: the first).
    pub fn named(&self) -> Result<Vec<(String, Dataset)>, ClientError> {
        let (datasets, _) = self.client.list_datasets()?;
        let mut named: Vec<(String, Dataset)> = datasets
            .into_iter()
            .filter(|d| !d.deleted)
            .filter_map(|d| {
                let name = d.name()?.to_owned();
                Some((name, d))
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.dedup_by(|a, b| a.0 == b.0);
        Ok(named)
    }

    /// Where every dataset is mounted on this node, by dataset.
    pub fn mounted_on(
        &self,
        node: NodeUuid,
    ) -> Result<std::collections::BTreeMap<DatasetId, PathBuf>, ClientError> {
        let states = self.client.dataset_states()?;
        Ok(states
            .into_iter()
            .filter(|s| s.primary == Some(node))
            .filter_map(|s| Some((s.dataset_id, PathBuf::from(s.path?))))
            .collect())
    }

    /// Releases every lease this node holds on a dataset the volume names — tombstones
    /// included, since a lease pins a deleted dataset too. Leases of other nodes are never
    /// touched: the API would let anyone release any lease.
    pub fn release_leases_held(&self, id: &FlockerId, node: NodeUuid) -> Result<(), IsolatorError> {
        let control = |doing| IsolatorError::control(id, doing);
        let (named, _) =
            self.client.datasets_named(id.as_str()).map_err(control("look up datasets"))?;
        for dataset in named {
            let lease =
                self.client.lease_of(&dataset.dataset_id).map_err(control("read the lease"))?;
            if lease.is_some_and(|lease| lease.node_uuid == node) {
                let dataset = dataset.dataset_id;
                self.client.release_lease(&dataset).map_err(control("release the lease"))?;
                log::info!("volume '{id}': released the lease on dataset {dataset}");
            }
        }
        Ok(())
    }

    fn really_there(&self, path: &std::path::Path) -> bool {
        match self.mount_check {
            MountCheck::MountPoint => {
                MountTable::read().is_ok_and(|mounts| mounts.at(path).is_some())
            }
            MountCheck::Directory => path.is_dir(),
        }
    }

    fn expected(&self) -> &'static str {
        match self.mount_check {
            MountCheck::MountPoint => "a mount point",
            MountCheck::Directory => "a directory",
        }
    }
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
