//! Serialising the work on each volume: a prepare and a cleanup of the same FLOCKER_ID on this
//! node never overlap (so the count of containers using it, and with it the lease, stays right),
//! while different volumes go on in parallel. All of a request's volumes are taken at once, so
//! two requests can never each hold one and wait for the other's.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, PoisonError};

use crate::request::FlockerId;

#[derive(Default)]
pub struct VolumeLocks {
    busy: Mutex<BTreeSet<FlockerId>>,
    released: Condvar,
}

/// Held while working on some volumes; lets them go when dropped.
pub struct Held<'a> {
    locks: &'a VolumeLocks,
    ids: Vec<FlockerId>,
}

impl VolumeLocks {
    /// Waits until none of `ids` is busy, then takes them all.
    pub fn lock<'a>(&'a self, ids: impl IntoIterator<Item = &'a FlockerId>) -> Held<'a> {
        let ids: Vec<FlockerId> =
            ids.into_iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let mut busy = self
            .released
            .wait_while(busy, |busy| ids.iter().any(|id| busy.contains(id)))
            .unwrap_or_else(PoisonError::into_inner);
        busy.extend(ids.iter().cloned());
        Held { locks: self, ids }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut busy = self.locks.busy.lock().unwrap_or_else(PoisonError::into_inner);
        for id in &self.ids {
            busy.remove(id);
        }
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn work_on_one_volume_never_overlaps_and_other_volumes_go_on() {
        let locks = Arc::new(VolumeLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let id: FlockerId = "shared".parse().unwrap();
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside, id) = (locks.clone(), inside.clone(), id.clone());
                std::thread::spawn(move || {
                    let _held = locks.lock([&id]);
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two workers on one volume"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        let other: FlockerId = "other".parse().unwrap();
        drop(locks.lock([&other])); // never waits for "shared"
        workers.into_iter().for_each(|w| w.join().unwrap());
    }
}
