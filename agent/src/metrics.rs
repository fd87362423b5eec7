//! The agent's Prometheus metrics, served when `--metrics-address` (or `agent.metrics_address`
//! in `agent.yml`) is given: the steps it takes and how long they take, its passes, its state
//! reports, its configuration polls, and its pushes (btrfs).
//!
//! One registry for the process ([`global`]), as Prometheus clients usually keep one: an agent
//! is a process, and what is counted happens on threads that share nothing else (the loop, the
//! poller, each push), so every place that counts takes one line and no plumbing. Tests make
//! their own [`Metrics`]. Every label value comes from a fixed set.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use flocker_api::ClientError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::calculate::Step;
use crate::transfer::duties::Duty;

/// Step durations, in seconds: a mount takes milliseconds, a format or a large create seconds.
const STEP_BUCKETS: [f64; 13] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// The metrics of this process's agent.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// What a configuration poll came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// A configuration other than the last one: handed to the loop.
    New,
    /// The same one, after the wait.
    Same,
    /// No answer, or an error.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepKind {
    step: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DutyLabels {
    duty: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DutyOutcomeLabels {
    duty: &'static str,
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    passes: Counter,
    discovery_failures: Counter,
    steps: Family<StepLabels, Counter>,
    step_duration: Family<StepKind, Histogram, fn() -> Histogram>,
    reports: Family<OutcomeLabels, Counter>,
    polls: Family<OutcomeLabels, Counter>,
    pushes_started: Family<DutyLabels, Counter>,
    pushes_finished: Family<DutyOutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::with_prefix("flocker_agent"),
            passes: Counter::default(),
            discovery_failures: Counter::default(),
            steps: Family::default(),
            step_duration: Family::new_with_constructor(|| Histogram::new(STEP_BUCKETS)),
            reports: Family::default(),
            polls: Family::default(),
            pushes_started: Family::default(),
            pushes_finished: Family::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Self {
        let registry = &mut self.registry;
        registry.register(
            "convergence_passes",
            "Passes of the convergence loop: each looks at the node, reports, and acts",
            self.passes.clone(),
        );
        registry.register(
            "discovery_failures",
            "Passes that could not see what the node has",
            self.discovery_failures.clone(),
        );
        registry.register(
            "steps",
            "Steps taken on a volume, by step (create, attach, format, mount, unmount, detach, \
             destroy) and outcome (ok, failed)",
            self.steps.clone(),
        );
        registry.register_with_unit(
            "step_duration",
            "Time a step took, by step",
            Unit::Seconds,
            self.step_duration.clone(),
        );
        registry.register(
            "state_reports",
            "State reports, by outcome: sent, refused (4xx), failed (not delivered)",
            self.reports.clone(),
        );
        registry.register(
            "configuration_polls",
            "Configuration polls, by outcome: new (a changed configuration), same, failed",
            self.polls.clone(),
        );
        registry.register(
            "pushes_started",
            "Pushes of volumes to other nodes started (btrfs), by duty",
            self.pushes_started.clone(),
        );
        registry.register(
            "pushes_finished",
            "Pushes of volumes to other nodes ended (btrfs), by duty and outcome (ok, failed)",
            self.pushes_finished.clone(),
        );
        self
    }

    /// A step was carried out, in `took`: counted by outcome and timed, if it changes something
    /// (waiting, holding and refusing are not steps taken).
    pub fn step_finished(&self, step: &Step, ok: bool, took: Duration) {
        let Some(name) = step_name(step) else { return };
        self.step_duration.get_or_create(&StepKind { step: name }).observe(took.as_secs_f64());
        let outcome = if ok { "ok" } else { "failed" };
        self.steps.get_or_create(&StepLabels { step: name, outcome }).inc();
    }

    /// A pass of the convergence loop began.
    pub fn pass(&self) {
        self.passes.inc();
    }

    pub fn discovery_failed(&self) {
        self.discovery_failures.inc();
    }

    /// A state report was sent, with this result.
    pub fn report(&self, sent: &Result<(), ClientError>) {
        let outcome = match sent {
            Ok(()) => "sent",
            Err(error) if error.status().is_some_and(|status| (400..500).contains(&status)) => {
                "refused"
            }
            Err(_) => "failed",
        };
        self.reports.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn poll(&self, poll: Poll) {
        let outcome = match poll {
            Poll::New => "new",
            Poll::Same => "same",
            Poll::Failed => "failed",
        };
        self.polls.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn push_started(&self, duty: &Duty) {
        self.pushes_started.get_or_create(&DutyLabels { duty: duty_name(duty) }).inc();
    }

    pub fn push_finished(&self, duty: &Duty, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        let labels = DutyOutcomeLabels { duty: duty_name(duty), outcome };
        self.pushes_finished.get_or_create(&labels).inc();
    }

    /// The metrics as they are now, in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, fmt::Error> {
        flocker_metrics::encode(&self.registry)
    }
}

/// The label of a step that changes something; `None` for the others.
fn step_name(step: &Step) -> Option<&'static str> {
    match step {
        Step::Create { .. } => Some("create"),
        Step::Attach => Some("attach"),
        Step::Format => Some("format"),
        Step::Mount => Some("mount"),
        Step::Unmount => Some("unmount"),
        Step::Detach => Some("detach"),
        Step::Destroy => Some("destroy"),
        Step::WaitForRelease
        | Step::Hold
        | Step::KeepUntilPushed
        | Step::WaitForCopy
        | Step::Refuse(_)
        | Step::Done => None,
    }
}

fn duty_name(duty: &Duty) -> &'static str {
    match duty {
        Duty::PreCopy { .. } => "pre_copy",
        Duty::HandOff { .. } => "hand_off",
        Duty::Finish { .. } => "finish",
        Duty::Settle { .. } => "settle",
        Duty::Discard => "discard",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_line(metrics: &Metrics, line: &str) -> bool {
        metrics.render().unwrap().lines().any(|l| l == line)
    }

    #[test]
    fn a_step_that_acts_is_counted_by_outcome_and_timed_and_a_wait_is_not() {
        let metrics = Metrics::new();
        metrics.step_finished(&Step::Mount, true, Duration::from_millis(3));
        metrics.step_finished(&Step::Mount, false, Duration::from_millis(1));
        metrics.step_finished(&Step::WaitForRelease, true, Duration::ZERO);
        for line in [
            "flocker_agent_steps_total{step=\"mount\",outcome=\"ok\"} 1",
            "flocker_agent_steps_total{step=\"mount\",outcome=\"failed\"} 1",
            "flocker_agent_step_duration_seconds_count{step=\"mount\"} 2",
        ] {
            assert!(has_line(&metrics, line), "no {line} in\n{}", metrics.render().unwrap());
        }
        assert!(!metrics.render().unwrap().contains("wait"), "{}", metrics.render().unwrap());
    }

    #[test]
    fn pushes_are_counted_by_duty_and_outcome() {
        let metrics = Metrics::new();
        let to = flocker_api::NodeUuid::random();
        metrics.push_started(&Duty::HandOff { to });
        metrics.push_finished(&Duty::HandOff { to }, false);
        assert!(has_line(&metrics, "flocker_agent_pushes_started_total{duty=\"hand_off\"} 1"));
        let failed = "flocker_agent_pushes_finished_total{duty=\"hand_off\",outcome=\"failed\"} 1";
        assert!(has_line(&metrics, failed), "{}", metrics.render().unwrap());
    }
}
