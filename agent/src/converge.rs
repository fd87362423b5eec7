//! The convergence loop. A poller thread keeps one long-poll open on the control service and
//! hands each new configuration over; the loop discovers what the node has, reports it (with
//! the refusals of its last pass) when that changed, plans (pure) and acts, then looks again at
//! once after progress or a change in refusals, soon while another node releases a volume, with
//! a growing pause after a failure, and rarely when all is done.
//!
//! Until the first configuration arrives the loop touches nothing, and when the control service
//! goes quiet it keeps the last one: a node never unmounts because it lost its control service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{
    AgentConfiguration, BlockDeviceOwnership, ReportedDataset, ReportedProblem, ReportedTransfer,
    StateReport,
};
use flocker_api::{DatasetId, Era};

use crate::act::{Outcome, act};
use crate::backend::Backend;
use crate::calculate::{Have, Moves, Step, plan};
use crate::discover::{Discovery, discover};
use crate::link::{Backoff, Link};
use crate::metrics::{self, Poll};

/// How often a converged node looks again for changes made behind its back, and reports.
const IDLE: Duration = Duration::from_secs(10);

/// A dataset takes at most four steps (create, attach, format, mount); many datasets take more
/// passes, but a step that reports progress and changes nothing must not spin the loop.
const MOST_STEPS_IN_A_ROW: u32 = 100;

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

    /// Waits up to `timeout` for a new configuration; the latest one either way.
    fn wait(&self, timeout: Duration) -> Option<Arc<AgentConfiguration>> {
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
    pub fn run(self) -> ! {
        let mut failures = Backoff::new(Duration::from_millis(100), self.longest_pause);
        // Another node's detach takes milliseconds: look often at first, then less. Gently:
        // with doubling pauses a detach that ends just after a look is seen a whole pause
        // later (2, 4, 8, 16 ms…), which cost a move 5–10 ms; a look costs a fraction of one.
        let mut waiting = Backoff::growing(Duration::from_millis(2), Duration::from_secs(1), 1.25);
        let mut reported: Option<Reported> = None;
        let mut recorded = BTreeSet::new();
        let mut refusals = BTreeMap::new();
        let mut pause = Duration::ZERO;
        let mut streak = 0;
        loop {
            let desired = self.mailbox.wait(pause);
            metrics::global().pass();
            let discovery = match discover(self.backend.as_ref(), &self.mount_root) {
                Ok(discovery) => discovery,
                Err(error) => {
                    metrics::global().discovery_failed();
                    log::error!("cannot see what the node has: {:#}", anyhow::Error::new(error));
                    pause = failures.pause();
                    continue;
                }
            };
            self.report(&discovery, &refusals, &mut reported);
            let Some(desired) = desired else {
                pause = IDLE; // no configuration yet: touch nothing
                continue;
            };
            self.record_blockdevices(&desired, &discovery, &mut recorded);
            let last_refusals = refusals.clone();
            let (progressed, failed, wait) = self.carry_out(&desired, &discovery, &mut refusals);
            if let Some(transfers) = &self.transfers {
                transfers.outgoing.tend(&desired, &discovery);
            }
            streak = if progressed { streak + 1 } else { 0 };
            if streak == MOST_STEPS_IN_A_ROW + 1 {
                log::warn!(
                    "{streak} passes in a row changed something without converging; slowing down"
                );
            }
            // The next pass reports refusals that began or ended: make it now, since an isolator
            // waiting for the dataset fails as soon as the service shows its problem.
            let refusals_changed = refusals != last_refusals;
            pause = if (progressed && streak <= MOST_STEPS_IN_A_ROW) || refusals_changed {
                Duration::ZERO
            } else if progressed || failed {
                failures.pause()
            } else if wait {
                waiting.pause()
            } else if self.transfers.as_ref().is_some_and(|t| t.outgoing.busy()) {
                PROGRESS_EVERY
            } else {
                failures.reset();
                waiting.reset();
                IDLE.min(self.heartbeat)
            };
            // A push waiting to be tried again starts on time.
            if let Some(due) = self.transfers.as_ref().and_then(|t| t.outgoing.next_due()) {
                pause = pause.min(due.max(Duration::from_millis(1)));
            }
        }
    }

    /// Acts on the plan: whether anything progressed, failed, or waits on another node. A
    /// refusal is logged when it begins, not again on every pass while it lasts (`refusals`
    /// holds the messages of the last pass, and then of this one).
    fn carry_out(
        &self,
        desired: &AgentConfiguration,
        discovery: &Discovery,
        refusals: &mut BTreeMap<DatasetId, String>,
    ) -> (bool, bool, bool) {
        let (mut progressed, mut failed, mut wait) = (false, false, false);
        let last_refusals = std::mem::take(refusals);
        let moves = if self.backend.moves_by_copy() { Moves::ByCopy } else { Moves::ByAttach };
        let moving =
            |id: &DatasetId| self.transfers.as_ref().is_some_and(|t| t.outgoing.moving(id));
        let copy_failures =
            self.transfers.as_ref().map(|t| t.incoming.failures()).unwrap_or_default();
        for (id, step) in plan(desired, &discovery.haves(), moves) {
            if moving(&id) {
                continue; // its push has it
            }
            if step == Step::WaitForCopy
                && let Some(failure) = copy_failures.get(&id)
            {
                refusals.insert(id, failure.clone());
            }
            match &step {
                Step::Hold | Step::WaitForRelease | Step::KeepUntilPushed | Step::WaitForCopy => {}
                Step::Refuse(refusal) => {
                    let message = refusal.message(&id);
                    if last_refusals.get(&id) != Some(&message) {
                        log::error!("{message}; leaving it as it is");
                    }
                    refusals.insert(id, message);
                }
                _ => log::info!("dataset {id}: {step:?}"),
            }
            let found = discovery.found.get(&id);
            let acted = || act(self.backend.as_ref(), &self.mount_root, &id, &step, found);
            match metrics::global().step(&step, acted) {
                Ok(Outcome::Progressed) => progressed = true,
                Ok(Outcome::Waiting) => wait |= step == Step::WaitForRelease,
                Ok(Outcome::Refused) => {}
                Err(error) => {
                    log::error!("dataset {id}: {step:?} failed: {:#}", anyhow::Error::new(error));
                    failed = true;
                }
            }
        }
        (progressed, failed, wait)
    }

    /// Sends the node's state and its refusals when they changed, when the control service may
    /// have forgotten them (a new hello) or not have them (another instance answers now), or
    /// when the heartbeat is due.
    fn report(
        &self,
        discovery: &Discovery,
        refusals: &BTreeMap<DatasetId, String>,
        reported: &mut Option<Reported>,
    ) {
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
            return;
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
    }

    /// Tells the control service, once, which block device backs each of this node's datasets.
    fn record_blockdevices(
        &self,
        desired: &AgentConfiguration,
        discovery: &Discovery,
        recorded: &mut BTreeSet<DatasetId>,
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
            if let Err(error) = self.link.record_blockdevice(&record) {
                log::warn!("dataset {id}: the block device was not recorded: {error}");
            }
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
