//! The core of `com_clusterhq_flocker_FlockerIsolator`: a task's FLOCKER_ID volumes through
//! prepare, cleanup and recover, as the C ABI (`ffi/`) and through it the Mesos shim call them.
//!
//! - [`params`]: the module's parameters; [`request`]: the task's volumes, from its
//!   ContainerConfig; [`container`]: Mesos container ids;
//! - [`plan`]: the decisions (pure); [`placement`]: where a volume goes for the task;
//!   [`arrival`]: what a long wait for a mount says of a volume being copied here (pure);
//! - [`control`]: the control service; [`checkpoint`]: what was done, on persistent disk;
//! - [`locks`] and [`pool`]: one volume at a time, on the core's own threads.
//!
//! A prepare checkpoints its intent before anything else, finds or creates the dataset, takes
//! this node's lease (another node's lease fails it at once), moves the dataset here, waits until
//! it is really mounted, and links it (or returns a bind mount). A cleanup undoes that; the lease
//! goes when the last container using the volume on this node does. A recover keeps what known
//! containers use and cleans up what nobody owns.

pub mod arrival;
pub mod checkpoint;
pub mod container;
pub mod control;
pub mod error;
pub mod locks;
pub mod ownership;
pub mod params;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod pool;
pub mod request;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::checkpoint::{Checkpoint, CheckpointedVolume, Checkpoints};
use crate::container::ContainerId;
use crate::control::{ControlService, error_chain};
use crate::error::{CreateError, IsolatorError};
use crate::locks::VolumeLocks;
use crate::params::Parameters;
use crate::placement::{LaunchInfo, Placement};
use crate::request::{FlockerId, Request};

pub use crate::placement::LaunchInfo as PreparedLaunchInfo;

/// What a successful prepare came to.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The mounts to launch the container with; `None` when there is nothing to mount.
    pub launch: Option<LaunchInfo>,
    /// How many Flocker volumes the container asked for and got (0: it asked for none).
    pub volumes: usize,
}

/// How far a prepare got: what it checkpointed, the mounts it returns, and the volumes a lease
/// was asked for (even an unanswered request may have been granted, so those are the ones to
/// release on undo).
struct Progress {
    checkpoint: Checkpoint,
    launch: LaunchInfo,
    leases_asked: BTreeSet<FlockerId>,
}

pub struct Isolator {
    parameters: Parameters,
    control: ControlService,
    checkpoints: Checkpoints,
    locks: VolumeLocks,
}

impl Isolator {
    /// Checks the parameters, the certificates and the state directory; talks to nobody yet.
    pub fn new(parameters: Parameters) -> Result<Self, CreateError> {
        let checkpoints =
            Checkpoints::open(&parameters.state_dir).map_err(CreateError::StateDirectory)?;
        let control = ControlService::new(&parameters)?;
        for root in parameters.host_path_roots.missing() {
            log::warn!(
                "host_path_roots: {} does not exist; tasks linked beneath it will fail until it does",
                root.display()
            );
        }
        Ok(Self { parameters, control, checkpoints, locks: VolumeLocks::default() })
    }

    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }

    /// Makes a container's volumes ready; `None` if it asked for none (or for nothing a bind
    /// mount has to do). All or nothing: a failure undoes the volumes already prepared.
    pub fn prepare(
        &self,
        container_id: &ContainerId,
        config: &Value,
    ) -> Result<Option<LaunchInfo>, IsolatorError> {
        self.prepare_counted(container_id, config).map(|prepared| prepared.launch)
    }

    /// [`Isolator::prepare`], also saying how many volumes the container got (for metrics).
    pub fn prepare_counted(
        &self,
        container_id: &ContainerId,
        config: &Value,
    ) -> Result<Prepared, IsolatorError> {
        let Some(request) = request::parse(config)? else { return Ok(Prepared::default()) };
        let allowed = &self.parameters;
        policy::check(&request, &allowed.host_path_roots, &allowed.volume_prefixes, |v| {
            placement::placement(&v.path, &request.sandbox, request.rootfs.as_deref())
        })?;
        let _held = self.locks.lock(request.volumes.iter().map(|v| &v.flocker_id));
        let started = Instant::now();
        let deadline = started + self.parameters.mount_timeout;
        let checkpoint = Checkpoint::new(container_id.clone(), self.plan(&request)?);
        self.checkpoints.write(&checkpoint)?; // before any side effect
        log::debug!("container {container_id}: checkpoint written after {:?}", started.elapsed());
        let mut progress =
            Progress { checkpoint, launch: LaunchInfo::default(), leases_asked: BTreeSet::new() };
        for index in 0..request.volumes.len() {
            let prepared = self.prepare_volume(&request, index, &mut progress, started, deadline);
            if let Err(error) = prepared {
                log::warn!(
                    "container {container_id}: {}; undoing what was prepared",
                    error_chain(&error)
                );
                if let Err(undo) = self.undo(&progress.checkpoint, Some(&progress.leases_asked)) {
                    log::error!("container {container_id}: {}", error_chain(&undo));
                }
                return Err(error);
            }
        }
        log::info!(
            "container {container_id}: {} volume(s) ready in {:?}",
            request.volumes.len(),
            started.elapsed()
        );
        let launch = progress.launch;
        Ok(Prepared {
            launch: (!launch.is_empty()).then_some(launch),
            volumes: request.volumes.len(),
        })
    }

    /// What each volume of a request will need, found before anything is done: for a host
    /// link, the root it goes beneath and the directories to make (nothing on the way may be a
    /// symbolic link, and nothing but a link of ours may be at the path).
    fn plan(&self, request: &Request) -> Result<Vec<CheckpointedVolume>, IsolatorError> {
        let roots = &self.parameters.host_path_roots;
        let mut planned = Vec::with_capacity(request.volumes.len());
        for v in &request.volumes {
            let mut volume = CheckpointedVolume {
                flocker_id: v.flocker_id.clone(),
                path: v.path.clone(),
                link: None,
                link_root: None,
                made_directories: Vec::new(),
            };
            let place = placement::placement(&v.path, &request.sandbox, request.rootfs.as_deref());
            if let Placement::Link(link) = place {
                let placed = |source| IsolatorError::Placement { id: v.flocker_id.clone(), source };
                // policy::check found a root for every link.
                let root = roots.root_of(&link).unwrap_or(Path::new("/"));
                volume.made_directories = placement::plan_link(&link, root).map_err(placed)?;
                volume.link_root = Some(root.to_owned());
                volume.link = Some(link);
            }
            planned.push(volume);
        }
        Ok(planned)
    }

    /// One volume of a prepare, recorded in `progress`.
    fn prepare_volume(
        &self,
        request: &Request,
        index: usize,
        progress: &mut Progress,
        started: Instant,
        deadline: Instant,
    ) -> Result<(), IsolatorError> {
        let volume = &request.volumes[index];
        let id = &volume.flocker_id;
        let node = self.control.node(deadline)?;
        let dataset = self.control.find_or_create(
            volume.into(),
            node,
            self.parameters.default_maximum_size,
        )?;
        log::debug!("volume '{id}': dataset {} after {:?}", dataset.dataset_id, started.elapsed());
        progress.leases_asked.insert(id.clone());
        let lease_wait_until = (Instant::now() + self.parameters.lease_wait).min(deadline);
        self.control.lease(id, dataset.dataset_id, node, lease_wait_until)?;
        log::debug!("volume '{id}': leased after {:?}", started.elapsed());
        self.control.move_here(id, &dataset, node)?;
        let mounted = self.control.wait_mounted(id, dataset.dataset_id, node, started, deadline)?;
        log::debug!(
            "volume '{id}': mounted at {} after {:?}",
            mounted.display(),
            started.elapsed()
        );
        let placed = |source| IsolatorError::Placement { id: id.clone(), source };
        if !volume.read_only {
            self.claim(id, &mounted, request.user.as_deref())?;
        }
        match placement::placement(&volume.path, &request.sandbox, request.rootfs.as_deref()) {
            Placement::Link(link) => {
                let planned = &mut progress.checkpoint.volumes[index];
                let root = planned.link_root().unwrap_or(Path::new("/")).to_owned();
                let made = placement::publish_link(&link, &root, &mounted).map_err(placed)?;
                if made != planned.made_directories {
                    // Someone else made (or removed) a directory meanwhile: record what is ours.
                    planned.made_directories = made;
                    self.checkpoints.write(&progress.checkpoint)?;
                }
                Ok(())
            }
            Placement::BindMount(target) => {
                let base = request.rootfs.as_deref().unwrap_or(&request.sandbox);
                placement::prepare_mount_target(&target, base).map_err(placed)?;
                progress.launch.bind(&mounted, &target, volume.read_only);
                Ok(())
            }
        }
    }

    /// Gives a fresh volume to the task's user (see [`ownership`]).
    fn claim(
        &self,
        id: &FlockerId,
        mounted: &Path,
        user: Option<&str>,
    ) -> Result<(), IsolatorError> {
        let owner = match ownership::task_owner(user) {
            Ok(Some(owner)) => owner,
            Ok(None) => {
                log::warn!(
                    "volume '{id}': user '{}' is not known on this host; the volume keeps its owner",
                    user.unwrap_or_default()
                );
                return Ok(());
            }
            Err(problem) => {
                log::warn!("volume '{id}': {problem}; the volume keeps its owner");
                return Ok(());
            }
        };
        let claimed = ownership::claim_if_fresh(mounted, owner)
            .map_err(|source| IsolatorError::Placement { id: id.clone(), source: source.into() })?;
        if claimed {
            log::info!("volume '{id}': a new volume, given to user {}", owner.uid);
        }
        Ok(())
    }

    /// Lets a container's volumes go: its links, then each lease no other container here still
    /// needs, then its checkpoint. Returns how many volumes it had; unknown containers, and
    /// repeats, succeed with 0.
    pub fn cleanup(&self, container_id: &ContainerId) -> Result<usize, IsolatorError> {
        let Some(checkpoint) = self.checkpoints.read(container_id) else { return Ok(0) };
        let _held = self.locks.lock(checkpoint.volumes.iter().map(|v| &v.flocker_id));
        // Read again under the lock: a cleanup may have run meanwhile.
        let Some(checkpoint) = self.checkpoints.read(container_id) else { return Ok(0) };
        self.undo(&checkpoint, None)?;
        log::info!("container {container_id}: volumes released");
        Ok(checkpoint.volumes.len())
    }

    /// How many distinct volumes this node's containers hold now: those checkpointed, i.e.
    /// being prepared, in use, or kept after a failed cleanup until it is tried again. Read
    /// from the journal, so it stays right across an agent restart; no I/O.
    pub fn volumes_in_use(&self) -> usize {
        self.checkpoints.volumes_in_use()
    }

    /// Undoes a checkpoint, under the caller's lock of its volumes: its links, and the leases of
    /// `leased` (None: of every volume, for a cleanup that cannot know how far the prepare got).
    /// Everything is tried; the checkpoint stays if anything failed, so recover tries again.
    fn undo(
        &self,
        checkpoint: &Checkpoint,
        leased: Option<&BTreeSet<FlockerId>>,
    ) -> Result<(), IsolatorError> {
        let mut first_failure = None;
        for volume in &checkpoint.volumes {
            let (Some(link), Some(root)) = (volume.link.as_deref(), volume.link_root()) else {
                continue;
            };
            if let Err(source) = placement::remove_link(link, root, &volume.made_directories) {
                let id = volume.flocker_id.clone();
                first_failure.get_or_insert(IsolatorError::Placement { id, source });
            }
        }
        let ids: BTreeSet<&FlockerId> = checkpoint.volumes.iter().map(|v| &v.flocker_id).collect();
        for id in ids.into_iter().filter(|id| leased.is_none_or(|leased| leased.contains(*id))) {
            if let Err(error) = self.release_if_unused(id, &checkpoint.container_id) {
                log::warn!("volume '{id}': {}", error_chain(&error));
                first_failure.get_or_insert(error);
            }
        }
        match first_failure {
            None => Ok(self.checkpoints.remove(&checkpoint.container_id)?),
            Some(error) => Err(error),
        }
    }

    /// Releases this node's lease on the volume unless another container here still uses it.
    fn release_if_unused(
        &self,
        id: &FlockerId,
        container_id: &ContainerId,
    ) -> Result<(), IsolatorError> {
        let users = self.checkpoints.users(id, container_id);
        if !users.is_empty() {
            log::info!("volume '{id}': still used here by {}; keeping the lease", users.len());
            return Ok(());
        }
        let node = self.control.node(Instant::now() + Duration::from_secs(5))?;
        self.control.release_leases_held(id, node)
    }

    /// After an agent restart: keeps what the containers Mesos still knows (`states`, and the
    /// `orphans` it will clean up itself) use, and cleans up every other checkpoint. A damaged
    /// checkpoint was set aside when the journal was opened; failing to clean up one container
    /// is logged and tried again next time.
    pub fn recover(
        &self,
        states: &[ContainerId],
        orphans: &[ContainerId],
    ) -> Result<(), IsolatorError> {
        let checkpoints = self.checkpoints.all();
        let known: BTreeSet<&ContainerId> = states.iter().chain(orphans).collect();
        log::info!(
            "recover: Mesos knows {} container(s) and {} orphan(s); {} checkpoint(s) here",
            states.len(),
            orphans.len(),
            checkpoints.len()
        );
        for checkpoint in checkpoints.iter().filter(|c| !known.contains(&c.container_id)) {
            let id = &checkpoint.container_id;
            log::info!("recover: container {id} is gone; cleaning up after it");
            if let Err(error) = self.cleanup(id) {
                log::error!(
                    "recover: container {id}: {}; will try again at the next recover",
                    error_chain(&error)
                );
            }
        }
        Ok(())
    }
}
