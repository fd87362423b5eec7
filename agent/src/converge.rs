//! The convergence loop. A poller thread keeps one long-poll open on the control service and
//! hands each new configuration over; the loop discovers what the node has, plans (pure), gives
//! the steps that change the node to a few workers ([`crate::steps`]), several datasets at once,
//! and reports what it saw, with its refusals, when that changed. Each finished step wakes the
//! loop, which looks again and plans that dataset's next step. It also looks again soon while
//! another node releases a volume, after a growing pause for a dataset whose step failed (the
//! others go on meanwhile), and rarely when all is done. Reports follow changes as they come, a
//! few at most in a burst ([`ReportBudget`]).
//!
//! Until the first configuration arrives the loop touches nothing, and when the control service
//! goes quiet it keeps the last one: a node never unmounts because it lost its control service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use flocker_api::agent_protocol::{
    AgentConfiguration, BlockDeviceOwnership, ReportedDataset, ReportedProblem, ReportedTransfer,
    StateReport,
};
use flocker_api::{DatasetId, Era};

use crate::act::Outcome;
use crate::backend::Backend;
use crate::calculate::{Have, Moves, Step, plan};
use crate::discover::{Discovery, discover};
use crate::link::{Backoff, Link};
use crate::metrics::{self, Poll};
use crate::pacing::{Pacing, ReportBudget};
use crate::steps::{Finished, Workers};

/// How often a converged node looks again for changes made behind its back, and reports.
const IDLE: Duration = Duration::from_secs(10);

/// The latest configuration, handed from the poller to the loop.
#[derive(Default)]
pub struct Mailbox {
    latest: Mutex<(Option<Arc<AgentConfiguration>>, bool)>,
    arrived: Condvar,
}

impl Mailbox {
    pub fn deliver(&self, configuration: AgentConfiguration) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        *latest = (Some(Arc::new(configuration)), true);
        self.arrived.notify_all();
    }

    /// Wakes the loop without a new configuration: something it looks at changed (a push ended,
    /// a volume arrived).
    pub fn poke(&self) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.1 = true;
        self.arrived.notify_all();
    }

    /// The latest configuration, without waiting.
    pub fn latest(&self) -> Option<Arc<AgentConfiguration>> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).0.clone()
    }

    /// Waits up to `timeout` for a new configuration or a poke; the latest configuration
    /// either way.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<Arc<AgentConfiguration>> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut latest, _) = self
            .arrived
            .wait_timeout_while(latest, timeout, |(_, new)| !*new)
            .unwrap_or_else(PoisonError::into_inner);
        latest.1 = false;
        latest.0.clone()
    }
}

/// Keeps a long-poll open and delivers every new configuration. Never returns.
pub fn poll_forever(link: Link, mailbox: Arc<Mailbox>, wait: Duration, longest_pause: Duration) {
    let mut etag: Option<String> = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), longest_pause);
    let mut failing = false;
    loop {
        match link.configuration(etag.as_deref(), wait) {
            Ok(configuration) => {
                if failing {
                    log::info!("the control service answers again");
                }
                failing = false;
                backoff.reset();
                let new = etag.as_deref() != Some(configuration.etag.as_str());
                metrics::global().poll(if new { Poll::New } else { Poll::Same });
                if new {
                    etag = Some(configuration.etag.clone());
                    mailbox.deliver(configuration);
                }
            }
            Err(error) => {
                metrics::global().poll(Poll::Failed);
                if !failing {
                    log::warn!(
                        "{:#}; the node stays as it is, retrying",
                        anyhow::Error::new(error)
                    );
                }
                failing = true;
                std::thread::sleep(backoff.pause());
            }
        }
    }
}

/// The last report that reached the control service.
struct Reported {
    datasets: Vec<ReportedDataset>,
    problems: Vec<ReportedProblem>,
    transfers: Vec<ReportedTransfer>,
    /// [`Link::hellos`] when it was sent.
    hellos: u64,
    /// The instance it reached: another may hold an older report of this node.
    instance: String,
    at: Instant,
}

pub struct Converger {
    pub backend: Box<dyn Backend>,
    pub mount_root: PathBuf,
    pub link: Link,
    pub era: Era,
    pub mailbox: Arc<Mailbox>,
    /// The longest pause after a failure.
    pub longest_pause: Duration,
    /// Report at least this often, even when nothing changed.
    pub heartbeat: Duration,
    /// Pushes of volumes to and from other nodes (btrfs).
    pub transfers: Option<crate::Transfers>,
}

/// While a push runs, its progress is reported this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl Converger {
    /// Runs the loop, its step workers and its recorder of block devices; returns only if
    /// they cannot start.
    pub fn run(self) -> anyhow::Result<()> {
        std::thread::scope(|scope| {
            let backend = self.backend.as_ref();
            let workers = Workers::start(scope, backend, &self.mount_root, &self.mailbox)
                .context("cannot start the threads that carry out steps")?;
            let (records, queue) = mpsc::channel();
            let link = self.link.clone();
            std::thread::Builder::new()
                .name("blockdevice-records".into())
                .spawn_scoped(scope, move || record_forever(&link, queue))
                .context("cannot start the thread that records block devices")?;
            self.converge(workers, records)
        })
    }

    /// Each pass: the steps that finished, a fresh look at the node, the next steps (given to
    /// workers before anything else, so none waits on the control service), then the report
    /// of what was seen with this pass's refusals.
    fn converge(&self, mut workers: Workers, records: Sender<BlockDeviceOwnership>) -> ! {
        let mut unseen = Backoff::new(Duration::from_millis(100), self.longest_pause);
        // Another node's detach takes milliseconds: look often at first, then less. Gently:
        // with doubling pauses a detach that ends just after a look is seen a whole pause
        // later (2, 4, 8, 16 ms…), which cost a move 5–10 ms; a look costs a fraction of one.
        let mut waiting = Backoff::growing(Duration::from_millis(2), Duration::from_secs(1), 1.25);
        let mut pacing = Pacing::new(self.longest_pause);
        let mut budget = ReportBudget::new(Instant::now());
        let mut reported: Option<Reported> = None;
        let mut recorded = BTreeSet::new();
        let mut refusals = BTreeMap::new();
        let mut pause = Duration::ZERO;
        loop {
            let desired = self.mailbox.wait(pause);
            metrics::global().pass();
            for finished in workers.finished() {
                self.step_finished(finished, &mut pacing);
            }
            let discovery = match discover(self.backend.as_ref(), &self.mount_root) {
                Ok(discovery) => discovery,
                Err(error) => {
                    metrics::global().discovery_failed();
                    log::error!("cannot see what the node has: {:#}", anyhow::Error::new(error));
                    pause = unseen.pause();
                    continue;
                }
            };
            unseen.reset();
            let Some(desired) = desired else {
                // No configuration yet: touch nothing.
                let held = self.report(&discovery, &refusals, &mut reported, &mut budget);
                pause = held.unwrap_or(IDLE).min(IDLE);
                continue;
            };
            let wait =
                self.carry_out(&desired, &discovery, &mut refusals, &mut workers, &mut pacing);
            if let Some(transfers) = &self.transfers {
                // A push never starts on a volume that a step is changing.
                let settled = discovery.without(|id| workers.is_busy(id));
                transfers.outgoing.tend(&desired, &settled);
            }
            // Refusals that began or ended go out now: an isolator waiting for the dataset
            // fails as soon as the service shows its problem.
            let report_held = self.report(&discovery, &refusals, &mut reported, &mut budget);
            self.record_blockdevices(&desired, &discovery, &mut recorded, &records);
            // A finished step wakes the loop by itself.
            pause = if wait {
                waiting.pause()
            } else if self.transfers.as_ref().is_some_and(|t| t.outgoing.busy()) {
                PROGRESS_EVERY
            } else {
                waiting.reset();
                IDLE.min(self.heartbeat)
            };
            // A dataset held back after a failure, a report held back, a push waiting to be tried
            // again: each starts on time.
            let push_due = self.transfers.as_ref().and_then(|t| t.outgoing.next_due());
            let due = [
                pacing.next_due(Instant::now()),
                report_held,
                push_due.map(|due| due.max(Duration::from_millis(1))),
            ];
            pause = due.into_iter().flatten().fold(pause, Duration::min);
        }
    }

    /// Gives the plan's steps that change the node to free workers, those that complete a
    /// dataset's way first (see [`Step::urgency`]), and deals with waits and refusals here. A
    /// dataset with a step under way, or pushed away, is left out whole: what discovery saw of it
    /// may be half-way through that step. Returns whether a dataset waits for another node. A
    /// refusal is logged when it begins, not again on every pass while it lasts (`refusals` holds
    /// the messages of the last pass, and then of this one).
    fn carry_out(
        &self,
        desired: &AgentConfiguration,
        discovery: &Discovery,
        refusals: &mut BTreeMap<DatasetId, String>,
        workers: &mut Workers,
        pacing: &mut Pacing,
    ) -> bool {
        let mut wait = false;
        let last_refusals = std::mem::take(refusals);
        let moves = if self.backend.moves_by_copy() { Moves::ByCopy } else { Moves::ByAttach };
        let moving =
            |id: &DatasetId| self.transfers.as_ref().is_some_and(|t| t.outgoing.moving(id));
        let copy_failures =
            self.transfers.as_ref().map(|t| t.incoming.failures()).unwrap_or_default();
        let mut steps = plan(desired, &discovery.haves(), moves);
        steps.sort_by_key(|(_, step)| step.urgency()); // stable: dataset order within a kind
        let stepping: BTreeSet<DatasetId> =
            steps.iter().filter(|(_, step)| step.changes_the_node()).map(|(id, _)| *id).collect();
        pacing.forget_all_but(|id| stepping.contains(id) || workers.is_busy(id));
        let now = Instant::now();
        for (id, step) in steps {
            if moving(&id) || workers.is_busy(&id) {
                continue; // its push or its step has it
            }
            if step == Step::WaitForCopy
                && let Some(failure) = copy_failures.get(&id)
            {
                refusals.insert(id, failure.clone());
            }
            match &step {
                Step::Refuse(refusal) => {
                    let message = refusal.message(&id);
                    if last_refusals.get(&id) != Some(&message) {
                        log::error!("{message}; leaving it as it is");
                    }
                    refusals.insert(id, message);
                }
                Step::WaitForRelease => wait = true,
                _ if !step.changes_the_node() => {}
                _ if !workers.has_room() || !pacing.due(&id, now) => {}
                _ => {
                    log::info!("dataset {id}: {step:?}");
                    workers.start_step(id, step, discovery.found.get(&id).cloned());
                }
            }
        }
        wait
    }

    /// A step came back from its worker. Every step ends here: its kind, what it came to and
    /// how long it took.
    fn step_finished(&self, finished: Finished, pacing: &mut Pacing) {
        let Finished { dataset_id: id, step, outcome, took } = finished;
        metrics::global().step_finished(&step, outcome.is_ok(), took);
        let now = Instant::now();
        match outcome {
            Ok(Outcome::Progressed) => {
                log::debug!("dataset {id}: {step:?} done in {took:?}");
                if pacing.progressed(&id, now) {
                    log::warn!(
                        "dataset {id}: many steps in a row changed something without converging; \
                         slowing down"
                    );
                }
            }
            // Waits and refusals stay with the loop; a worker gets neither.
            Ok(Outcome::Waiting | Outcome::Refused) => {}
            Err(error) => {
                log::error!("dataset {id}: {step:?} failed: {:#}", anyhow::Error::new(error));
                pacing.failed(&id, now);
            }
        }
    }

    /// Sends the node's state and its refusals when they changed, when the control service may
    /// have forgotten them (a new hello) or not have them (another instance answers now), or
    /// when the heartbeat is due — if the budget allows; otherwise how long until it does.
    fn report(
        &self,
        discovery: &Discovery,
        refusals: &BTreeMap<DatasetId, String>,
        reported: &mut Option<Reported>,
        budget: &mut ReportBudget,
    ) -> Option<Duration> {
        let mut datasets = discovery.report(&self.mount_root);
        let transfers = match &self.transfers {
            Some(transfers) => {
                datasets.extend(transfers.outgoing.reported());
                transfers.outgoing.transfers()
            }
            None => Vec::new(),
        };
        let problems: Vec<ReportedProblem> =
            refusals.iter().map(|(id, message)| ReportedProblem::new(*id, message)).collect();
        let due = reported.as_ref().is_none_or(|last| {
            last.datasets != datasets
                || last.problems != problems
                || (last.transfers != transfers && last.at.elapsed() >= PROGRESS_EVERY)
                || shape(&last.transfers) != shape(&transfers)
                || last.hellos != self.link.hellos()
                || last.instance != self.link.instance()
                || last.at.elapsed() >= self.heartbeat
        });
        if !due {
            return None;
        }
        if let Err(held) = budget.take(Instant::now()) {
            return Some(held);
        }
        let report = StateReport {
            era: self.era,
            datasets: datasets.clone(),
            problems: problems.clone(),
            transfers: transfers.clone(),
        };
        let sent = self.link.report(&report);
        metrics::global().report(&sent);
        match sent {
            Ok(()) => {
                let (hellos, instance, at) =
                    (self.link.hellos(), self.link.instance(), Instant::now());
                *reported = Some(Reported { datasets, problems, transfers, hellos, instance, at });
            }
            // Refused outright (4xx): the service will not take this report until something
            // changes, so say so; a service that cannot be reached the poller already says.
            Err(error) if error.status().is_some_and(|status| (400..500).contains(&status)) => {
                log::warn!(
                    "the control service refused the state report: {:#}",
                    anyhow::Error::new(error)
                );
            }
            Err(error) => log::debug!("state not reported: {error}"),
        }
        None
    }

    /// Tells the control service, once, which block device backs each of this node's datasets
    /// (through [`record_forever`]).
    fn record_blockdevices(
        &self,
        desired: &AgentConfiguration,
        discovery: &Discovery,
        recorded: &mut BTreeSet<DatasetId>,
        records: &Sender<BlockDeviceOwnership>,
    ) {
        for dataset in desired.datasets.iter().filter(|d| !d.deleted) {
            let id = dataset.dataset_id;
            let present = discovery.found.get(&id).is_some_and(|f| f.have != Have::Elsewhere);
            if !present || desired.blockdevice_ids.contains_key(&id) || !recorded.insert(id) {
                continue;
            }
            let record = BlockDeviceOwnership {
                dataset_id: id,
                blockdevice_id: self.backend.blockdevice_id(&id),
            };
            if records.send(record).is_err() {
                log::warn!("dataset {id}: the block device was not recorded: its thread ended");
            }
        }
    }
}

/// Sends the block-device records as they come, on a thread of its own: each is a durable
/// change on the control service, and a crowd of new volumes would otherwise hold the loop up
/// for as many round trips. The reports also tell the service which datasets have volumes, so
/// nothing waits for these records.
fn record_forever(link: &Link, records: Receiver<BlockDeviceOwnership>) {
    for record in records {
        if let Err(error) = link.record_blockdevice(&record) {
            let id = record.dataset_id;
            log::warn!("dataset {id}: the block device was not recorded: {error}");
        }
    }
}

/// What of the pushes a report must carry at once: which run, in which phase, and their
/// problems (progress alone waits for [`PROGRESS_EVERY`]).
fn shape(
    transfers: &[ReportedTransfer],
) -> Vec<(DatasetId, flocker_api::NodeUuid, String, Option<&str>)> {
    transfers
        .iter()
        .map(|t| (t.dataset_id, t.to, t.phase.to_string(), t.problem.as_deref()))
        .collect()
}
