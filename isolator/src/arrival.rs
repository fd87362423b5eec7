//! A volume arriving on this node from another node's own disk (the btrfs backend pushes it:
//! a pre-copy while the old node's task may still write, then a handoff), as a long wait for
//! the mount sees it in `/v1/state/transfers`: when to ask, what to log, and what the wait's
//! timeout says was last seen. Without I/O.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::TransferPhase;
use flocker_api::types::DatasetTransfer;
use flocker_api::{DatasetId, NodeUuid};

use crate::plan::Seen;

/// A wait shorter than this never asks for pushes: a warm prepare, whose volume is mounted at
/// the first or second look, pays nothing for them.
pub const ASK_AFTER: Duration = Duration::from_secs(1);
/// After that, pushes are asked for at most this often.
pub const ASK_EVERY: Duration = Duration::from_secs(1);
/// A push's progress is logged at most this often, and whenever its phase changes.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// A line for the log, without the volume's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Info(String),
    Warning(String),
}

/// What one wait has seen of the push of its dataset to its node.
#[derive(Debug)]
pub struct Watch {
    dataset: DatasetId,
    node: NodeUuid,
    started: Instant,
    /// False once the service answered 404: it has no `/v1/state/transfers`.
    served: bool,
    asked: Option<Instant>,
    /// The push the last answer showed; `None` if it showed none.
    last: Option<DatasetTransfer>,
    /// When progress was last logged, and in which phase.
    logged: Option<(Instant, TransferPhase)>,
    /// The problems already logged, each once.
    problems_said: BTreeSet<String>,
}

impl Watch {
    /// For a wait that began at `started`.
    pub fn new(dataset: DatasetId, node: NodeUuid, started: Instant) -> Self {
        Self {
            dataset,
            node,
            started,
            served: true,
            asked: None,
            last: None,
            logged: None,
            problems_said: BTreeSet::new(),
        }
    }

    /// Whether to ask for the pushes at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.served
            && now.saturating_duration_since(self.started) >= ASK_AFTER
            && self.asked.is_none_or(|asked| now.saturating_duration_since(asked) >= ASK_EVERY)
    }

    /// The service has no `/v1/state/transfers` (Flocker 1.x, or ours before it): never ask
    /// again.
    pub fn unserved(&mut self) {
        self.served = false;
    }

    /// Asking at `now` failed: what was seen before stands; ask again in [`ASK_EVERY`].
    pub fn failed(&mut self, now: Instant) {
        self.asked = Some(now);
    }

    /// The pushes the service answered with at `now`; what to log of them.
    pub fn answered(&mut self, transfers: &[DatasetTransfer], now: Instant) -> Vec<Line> {
        self.asked = Some(now);
        self.last = incoming(transfers, self.dataset, self.node).cloned();
        let Some(push) = &self.last else {
            self.logged = None; // the next push, if any, is logged at once
            return Vec::new();
        };
        let mut lines = Vec::new();
        let log_now = match self.logged {
            None => true,
            Some((at, phase)) => {
                phase != push.phase || now.saturating_duration_since(at) >= LOG_EVERY
            }
        };
        if log_now {
            self.logged = Some((now, push.phase));
            lines.push(Line::Info(format!(
                "dataset {}: being copied from node {} to this node: {} ({})",
                self.dataset,
                push.from,
                progress(push),
                push.phase
            )));
        }
        if let Some(problem) = &push.problem
            && self.problems_said.insert(problem.clone())
        {
            lines.push(Line::Warning(format!(
                "dataset {}: the copy from node {} to this node fails: {problem}",
                self.dataset, push.from
            )));
        }
        lines
    }

    /// The push of the dataset to this node that the last answer showed under way.
    pub fn last(&self) -> Option<&DatasetTransfer> {
        self.last.as_ref()
    }

    /// Whether the last answer shows the push further on than `before` (the answer before it):
    /// more bytes sent, or another phase. A wait goes on while its volume keeps coming.
    pub fn moved_on_from(&self, before: Option<&DatasetTransfer>) -> bool {
        match (before, &self.last) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(before), Some(now)) => now.phase != before.phase || now.sent > before.sent,
        }
    }
}

/// The push of `dataset` to `node` among `transfers`, if one is under way.
pub fn incoming(
    transfers: &[DatasetTransfer],
    dataset: DatasetId,
    node: NodeUuid,
) -> Option<&DatasetTransfer> {
    transfers.iter().find(|t| t.dataset_id == dataset && t.to == node)
}

/// What a wait that timed out says it last saw: the state's word where the dataset is reported
/// mounted here (but `path` is not `expected` here), else the push under way if there was one,
/// else where the state put it.
pub fn last_seen(seen: &Seen, push: Option<&DatasetTransfer>, expected: &str) -> String {
    match (seen, push) {
        (Seen::Here(path), _) => {
            format!("reported at {}, which is not {expected} here", path.display())
        }
        (_, Some(push)) => {
            let mut text = format!(
                "being copied from node {} ({}, {})",
                push.from,
                push.phase,
                progress(push)
            );
            if let Some(problem) = &push.problem {
                text.push_str(&format!(", failing: {problem}"));
            }
            text
        }
        (seen, None) => seen.describe(),
    }
}

/// `412 MiB of 1 GiB`, or `412 MiB` when the whole is not known.
fn progress(push: &DatasetTransfer) -> String {
    flocker_api::units::progress(push.sent, push.estimate)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn push(dataset: DatasetId, from: NodeUuid, to: NodeUuid) -> DatasetTransfer {
        DatasetTransfer {
            dataset_id: dataset,
            from,
            to,
            phase: TransferPhase::PreCopy,
            sent: 412 << 20,
            estimate: Some(1 << 30),
            problem: None,
        }
    }

    fn infos(lines: &[Line]) -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Info(text) => Some(text.as_str()),
                Line::Warning(_) => None,
            })
            .collect()
    }

    #[test]
    fn pushes_are_asked_for_only_after_a_second_then_once_a_second_and_never_without_the_extension()
    {
        let (dataset, node, t0) = (DatasetId::random(), NodeUuid::random(), Instant::now());
        let mut watch = Watch::new(dataset, node, t0);
        assert!(!watch.due(t0), "a warm prepare pays nothing");
        assert!(!watch.due(t0 + ms(999)));
        assert!(watch.due(t0 + ms(1000)));
        watch.answered(&[], t0 + ms(1000));
        assert!(!watch.due(t0 + ms(1500)));
        assert!(watch.due(t0 + ms(2000)));
        watch.failed(t0 + ms(2000));
        assert!(!watch.due(t0 + ms(2500)), "a failure is not asked again at once");
        assert!(watch.due(t0 + ms(3000)));
        watch.unserved();
        assert!(!watch.due(t0 + ms(60_000)), "a service without it is never asked again");
    }

    #[test]
    fn progress_is_logged_at_once_then_every_five_seconds_and_when_the_phase_changes() {
        let (dataset, a, here, t0) =
            (DatasetId::random(), NodeUuid::random(), NodeUuid::random(), Instant::now());
        let mut watch = Watch::new(dataset, here, t0);
        let pre_copy = push(dataset, a, here);
        let first = watch.answered(std::slice::from_ref(&pre_copy), t0 + ms(1000));
        assert_eq!(
            first,
            [Line::Info(format!(
                "dataset {dataset}: being copied from node {a} to this node: 412 MiB of 1 GiB (pre-copy)"
            ))]
        );
        for at in [2000, 3000, 4000, 5000] {
            assert_eq!(watch.answered(std::slice::from_ref(&pre_copy), t0 + ms(at)), []);
        }
        assert_eq!(infos(&watch.answered(std::slice::from_ref(&pre_copy), t0 + ms(6000))).len(), 1);
        let handoff = DatasetTransfer {
            phase: TransferPhase::Handoff,
            sent: 3 << 20,
            estimate: Some(4 << 20),
            ..pre_copy.clone()
        };
        let changed = watch.answered(std::slice::from_ref(&handoff), t0 + ms(7000));
        assert_eq!(
            infos(&changed),
            [format!(
                "dataset {dataset}: being copied from node {a} to this node: 3 MiB of 4 MiB (handoff)"
            )],
            "a new phase is logged at once"
        );
        assert_eq!(watch.answered(std::slice::from_ref(&handoff), t0 + ms(8000)), []);
    }

    #[test]
    fn only_a_push_of_this_dataset_to_this_node_counts_and_one_after_a_gap_is_logged_at_once() {
        let (dataset, a, here, t0) =
            (DatasetId::random(), NodeUuid::random(), NodeUuid::random(), Instant::now());
        let mut watch = Watch::new(dataset, here, t0);
        let others = [push(DatasetId::random(), a, here), push(dataset, here, a)];
        assert_eq!(watch.answered(&others, t0 + ms(1000)), []);
        assert!(watch.last().is_none());
        let mine = push(dataset, a, here);
        assert_eq!(infos(&watch.answered(std::slice::from_ref(&mine), t0 + ms(2000))).len(), 1);
        assert_eq!(watch.last(), Some(&mine));
        assert_eq!(watch.answered(&[], t0 + ms(3000)), []);
        assert!(watch.last().is_none(), "a push no longer listed is no longer under way");
        assert_eq!(infos(&watch.answered(std::slice::from_ref(&mine), t0 + ms(4000))).len(), 1);
    }

    #[test]
    fn a_problem_is_warned_of_once_per_distinct_text() {
        let (dataset, a, here, t0) =
            (DatasetId::random(), NodeUuid::random(), NodeUuid::random(), Instant::now());
        let mut watch = Watch::new(dataset, here, t0);
        let failing = |text: &str| DatasetTransfer {
            problem: Some(text.to_owned()),
            ..push(dataset, a, here)
        };
        let warnings = |lines: Vec<Line>| -> Vec<String> {
            let warning = |l: Line| match l {
                Line::Warning(text) => Some(text),
                Line::Info(_) => None,
            };
            lines.into_iter().filter_map(warning).collect()
        };
        let first = warnings(watch.answered(&[failing("connection refused")], t0 + ms(1000)));
        assert_eq!(
            first,
            [format!(
                "dataset {dataset}: the copy from node {a} to this node fails: connection refused"
            )]
        );
        assert!(
            warnings(watch.answered(&[failing("connection refused")], t0 + ms(2000))).is_empty()
        );
        assert_eq!(warnings(watch.answered(&[failing("no space left")], t0 + ms(3000))).len(), 1);
        assert!(
            warnings(watch.answered(&[failing("connection refused")], t0 + ms(9000))).is_empty(),
            "said once, even after another"
        );
    }

    #[test]
    fn the_timeout_says_what_was_last_seen() {
        let (dataset, a, here) = (DatasetId::random(), NodeUuid::random(), NodeUuid::random());
        let handoff = DatasetTransfer {
            phase: TransferPhase::Handoff,
            sent: 3 << 20,
            estimate: Some(4 << 20),
            ..push(dataset, a, here)
        };
        let elsewhere = Seen::Elsewhere { node: a, path: "/flocker/x".into() };
        assert_eq!(
            last_seen(&Seen::NotMounted, Some(&handoff), "a mount point"),
            format!("being copied from node {a} (handoff, 3 MiB of 4 MiB)")
        );
        let failing = DatasetTransfer {
            problem: Some("connection refused".into()),
            estimate: None,
            ..push(dataset, a, here)
        };
        assert_eq!(
            last_seen(&elsewhere, Some(&failing), "a mount point"),
            format!("being copied from node {a} (pre-copy, 412 MiB), failing: connection refused")
        );
        assert_eq!(
            last_seen(&elsewhere, None, "a mount point"),
            format!("still mounted on node {a} at /flocker/x (not yet released by that node)")
        );
        let here_but_not = Seen::Here(PathBuf::from("/flocker/y"));
        assert_eq!(
            last_seen(&here_but_not, Some(&handoff), "a directory"),
            "reported at /flocker/y, which is not a directory here"
        );
    }

    #[test]
    fn the_timeout_error_says_what_it_waited_for_and_what_was_last_seen() {
        let (dataset, a, here) = (DatasetId::random(), NodeUuid::random(), NodeUuid::random());
        let handoff = DatasetTransfer {
            phase: TransferPhase::Handoff,
            sent: 3 << 20,
            estimate: Some(4 << 20),
            ..push(dataset, a, here)
        };
        let error = crate::error::IsolatorError::NotMounted {
            id: "orders-db".parse().unwrap(),
            dataset,
            waited: Duration::from_millis(120_300),
            last_seen: last_seen(&Seen::NotMounted, Some(&handoff), "a mount point"),
        };
        assert_eq!(
            error.to_string(),
            format!(
                "volume 'orders-db' (dataset {dataset}) was not mounted here within 120 s; last \
                 seen: being copied from node {a} (handoff, 3 MiB of 4 MiB)"
            )
        );
    }

    #[test]
    fn a_push_moves_on_with_more_bytes_or_a_new_phase_only() {
        let (dataset, from, to) = (DatasetId::random(), NodeUuid::random(), NodeUuid::random());
        let started = Instant::now();
        let mut watch = Watch::new(dataset, to, started);
        assert!(!watch.moved_on_from(None), "no push at all");
        let mut first = push(dataset, from, to);
        first.sent = 10;
        watch.answered(std::slice::from_ref(&first), started);
        assert!(watch.moved_on_from(None), "a push appeared");
        assert!(!watch.moved_on_from(Some(&first)), "the same bytes");
        let mut more = first.clone();
        more.sent = 11;
        watch.answered(std::slice::from_ref(&more), started);
        assert!(watch.moved_on_from(Some(&first)));
        let mut handoff = more.clone();
        (handoff.phase, handoff.sent) = (TransferPhase::Handoff, 0);
        watch.answered(std::slice::from_ref(&handoff), started);
        assert!(watch.moved_on_from(Some(&more)), "a new phase starts its count again");
    }
}
