//! The pushing node's side: runs each dataset's [`Duty`] in a thread of its own (a few at a
//! time), keeps their progress for the state report, and deletes snapshots nobody needs.
//!
//! A volume handed off is first set aside, out of `volumes/`, where nothing mounts it:
//!
//! ```text
//! <pool>/handoff/<node uuid>/<dataset_id>_<bytes>   set aside for that node
//! ```
//!
//! so that after any crash the agent knows it must not use it again before the receiver says
//! what it did ([`super::duties::fate`]). Every step starts from what is on disk here and what
//! the receiver says it holds, so a push cut at any point (either agent killed, the network
//! gone) is taken up again from there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flocker_api::agent_protocol::{
    AgentConfiguration, ReportedDataset, ReportedProblem, ReportedTransfer, TransferPhase,
};
use flocker_api::{DatasetId, NodeUuid};
use flocker_host::mounts::MountTable;
use flocker_host::no_replace;
use uuid::Uuid;

use super::duties::{Duty, Fate, duties, fate};
use super::plan::{Generation, Handoff, Held, Phase, Send, deletable, latest_common, push_step};
use super::snapshots::{
    Snapshot, complete, datasets_with_snapshots, delete_subvolume, estimate, remove_all,
    remove_snapshot, sync, take_snapshot,
};
use super::{Pool, send};
use crate::backend::btrfs::{mount_showing, parse_name};
use crate::converge::Mailbox;
use crate::discover::Discovery;
use crate::peer::client::PeerClient;
use crate::peer::{Holding, Promote};

/// Pushes running at once: each reads the pool and fills the network.
const MOST_AT_ONCE: usize = 2;
/// While a lease holds a volume, it is sent again this often, so that the handoff has little
/// left to send.
const PRE_COPY_EVERY: Duration = Duration::from_secs(5);
/// The pause after a first failed attempt, doubling with each next one.
const FIRST_PAUSE: Duration = Duration::from_millis(125);
/// The longest pause after failed attempts.
const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// How often snapshots nobody needs are looked for.
const CLEANUP_EVERY: Duration = Duration::from_secs(2);

/// Where one dataset's push stands.
#[derive(Debug, Clone)]
struct Push {
    duty: Duty,
    phase: TransferPhase,
    sent: u64,
    estimate: Option<u64>,
    problem: Option<String>,
    running: bool,
    not_before: Instant,
    failures: u32,
    /// The snapshot taken after the volume was set aside, in this run of the agent: the last.
    last: Option<Generation>,
}

pub struct Outgoing {
    pool: Pool,
    peers: PeerClient,
    mailbox: Arc<Mailbox>,
    pushes: Mutex<BTreeMap<DatasetId, Push>>,
    cleaned: Mutex<Option<Instant>>,
}

impl Outgoing {
    pub fn new(pool: Pool, peers: PeerClient, mailbox: Arc<Mailbox>) -> Self {
        Self { pool, peers, mailbox, pushes: Mutex::default(), cleaned: Mutex::default() }
    }

    fn pushes(&self) -> MutexGuard<'_, BTreeMap<DatasetId, Push>> {
        self.pushes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn aside_root(&self) -> PathBuf {
        self.pool.root().join("handoff")
    }

    /// Volumes set aside: dataset → (the node it was set aside for, its path).
    fn aside(&self) -> BTreeMap<DatasetId, (NodeUuid, PathBuf)> {
        let mut aside = BTreeMap::new();
        let Ok(nodes) = fs::read_dir(self.aside_root()) else { return aside };
        for node in nodes.filter_map(Result::ok) {
            let Some(uuid) = node.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(volumes) = fs::read_dir(node.path()) else { continue };
            for volume in volumes.filter_map(Result::ok) {
                if let Some((id, _)) = volume.file_name().to_str().and_then(parse_name) {
                    aside.insert(id, (uuid, volume.path()));
                }
            }
        }
        aside
    }

    /// The volumes set aside, as the state report lists them: held here, not mounted. The
    /// control service keeps pushing them from here only while they are reported.
    pub fn reported(&self) -> Vec<ReportedDataset> {
        let aside = self.aside();
        let reported = aside.into_iter().filter_map(|(id, (_, path))| {
            let (_, size) = path.file_name()?.to_str().and_then(parse_name)?;
            Some(ReportedDataset { dataset_id: id, path: None, maximum_size: Some(size) })
        });
        reported.collect()
    }

    /// The pushes under way, for the state report.
    pub fn transfers(&self) -> Vec<ReportedTransfer> {
        // Every push with a duty, between its rounds too: a pre-copy under a lease stays shown
        // with what its last round sent.
        let pushes = self.pushes();
        pushes
            .iter()
            .filter_map(|(id, push)| {
                Some(ReportedTransfer {
                    dataset_id: *id,
                    to: push.duty.node()?,
                    phase: push.phase,
                    sent: push.sent,
                    estimate: push.estimate,
                    // The report's rules: one line of at most 1 KiB.
                    problem: push.problem.as_ref().map(|p| ReportedProblem::new(*id, p).problem),
                })
            })
            .collect()
    }

    /// Whether a push of `dataset` is moving its volume now: the plan leaves it alone.
    pub fn moving(&self, dataset: &DatasetId) -> bool {
        self.pushes().get(dataset).is_some_and(|push| push.running && push.duty.sets_aside())
    }

    /// Whether any push is running (the loop then reports progress often).
    pub fn busy(&self) -> bool {
        self.pushes().values().any(|push| push.running)
    }

    /// How soon a push waiting for its next attempt is due: the loop looks again by then.
    pub fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        let waiting =
            self.pushes().values().filter(|push| !push.running).map(|p| p.not_before).min();
        waiting.map(|at| at.saturating_duration_since(now))
    }

    /// Starts the pushes that are due, given the configuration and what discovery found.
    pub fn tend(self: &Arc<Self>, desired: &AgentConfiguration, discovery: &Discovery) {
        use crate::calculate::Have;
        let volumes: BTreeMap<DatasetId, bool> = discovery
            .found
            .iter()
            .filter_map(|(id, found)| match found.have {
                Have::Mounted => Some((*id, true)),
                Have::Attached(_) => Some((*id, false)),
                _ => None,
            })
            .collect();
        let aside = self.aside();
        let targets = aside.iter().map(|(id, (node, _))| (*id, *node)).collect();
        let duties = duties(desired, &volumes, &targets);
        self.start_due(desired, &duties);
        self.clean_up(desired, &duties);
    }

    fn start_due(
        self: &Arc<Self>,
        desired: &AgentConfiguration,
        duties: &BTreeMap<DatasetId, Duty>,
    ) {
        let now = Instant::now();
        let mut pushes = self.pushes();
        pushes.retain(|id, push| push.running || duties.contains_key(id));
        let mut running = pushes.values().filter(|push| push.running).count();
        for (id, duty) in duties {
            let push = pushes.entry(*id).or_insert_with(|| Push {
                duty: *duty,
                phase: TransferPhase::PreCopy,
                sent: 0,
                estimate: None,
                problem: None,
                running: false,
                not_before: now,
                failures: 0,
                last: None,
            });
            if push.duty != *duty && !push.running {
                // A new duty (the lease was released: hand off now) waits for nothing.
                (push.duty, push.failures, push.problem, push.not_before) = (*duty, 0, None, now);
            }
            if push.running || now < push.not_before || running >= MOST_AT_ONCE {
                continue;
            }
            let address = match duty.node() {
                Some(node) => match desired.peers.get(&node) {
                    Some(address) => Some(address.clone()),
                    None => {
                        push.problem = Some(format!(
                            "node {node} has not said where it takes pushes (is its agent up, \
                             with the btrfs backend?)"
                        ));
                        push.not_before = now + Duration::from_secs(2);
                        continue;
                    }
                },
                None => None,
            };
            push.running = true;
            running += 1;
            let (outgoing, id, duty, desired) = (self.clone(), *id, *duty, desired.clone());
            let spawned = std::thread::Builder::new().name(format!("push-{id}")).spawn(move || {
                let outcome = outgoing.carry_out(&id, duty, address.as_deref(), &desired);
                outgoing.finished(&id, duty, outcome);
            });
            match spawned {
                Ok(_) => crate::metrics::global().push_started(&duty),
                Err(error) => {
                    log::error!("dataset {id}: cannot start its push: {error}");
                    push.running = false;
                    running -= 1;
                }
            }
        }
    }

    fn finished(&self, dataset: &DatasetId, duty: Duty, outcome: anyhow::Result<()>) {
        crate::metrics::global().push_finished(&duty, outcome.is_ok());
        {
            let mut pushes = self.pushes();
            if let Some(push) = pushes.get_mut(dataset) {
                push.running = false;
                match &outcome {
                    Ok(()) => {
                        (push.failures, push.problem) = (0, None);
                        let again = matches!(duty, Duty::PreCopy { .. });
                        push.not_before =
                            Instant::now() + if again { PRE_COPY_EVERY } else { Duration::ZERO };
                    }
                    Err(error) => {
                        let text = format!("{error:#}");
                        if push.problem.as_ref() != Some(&text) {
                            log::warn!("dataset {dataset}: push failed: {text}");
                        }
                        push.failures += 1;
                        push.problem = Some(text);
                        // Soon at first: the receiver may only not have heard yet that the
                        // dataset comes to it.
                        let pause = FIRST_PAUSE * (1 << push.failures.min(8));
                        push.not_before = Instant::now() + pause.min(LONGEST_PAUSE);
                    }
                }
            }
        }
        self.mailbox.poke();
    }

    fn progress(&self, dataset: &DatasetId, update: impl FnOnce(&mut Push)) {
        if let Some(push) = self.pushes().get_mut(dataset) {
            update(push);
        }
    }

    fn carry_out(
        &self,
        dataset: &DatasetId,
        duty: Duty,
        address: Option<&str>,
        desired: &AgentConfiguration,
    ) -> anyhow::Result<()> {
        let target = |node| Target { node, address: address.unwrap_or_default() };
        match duty {
            Duty::PreCopy { to } => self.pre_copy(dataset, &target(to)),
            Duty::HandOff { to } => self.hand_off(dataset, &target(to)),
            Duty::Finish { to } => self.finish(dataset, &target(to)),
            Duty::Settle { target: node } => self.settle(dataset, &target(node), desired),
            Duty::Discard => {
                if let Some((_, path)) = self.aside().remove(dataset) {
                    self.delete_aside(dataset, &path)?;
                    log::info!("dataset {dataset}: deleted; its copy set aside is gone too");
                }
                Ok(())
            }
        }
    }

    fn pre_copy(&self, dataset: &DatasetId, to: &Target<'_>) -> anyhow::Result<()> {
        let theirs = self.willing(dataset, to)?;
        let volume = self.volume(dataset)?;
        self.push_snapshot(dataset, to, Phase::PreCopy, &volume, &theirs)?;
        Ok(())
    }

    /// Sends the whole volume first if the receiver has nothing of it, sets it aside, and
    /// finishes.
    fn hand_off(&self, dataset: &DatasetId, to: &Target<'_>) -> anyhow::Result<()> {
        let theirs = self.willing(dataset, to)?;
        let volume = self.volume(dataset)?;
        let ours = held(&complete(&self.pool, dataset)?);
        if latest_common(&ours, &received(&theirs)).is_none() {
            self.push_snapshot(dataset, to, Phase::PreCopy, &volume, &theirs)?;
        }
        let mounts = MountTable::read().context("cannot read the mount table")?;
        if let Some(at) = mount_showing(self.pool.root(), &volume, &mounts) {
            bail!("{} is still mounted at {}; the handoff waits", volume.display(), at.display());
        }
        let directory = self.aside_root().join(to.node.to_string());
        fs::create_dir_all(&directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
        let aside = directory.join(volume.file_name().context("a volume without a name")?);
        no_replace::rename(&volume, &aside).with_context(|| {
            format!("cannot set {} aside as {}", volume.display(), aside.display())
        })?;
        sync(&self.pool)?;
        log::info!("dataset {dataset}: set aside for its handoff to node {}", to.node);
        self.finish(dataset, to)
    }

    /// Sends the last difference of the volume set aside, has the receiver make its volume of
    /// it, and deletes ours once it did.
    fn finish(&self, dataset: &DatasetId, to: &Target<'_>) -> anyhow::Result<()> {
        self.progress(dataset, |push| push.phase = TransferPhase::Handoff);
        let (_, aside) = self.aside().remove(dataset).context("no volume set aside")?;
        let theirs = self.peers.holding(to.node, to.address, dataset)?;
        let snapshots = complete(&self.pool, dataset)?;
        if made_of_ours(&theirs, &snapshots) {
            return self.handed_off(dataset, to, &aside);
        }
        if let Some(refusal) = theirs.refuses {
            bail!("node {} does not take it: {refusal}", to.node);
        }
        let recorded = self.pushes().get(dataset).and_then(|push| push.last);
        let last = match snapshots.iter().find(|s| Some(s.generation) == recorded) {
            Some(last) => last.clone(),
            None => {
                let step = push_step(Phase::Final, &held(&snapshots), &received(&theirs));
                let last = take_snapshot(&self.pool, &aside, dataset, step.take)?;
                self.progress(dataset, |push| push.last = Some(step.take));
                last
            }
        };
        let origin = last.held().origin;
        if !theirs.snapshots.iter().any(|s| s.origin == origin) {
            let ours = held(&complete(&self.pool, dataset)?);
            let parent = latest_common(&ours, &received(&theirs));
            let parent = snapshots.iter().find(|s| Some(s.generation) == parent);
            self.send(dataset, to, TransferPhase::Handoff, &last, parent)?;
        }
        let theirs = self.peers.promote(to.node, to.address, dataset, &Promote { origin })?;
        if theirs.volume.and_then(|v| v.promoted_from) != Some(origin) {
            bail!("node {} did not make its volume of our last snapshot", to.node);
        }
        self.handed_off(dataset, to, &aside)
    }

    fn handed_off(&self, dataset: &DatasetId, to: &Target<'_>, aside: &Path) -> anyhow::Result<()> {
        self.delete_aside(dataset, aside)?;
        log::info!("dataset {dataset}: handed off to node {}; deleted here", to.node);
        Ok(())
    }

    /// Asks the node a volume was set aside for what it did, and acts on its [`fate`].
    fn settle(
        &self,
        dataset: &DatasetId,
        target: &Target<'_>,
        desired: &AgentConfiguration,
    ) -> anyhow::Result<()> {
        let (_, aside) = self.aside().remove(dataset).context("no volume set aside")?;
        let theirs = self.peers.holding(target.node, target.address, dataset)?;
        let ours: Vec<Uuid> =
            held(&complete(&self.pool, dataset)?).iter().map(|h| h.origin).collect();
        let name = aside.file_name().context("a volume without a name")?.to_owned();
        match fate(desired, dataset, target.node, &theirs, &ours) {
            Fate::Delete => self.handed_off(dataset, target, &aside),
            Fate::Restore => {
                let volume = self.pool.volumes().join(&name);
                no_replace::rename(&aside, &volume)
                    .with_context(|| format!("cannot restore {}", volume.display()))?;
                sync(&self.pool)?;
                log::info!(
                    "dataset {dataset}: node {} never took it, and it is wanted here: restored",
                    target.node
                );
                Ok(())
            }
            Fate::Retarget(node) => {
                let directory = self.aside_root().join(node.to_string());
                fs::create_dir_all(&directory)?;
                no_replace::rename(&aside, &directory.join(&name))?;
                sync(&self.pool)?;
                log::info!("dataset {dataset}: now handed off to node {node} instead");
                Ok(())
            }
            Fate::Keep(reason) => bail!(reason),
        }
    }

    /// What the receiver holds, if it takes a push from us.
    fn willing(&self, dataset: &DatasetId, to: &Target<'_>) -> anyhow::Result<Holding> {
        let theirs = self.peers.holding(to.node, to.address, dataset)?;
        if theirs.volume.is_some() {
            bail!(
                "node {} has a volume of dataset {dataset} already; this node's is kept",
                to.node
            );
        }
        if let Some(refusal) = theirs.refuses {
            bail!("node {} does not take it: {refusal}", to.node);
        }
        Ok(theirs)
    }

    /// Takes the next snapshot of `volume` and sends it, all or its difference from the newest
    /// snapshot the receiver holds; then deletes the snapshots this push no longer needs.
    fn push_snapshot(
        &self,
        dataset: &DatasetId,
        to: &Target<'_>,
        phase: Phase,
        volume: &Path,
        theirs: &Holding,
    ) -> anyhow::Result<(Snapshot, Holding)> {
        let snapshots = complete(&self.pool, dataset)?;
        let step = push_step(phase, &held(&snapshots), &received(theirs));
        let snapshot = take_snapshot(&self.pool, volume, dataset, step.take)?;
        let parent = match step.send {
            Send::Incremental { parent, .. } => snapshots.iter().find(|s| s.generation == parent),
            Send::Full { .. } | Send::Nothing => None,
        };
        let shown = match phase {
            Phase::PreCopy => TransferPhase::PreCopy,
            Phase::Final => TransferPhase::Handoff,
        };
        let theirs = self.send(dataset, to, shown, &snapshot, parent)?;
        let now = complete(&self.pool, dataset)?;
        for generation in deletable(&held(&now), &received(&theirs), Handoff::InProgress) {
            if let Some(old) = now.iter().find(|s| s.generation == generation) {
                remove_snapshot(old)?;
            }
        }
        Ok((snapshot, theirs))
    }

    /// Streams `snapshot` (or its difference from `parent`) to the receiver, then its digest.
    fn send(
        &self,
        dataset: &DatasetId,
        to: &Target<'_>,
        phase: TransferPhase,
        snapshot: &Snapshot,
        parent: Option<&Snapshot>,
    ) -> anyhow::Result<Holding> {
        let expected = estimate(snapshot, parent).ok();
        self.progress(dataset, |push| {
            (push.phase, push.sent, push.estimate) = (phase, 0, expected)
        });
        // The stream's time limit goes by what it may carry: the estimate, or the volume.
        let most = expected.unwrap_or_default().max(self.size_of(dataset).unwrap_or_default());
        let (reader, mut writer) = io::pipe()?;
        let started = Instant::now();
        let (answer, sent) = std::thread::scope(|scope| {
            let sender = scope.spawn(move || {
                let progress = |bytes| self.progress(dataset, |push| push.sent = bytes);
                let sent = send(snapshot, parent, &mut writer, progress)?;
                writer.write_all(&sent.digest.0).map_err(|source| super::TransferError::Write {
                    snapshot: snapshot.path.clone(),
                    bytes: sent.bytes,
                    source,
                })?;
                Ok::<_, super::TransferError>(sent)
            });
            let answer = self.peers.push(to.node, to.address, dataset, reader, most);
            let sent = sender.join().unwrap_or_else(|_| {
                Err(super::TransferError::Io(flocker_host::PathError::new(
                    "send",
                    &snapshot.path,
                    io::Error::other("the sending thread panicked"),
                )))
            });
            (answer, sent)
        });
        let (theirs, sent) = match (answer, sent) {
            (Ok(theirs), Ok(sent)) => (theirs, sent),
            (Err(refused @ crate::peer::client::PeerError::Refused { .. }), _) => {
                return Err(refused.into());
            }
            (_, Err(error)) => return Err(error.into()),
            (Err(error), Ok(_)) => return Err(error.into()),
        };
        let seconds = started.elapsed().as_secs_f64();
        let bytes = sent.bytes;
        log::info!(
            "dataset {dataset}: sent snapshot {} to node {} ({phase}, {} in {seconds:.2} s)",
            snapshot.generation,
            to.node,
            flocker_api::units::binary_size(bytes),
        );
        Ok(theirs)
    }

    /// The size of the dataset's volume here (in `volumes/` or set aside), from its name.
    fn size_of(&self, dataset: &DatasetId) -> Option<u64> {
        let path = match self.volume(dataset) {
            Ok(path) => path,
            Err(_) => self.aside().remove(dataset)?.1,
        };
        Some(path.file_name()?.to_str().and_then(parse_name)?.1)
    }

    /// The dataset's volume in the pool.
    fn volume(&self, dataset: &DatasetId) -> anyhow::Result<PathBuf> {
        let volume = self.pool.volume_of(dataset)?;
        let volumes = self.pool.volumes();
        volume.with_context(|| format!("no volume of dataset {dataset} in {}", volumes.display()))
    }

    fn delete_aside(&self, dataset: &DatasetId, aside: &Path) -> anyhow::Result<()> {
        delete_subvolume(aside)?;
        if let Some(directory) = aside.parent() {
            let _ = fs::remove_dir(directory); // only if empty: others may be set aside there
        }
        sync(&self.pool)?;
        if let Err(error) = remove_all(&self.pool, dataset) {
            log::warn!("dataset {dataset}: its snapshots stay for now: {error}");
        }
        Ok(())
    }

    /// Deletes the snapshots of datasets no push involves any more (a push that ended, or
    /// one called off), at most every [`CLEANUP_EVERY`].
    fn clean_up(&self, desired: &AgentConfiguration, duties: &BTreeMap<DatasetId, Duty>) {
        {
            let mut cleaned = self.cleaned.lock().unwrap_or_else(PoisonError::into_inner);
            if cleaned.is_some_and(|at| at.elapsed() < CLEANUP_EVERY) {
                return;
            }
            *cleaned = Some(Instant::now());
        }
        let running: BTreeSet<DatasetId> =
            self.pushes().iter().filter(|(_, p)| p.running).map(|(id, _)| *id).collect();
        let Ok(datasets) = datasets_with_snapshots(&self.pool) else { return };
        for dataset in datasets {
            let needed = duties.contains_key(&dataset)
                || running.contains(&dataset)
                || desired.pushes.contains_key(&dataset)
                || desired.arriving.contains_key(&dataset);
            if needed {
                continue;
            }
            match remove_all(&self.pool, &dataset) {
                Ok(()) => log::info!("dataset {dataset}: no push needs its snapshots; deleted"),
                Err(super::TransferError::Busy { .. }) => {}
                Err(error) => log::warn!("dataset {dataset}: cannot delete its snapshots: {error}"),
            }
        }
    }
}

/// The node a push goes to, and where it takes pushes.
struct Target<'a> {
    node: NodeUuid,
    address: &'a str,
}

fn held(snapshots: &[Snapshot]) -> Vec<Held> {
    snapshots.iter().map(Snapshot::held).collect()
}

/// What the receiver holds, as the plan reads it.
fn received(theirs: &Holding) -> Vec<Held> {
    let held = theirs.snapshots.iter();
    held.map(|s| Held { generation: Generation(s.name), origin: s.origin }).collect()
}

/// Whether the receiver's volume was made of one of our snapshots.
fn made_of_ours(theirs: &Holding, ours: &[Snapshot]) -> bool {
    let origin = theirs.volume.and_then(|volume| volume.promoted_from);
    origin.is_some_and(|origin| ours.iter().any(|s| s.held().origin == origin))
}
