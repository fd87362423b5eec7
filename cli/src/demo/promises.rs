//! The four promises the demo checks, each kept or broken with a reason, summed up at the end.

use std::path::PathBuf;
use std::time::Duration;

use crate::demo::machine::Leftovers;
use crate::demo::timeline::{WIDTH, say, wrap};

/// What promise 4 is judged on.
#[derive(Debug, Default)]
pub struct Aftermath {
    /// Found under the work directory once every process had been stopped.
    pub found: Leftovers,
    /// Still there after the demo let go of what it found and removed the directory.
    pub remaining: Leftovers,
    /// Why the directory could not be removed.
    pub removal_error: Option<String>,
    /// Set when `--keep` kept the directory.
    pub kept_at: Option<PathBuf>,
}

impl Aftermath {
    fn problem(&self) -> Option<String> {
        let found = self.found.describe();
        let mut remaining = self.remaining.describe();
        remaining.extend(self.removal_error.clone());
        match (found.is_empty(), remaining.is_empty()) {
            (true, true) => None,
            (false, true) => Some(format!(
                "left behind: {}; the demo let go of it on its way out",
                found.join(", ")
            )),
            (true, false) => Some(format!("still there: {}", remaining.join(", "))),
            (false, false) => Some(format!(
                "left behind: {}; still there: {}",
                found.join(", "),
                remaining.join(", ")
            )),
        }
    }

    fn all_clear(&self) -> String {
        let directory = match &self.kept_at {
            Some(_) => "is kept, as --keep asked",
            None => "is gone",
        };
        format!(
            "every process ended; no process, mount or loop device refers to the work directory, \
             which {directory}"
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    CreatedOnA,
    RefusedOnB,
    MovedToB,
    NothingLeft,
}

impl Promise {
    const ALL: [Promise; 4] =
        [Promise::CreatedOnA, Promise::RefusedOnB, Promise::MovedToB, Promise::NothingLeft];

    fn statement(self) -> &'static str {
        match self {
            Promise::CreatedOnA => {
                "the volume is created on first use, and task 1 writes to it on node A"
            }
            Promise::RefusedOnB => {
                "a task on node B is refused the volume while task 1 uses it on node A, with a reason naming node A"
            }
            Promise::MovedToB => {
                "the volume moves to node B, and task 2 reads there the same bytes task 1 wrote"
            }
            Promise::NothingLeft => {
                "nothing is left behind: no process, no mount, no loop device, no directory"
            }
        }
    }

    fn number(self) -> usize {
        self as usize + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Open,
    Kept(String),
    Broken(String),
}

#[derive(Debug)]
pub struct Promises {
    verdicts: [Verdict; 4],
}

impl Default for Promises {
    fn default() -> Self {
        Self { verdicts: std::array::from_fn(|_| Verdict::Open) }
    }
}

impl Promises {
    pub fn keep(&mut self, promise: Promise, how: impl Into<String>) {
        self.verdicts[promise as usize] = Verdict::Kept(how.into());
    }

    fn broken(&mut self, promise: Promise, why: String) {
        self.verdicts[promise as usize] = Verdict::Broken(why);
    }

    /// A step failed: the first promise not decided yet is the one it broke, since the story
    /// works through them in order.
    pub fn blame_first_open(&mut self, error: &anyhow::Error) {
        if let Some(open) = Promise::ALL.into_iter().find(|p| self.verdict_of(*p) == &Verdict::Open)
        {
            self.broken(open, format!("{error:#}"));
        }
    }

    /// Promise 4, once everything stopped and the work directory was removed: kept unless
    /// something was left, or a step broke it already.
    pub fn judge_aftermath(&mut self, aftermath: &Aftermath) {
        let promise = Promise::NothingLeft;
        let problem = aftermath.problem();
        match (self.verdict_of(promise).clone(), problem) {
            (Verdict::Broken(why), Some(problem)) => {
                self.broken(promise, format!("{why}; {problem}"))
            }
            (Verdict::Broken(_), None) => {}
            (_, Some(problem)) => self.broken(promise, problem),
            (_, None) => self.keep(promise, aftermath.all_clear()),
        }
    }

    fn verdict_of(&self, promise: Promise) -> &Verdict {
        &self.verdicts[promise as usize]
    }

    /// The verdict on each promise; after a failure, where the logs are (or how to keep them).
    pub fn print_summary(&self, elapsed: Duration, kept_at: Option<&PathBuf>) {
        say!();
        say!("Promises:");
        for promise in Promise::ALL {
            let (mark, how) = match self.verdict_of(promise) {
                Verdict::Kept(how) => ("✔", how.clone()),
                Verdict::Broken(why) => ("✘", why.clone()),
                Verdict::Open => ("✘", "not checked: the demo stopped before".to_owned()),
            };
            say!("  {mark} {}. {}", promise.number(), promise.statement());
            for line in wrap(&how, WIDTH - 7) {
                say!("       {line}");
            }
        }
        let kept = self.verdicts.iter().filter(|v| matches!(v, Verdict::Kept(_))).count();
        say!();
        say!("{kept} of {} promises kept, in {:.2} s.", Promise::ALL.len(), elapsed.as_secs_f64());
        if kept < Promise::ALL.len() {
            match kept_at {
                Some(path) => say!("The logs are in {}.", path.display()),
                None => {
                    say!("Run it again with --keep to keep the work directory and its logs.")
                }
            }
        }
    }

    /// An error naming the promises not kept, if any.
    pub fn verdict(&self) -> anyhow::Result<()> {
        let failed: Vec<String> = Promise::ALL
            .into_iter()
            .filter(|p| !matches!(self.verdict_of(*p), Verdict::Kept(_)))
            .map(|p| p.number().to_string())
            .collect();
        match failed.as_slice() {
            [] => Ok(()),
            [one] => anyhow::bail!("demo failed: promise {one} was not kept"),
            many => anyhow::bail!("demo failed: promises {} were not kept", many.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_breaks_the_first_open_promise_and_the_verdict_says_so() {
        let mut promises = Promises::default();
        promises.keep(Promise::CreatedOnA, "yes");
        promises.blame_first_open(&anyhow::anyhow!("no refusal"));
        assert_eq!(promises.verdicts[1], Verdict::Broken("no refusal".into()));
        promises.judge_aftermath(&Aftermath::default());
        let error = promises.verdict().unwrap_err().to_string();
        assert_eq!(error, "demo failed: promises 2, 3 were not kept");
    }

    #[test]
    fn all_kept_is_success() {
        let mut promises = Promises::default();
        for promise in [Promise::CreatedOnA, Promise::RefusedOnB, Promise::MovedToB] {
            promises.keep(promise, "yes");
        }
        promises.judge_aftermath(&Aftermath::default());
        assert!(promises.verdict().is_ok());
    }

    #[test]
    fn a_leftover_breaks_promise_four_even_once_released() {
        let mut promises = Promises::default();
        let process = (42, "sleep 5".to_owned());
        let found = Leftovers { processes: vec![process], ..Leftovers::default() };
        promises.judge_aftermath(&Aftermath { found, ..Aftermath::default() });
        let why = "left behind: process 42 (sleep 5); the demo let go of it on its way out";
        assert_eq!(promises.verdicts[3], Verdict::Broken(why.into()));
        let mut promises = Promises::default();
        let remaining = Leftovers { directory_remains: true, ..Leftovers::default() };
        promises.judge_aftermath(&Aftermath { remaining, ..Aftermath::default() });
        assert_eq!(promises.verdicts[3], Verdict::Broken("still there: the work directory".into()));
    }
}
