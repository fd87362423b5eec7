//! The core's own threads: a fixed number of workers taking jobs in order. Nothing of Mesos's
//! ever waits on them; a job that panics is caught, and its worker carries on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct Pool {
    jobs: Mutex<Sender<Job>>,
}

impl Pool {
    /// Starts `workers` threads named `<name>-<n>`.
    pub fn new(workers: usize, name: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..workers.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("{name}-{n}")).spawn(move || work(&queue))?;
        }
        Ok(Self { jobs: Mutex::new(jobs) })
    }

    /// Queues `job`; false if the pool is gone (it never is while the Pool lives).
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).send(Box::new(job)).is_ok()
    }
}

/// Takes jobs until the pool is dropped and the queue is empty.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a job of the isolator panicked; its worker carries on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_and_a_panic_does_not_lose_the_worker() {
        let pool = Pool::new(1, "test").unwrap();
        let (done, results) = mpsc::channel();
        pool.spawn(|| panic!("a bug"));
        for n in 0..3 {
            let done = done.clone();
            pool.spawn(move || done.send(n).unwrap());
        }
        let got: Vec<i32> = (0..3).map(|_| results.recv().unwrap()).collect();
        assert_eq!(got, [0, 1, 2]);
    }
}
