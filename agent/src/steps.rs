//! The threads that carry out the plan's steps, several datasets at once.
//!
//! A step that changes the node can take a while — a new loopback volume is formatted by
//! `mkfs.ext4`, which spends most of its time waiting for the disk to flush — so the loop hands
//! it to one of [`STEP_WORKERS`] threads and goes on with the other datasets. Each finished step
//! wakes the loop, which looks at the node again and plans that dataset's next step from what it
//! finds there: a new volume goes create, attach, mount while the others go their own ways, and
//! is reported as soon as it is mounted, not after the whole crowd.
//!
//! [`Workers`] keeps the rule that makes this safe: a dataset with a step at a worker is given
//! no other step until that one has finished and the node has been looked at again, exactly as
//! when the loop carried out one step at a time. Steps of different datasets are independent:
//! each works on its own volume's names, loop device and mount point (an attach that finds the
//! free loop device taken by another thread takes the next one).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Scope;
use std::time::{Duration, Instant};

use flocker_api::DatasetId;

use crate::act::{Outcome, act};
use crate::backend::{Backend, BackendError};
use crate::calculate::Step;
use crate::converge::Mailbox;
use crate::discover::{Found, mount_point};

/// How many steps run at once: enough to overlap the disk flushes of several formats (each
/// mostly waits), few enough that a crowd of new volumes does not flood the node's disk and
/// cores while its tasks run. 50 new volumes on a 2-core machine (`cargo bench -p
/// flocker-dataset-agent --bench crowd`) took 560 ms with 2 workers, 400 with 4, 280–320 with
/// 8, 240–265 with 16 and no less with 24: beyond 8, each worker bought little.
///
/// The workers live as long as the agent: a tool they run gets its parent-death signal
/// (`command`) when the thread that started it ends, so that must not happen early.
pub const STEP_WORKERS: usize = 8;

/// A step given to a worker, with what discovery found of its dataset.
struct Job {
    dataset_id: DatasetId,
    step: Step,
    found: Option<Found>,
}

/// A step a worker finished: what it was, what it came to, and how long it took.
#[derive(Debug)]
pub struct Finished {
    pub dataset_id: DatasetId,
    pub step: Step,
    pub outcome: Result<Outcome, BackendError>,
    pub took: Duration,
}

/// The workers, and which dataset each is busy with.
pub struct Workers {
    jobs: Sender<Job>,
    finished: Receiver<Finished>,
    busy: BTreeMap<DatasetId, Step>,
}

impl Workers {
    /// Starts [`STEP_WORKERS`] threads in `scope`, carrying out steps on `backend`; each
    /// finished step pokes `mailbox`, waking the loop.
    pub fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        backend: &'scope dyn Backend,
        mount_root: &'scope Path,
        mailbox: &'scope Mailbox,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (done, finished) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..STEP_WORKERS {
            let (queue, done) = (queue.clone(), done.clone());
            std::thread::Builder::new().name(format!("step-{n}")).spawn_scoped(
                scope,
                move || {
                    while let Some(job) = next_job(&queue) {
                        if done.send(run_step(backend, mount_root, job)).is_err() {
                            return; // the loop is gone
                        }
                        mailbox.poke();
                    }
                },
            )?;
        }
        Ok(Self { jobs, finished, busy: BTreeMap::new() })
    }

    /// Whether a worker is free for another step.
    pub fn has_room(&self) -> bool {
        self.busy.len() < STEP_WORKERS
    }

    /// Whether a step of `dataset` is under way.
    pub fn is_busy(&self, dataset: &DatasetId) -> bool {
        self.busy.contains_key(dataset)
    }

    pub fn any_busy(&self) -> bool {
        !self.busy.is_empty()
    }

    /// Gives a step to a free worker. The caller checks [`Workers::has_room`] and
    /// [`Workers::is_busy`] first: a dataset never has two steps under way.
    pub fn start_step(&mut self, dataset_id: DatasetId, step: Step, found: Option<Found>) {
        debug_assert!(self.has_room() && !self.is_busy(&dataset_id));
        self.busy.insert(dataset_id, step.clone());
        if self.jobs.send(Job { dataset_id, step, found }).is_err() {
            // Only if every worker has ended, which none does while the loop runs.
            log::error!("dataset {dataset_id}: no worker takes steps any more");
            self.busy.remove(&dataset_id);
        }
    }

    /// The steps finished since the last call; their datasets are free for their next.
    pub fn finished(&mut self) -> Vec<Finished> {
        let finished: Vec<Finished> = self.finished.try_iter().collect();
        for step in &finished {
            self.busy.remove(&step.dataset_id);
        }
        finished
    }
}

fn next_job(queue: &Mutex<Receiver<Job>>) -> Option<Job> {
    queue.lock().unwrap_or_else(PoisonError::into_inner).recv().ok()
}

/// Carries out one step and times it. A panic in it (a bug) fails that step alone: the worker
/// and the other datasets carry on, and the step is tried again like any failed one.
fn run_step(backend: &dyn Backend, mount_root: &Path, job: Job) -> Finished {
    let Job { dataset_id, step, found } = job;
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        act(backend, mount_root, &dataset_id, &step, found.as_ref())
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(BackendError::Refused {
            path: mount_point(mount_root, &dataset_id),
            problem: format!("the step stopped on a bug in the agent (panic: {why})"),
        })
    });
    Finished { dataset_id, step, outcome, took: started.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::directory::Directory;
    use crate::config::MountMode;
    use crate::discover::discover;

    /// A real directory backend in a temporary directory.
    fn directory_backend(root: &Path) -> Directory {
        Directory::new(&root.join("volumes"), "node-a", MountMode::Symlink)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for `count` finished steps (a worker pokes the mailbox after each).
    fn wait_for(workers: &mut Workers, mailbox: &Mailbox, count: usize) -> Vec<Finished> {
        let mut finished = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while finished.len() < count {
            assert!(Instant::now() < deadline, "only {} steps finished", finished.len());
            mailbox.wait(Duration::from_millis(100));
            finished.extend(workers.finished());
        }
        finished
    }

    #[test]
    fn a_crowd_of_creates_runs_on_the_workers_and_each_dataset_is_free_again_after() {
        let scratch = tempfile::tempdir().unwrap();
        let backend = directory_backend(scratch.path());
        let mount_root = scratch.path().join("mounts");
        let mailbox = Mailbox::default();
        let crowd: Vec<DatasetId> = (0..STEP_WORKERS * 3).map(|_| DatasetId::random()).collect();
        std::thread::scope(|scope| {
            let mut workers = Workers::start(scope, &backend, &mount_root, &mailbox).unwrap();
            let mut waiting = crowd.clone();
            let mut finished = Vec::new();
            while finished.len() < crowd.len() {
                while workers.has_room()
                    && let Some(id) = waiting.pop()
                {
                    workers.start_step(id, Step::Create { size: 1 << 26 }, None);
                    assert!(workers.is_busy(&id));
                }
                assert!(!workers.has_room() || waiting.is_empty());
                finished.extend(wait_for(&mut workers, &mailbox, 1));
            }
            assert!(!workers.any_busy());
            for step in &finished {
                assert!(matches!(step.outcome, Ok(Outcome::Progressed)), "{step:?}");
            }
        });
        let found = discover(&backend, &mount_root).unwrap().found;
        assert!(crowd.iter().all(|id| found.contains_key(id)), "every volume was made");
    }

    #[test]
    fn a_failed_step_fails_alone() {
        let scratch = tempfile::tempdir().unwrap();
        let backend = directory_backend(scratch.path());
        let mount_root = scratch.path().join("mounts");
        let mailbox = Mailbox::default();
        let (doomed, fine) = (DatasetId::random(), DatasetId::random());
        std::thread::scope(|scope| {
            let mut workers = Workers::start(scope, &backend, &mount_root, &mailbox).unwrap();
            // An attach with no volume found: refused by the step itself.
            workers.start_step(doomed, Step::Attach, None);
            workers.start_step(fine, Step::Create { size: 1 << 26 }, None);
            let finished = wait_for(&mut workers, &mailbox, 2);
            let outcome = |id| &finished.iter().find(|f| f.dataset_id == id).unwrap().outcome;
            assert!(outcome(doomed).is_err());
            assert!(matches!(outcome(fine), Ok(Outcome::Progressed)));
        });
    }
}
