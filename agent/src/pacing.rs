//! When the loop may start a dataset's next step, and when it may send a report. Pure: the
//! clock comes in as an argument, so every rule is a unit test.
//!
//! - [`Pacing`]: each dataset keeps its own pace. A failed step is tried again after a pause
//!   that grows with each failure in a row, and a dataset that keeps "progressing" without
//!   getting anywhere is slowed down the same way; neither holds back the other datasets.
//! - [`ReportBudget`]: a crowd of volumes becoming ready one after another would send a report
//!   for each; a few reports carrying several datasets each tell the control service the same.
//!   A token bucket allows a short burst (one volume's create, attach and mount are reported at
//!   once, as before) and then one report per [`REPORT_EVERY`], each carrying every change
//!   since the last.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flocker_api::DatasetId;

/// A dataset takes at most four steps in a row (create, attach, format, mount; or unmount,
/// detach, destroy); more than this means a step reports progress and changes nothing.
const MOST_STEPS_IN_A_ROW: u32 = 8;

/// The first pause after a failed step; it doubles with each failure in a row.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// How many reports may go out back to back.
const REPORT_BURST: u32 = 4;

/// Once the burst is spent, one report this often, carrying every change since the last.
pub const REPORT_EVERY: Duration = Duration::from_millis(20);

/// One dataset's pace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Pace {
    failures: u32,
    in_a_row: u32,
    not_before: Option<Instant>,
}

/// The pace of every dataset that has taken a step lately.
#[derive(Debug, Clone)]
pub struct Pacing {
    longest: Duration,
    datasets: BTreeMap<DatasetId, Pace>,
}

impl Pacing {
    /// `longest`: the longest pause after failures.
    pub fn new(longest: Duration) -> Self {
        Self { longest, datasets: BTreeMap::new() }
    }

    /// Whether `dataset` may start a step at `now`.
    pub fn due(&self, dataset: &DatasetId, now: Instant) -> bool {
        let not_before = self.datasets.get(dataset).and_then(|pace| pace.not_before);
        not_before.is_none_or(|at| now >= at)
    }

    /// A step of `dataset` changed something. True when that made one step too many in a row:
    /// the dataset is slowed down from now on, and the caller says so.
    pub fn progressed(&mut self, dataset: &DatasetId, now: Instant) -> bool {
        let longest = self.longest;
        let pace = self.datasets.entry(*dataset).or_default();
        pace.in_a_row += 1;
        pace.failures = 0;
        let beyond = pace.in_a_row.saturating_sub(MOST_STEPS_IN_A_ROW);
        pace.not_before = (beyond > 0).then(|| now + pause_after(beyond, longest));
        beyond == 1
    }

    /// A step of `dataset` failed: its next waits, longer after each failure in a row.
    pub fn failed(&mut self, dataset: &DatasetId, now: Instant) {
        let longest = self.longest;
        let pace = self.datasets.entry(*dataset).or_default();
        pace.failures += 1;
        pace.not_before = Some(now + pause_after(pace.failures, longest));
    }

    /// Forgets every dataset for which `active` is false: it reached its goal or waits for
    /// something else, and starts afresh when it has steps to take again.
    pub fn forget_all_but(&mut self, mut active: impl FnMut(&DatasetId) -> bool) {
        self.datasets.retain(|id, _| active(id));
    }

    /// How long until the next dataset held back at `now` may start a step.
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        let held = self.datasets.values().filter_map(|pace| pace.not_before);
        held.filter(|at| *at > now).min().map(|at| at - now)
    }
}

/// The `n`th pause in a row (from 1): doubling from [`FIRST_RETRY`] up to `longest`.
fn pause_after(n: u32, longest: Duration) -> Duration {
    FIRST_RETRY.saturating_mul(1 << n.saturating_sub(1).min(16)).min(longest)
}

/// A token bucket for state reports: [`REPORT_BURST`] back to back, then one per
/// [`REPORT_EVERY`].
#[derive(Debug, Clone)]
pub struct ReportBudget {
    tokens: u32,
    /// When the bucket last gained a token, or was last full.
    refilled: Instant,
}

impl ReportBudget {
    pub fn new(now: Instant) -> Self {
        Self { tokens: REPORT_BURST, refilled: now }
    }

    /// Takes a report's token: `Ok` if one may go at `now`, otherwise how long until one may.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens == 0 {
            return Err((self.refilled + REPORT_EVERY).saturating_duration_since(now));
        }
        self.tokens -= 1;
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        let gained = (elapsed.as_nanos() / REPORT_EVERY.as_nanos()).min(REPORT_BURST.into());
        // At most REPORT_BURST: the cast cannot truncate.
        let gained = gained as u32;
        if gained == 0 {
            return;
        }
        self.tokens = (self.tokens + gained).min(REPORT_BURST);
        self.refilled =
            if self.tokens == REPORT_BURST { now } else { self.refilled + REPORT_EVERY * gained };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGEST: Duration = Duration::from_secs(30);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_failed_step_is_tried_again_after_a_pause_that_doubles_and_other_datasets_wait_not() {
        let (failing, other) = (DatasetId::random(), DatasetId::random());
        let mut pacing = Pacing::new(LONGEST);
        let now = Instant::now();
        pacing.failed(&failing, now);
        assert!(!pacing.due(&failing, now + ms(99)));
        assert!(pacing.due(&failing, now + ms(100)));
        assert_eq!(pacing.next_due(now + ms(100)), None, "due already: nothing to wait for");
        assert!(pacing.due(&other, now));
        assert_eq!(pacing.next_due(now), Some(ms(100)));
        pacing.failed(&failing, now);
        assert_eq!(pacing.next_due(now), Some(ms(200)));
        pacing.progressed(&failing, now);
        assert!(pacing.due(&failing, now));
        assert_eq!(pacing.next_due(now), None);
    }

    #[test]
    fn the_pause_after_failures_stops_growing_at_the_longest() {
        let dataset = DatasetId::random();
        let mut pacing = Pacing::new(ms(500));
        let now = Instant::now();
        for _ in 0..40 {
            pacing.failed(&dataset, now);
        }
        assert_eq!(pacing.next_due(now), Some(ms(500)));
    }

    #[test]
    fn a_dataset_that_keeps_progressing_without_end_is_slowed_down_and_said_once() {
        let dataset = DatasetId::random();
        let mut pacing = Pacing::new(LONGEST);
        let now = Instant::now();
        let said: Vec<bool> = (0..12).map(|_| pacing.progressed(&dataset, now)).collect();
        assert_eq!(said.iter().filter(|s| **s).count(), 1);
        assert!(said[MOST_STEPS_IN_A_ROW as usize]);
        assert!(!pacing.due(&dataset, now));
    }

    #[test]
    fn a_dataset_that_reached_its_goal_starts_afresh() {
        let dataset = DatasetId::random();
        let mut pacing = Pacing::new(LONGEST);
        let now = Instant::now();
        for _ in 0..MOST_STEPS_IN_A_ROW {
            pacing.progressed(&dataset, now);
        }
        pacing.forget_all_but(|_| false);
        assert!(!pacing.progressed(&dataset, now));
        assert!(pacing.due(&dataset, now));
    }

    #[test]
    fn reports_go_at_once_in_a_short_burst_then_one_per_period() {
        let now = Instant::now();
        let mut budget = ReportBudget::new(now);
        for _ in 0..REPORT_BURST {
            assert_eq!(budget.take(now), Ok(()));
        }
        assert_eq!(budget.take(now), Err(REPORT_EVERY));
        assert_eq!(budget.take(now + ms(5)), Err(REPORT_EVERY - ms(5)));
        assert_eq!(budget.take(now + REPORT_EVERY), Ok(()));
        assert!(budget.take(now + REPORT_EVERY).is_err());
    }

    #[test]
    fn a_quiet_while_fills_the_budget_again() {
        let now = Instant::now();
        let mut budget = ReportBudget::new(now);
        for _ in 0..REPORT_BURST {
            assert_eq!(budget.take(now), Ok(()));
        }
        let later = now + REPORT_EVERY * 100;
        for _ in 0..REPORT_BURST {
            assert_eq!(budget.take(later), Ok(()));
        }
        assert!(budget.take(later).is_err());
    }
}
