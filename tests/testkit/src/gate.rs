//! Stopping a real process at the door of a directory. fanotify permission events let a test
//! hold one process exactly as it opens a directory (`opendir`, as a listing does), do something
//! meanwhile, then let it go on: a race between two processes happens in the order the test
//! wants, with the shipped binaries and no hook in them. Needs root and a kernel with
//! `CONFIG_FANOTIFY_ACCESS_PERMISSIONS` (the test fails, saying so, without them).

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags,
    Response,
};

/// Watches one directory; every open of it passes at once, except the one [`DirectoryGate::hold`]
/// waits for.
pub struct DirectoryGate {
    fanotify: Arc<Fanotify>,
    /// The process whose next open is held; 0 for none.
    armed: Arc<AtomicI32>,
    held: Receiver<FanotifyEvent>,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
}

/// An open held at the door; it goes on when this is dropped.
pub struct HeldOpen {
    fanotify: Arc<Fanotify>,
    event: FanotifyEvent,
}

impl DirectoryGate {
    pub fn new(directory: &Path) -> Self {
        let fanotify = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC,
        )
        .unwrap_or_else(|e| {
            panic!("fanotify_init: {e} (root and fanotify permission events needed)")
        });
        fanotify
            .mark(
                MarkFlags::FAN_MARK_ADD,
                MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_ONDIR,
                nix::fcntl::AT_FDCWD,
                Some(directory),
            )
            .unwrap_or_else(|e| panic!("fanotify_mark {}: {e}", directory.display()));
        let fanotify = Arc::new(fanotify);
        let (armed, stop) = (Arc::new(AtomicI32::new(0)), Arc::new(AtomicBool::new(false)));
        let (sender, held) = channel();
        let watcher = std::thread::spawn({
            let (fanotify, armed, stop) = (fanotify.clone(), armed.clone(), stop.clone());
            move || watch(&fanotify, &armed, &stop, &sender)
        });
        Self { fanotify, armed, held, stop, watcher: Some(watcher) }
    }

    /// Waits until process `pid` next opens the directory, and holds it there.
    pub fn hold(&self, pid: u32, timeout: Duration) -> HeldOpen {
        let pid = i32::try_from(pid).unwrap_or_else(|e| panic!("pid {pid}: {e}"));
        self.armed.store(pid, Ordering::SeqCst);
        let event = self.held.recv_timeout(timeout).unwrap_or_else(|_| {
            self.armed.store(0, Ordering::SeqCst);
            panic!("process {pid} did not open the directory within {timeout:?}")
        });
        HeldOpen { fanotify: self.fanotify.clone(), event }
    }
}

/// Answers every open at once, except the first one of the armed process, which goes to the
/// test to answer.
fn watch(fanotify: &Fanotify, armed: &AtomicI32, stop: &AtomicBool, held: &Sender<FanotifyEvent>) {
    while !stop.load(Ordering::SeqCst) {
        let mut ready = [PollFd::new(fanotify.as_fd(), PollFlags::POLLIN)];
        if poll(&mut ready, PollTimeout::from(20u8)).unwrap_or(0) == 0 {
            continue;
        }
        for event in fanotify.read_events().unwrap_or_default() {
            let pid = event.pid();
            if pid != 0
                && armed.compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
            {
                let _ = held.send(event); // if the test is gone, dropping the event lets it go
            } else {
                allow(fanotify, &event);
            }
        }
    }
}

fn allow(fanotify: &Fanotify, event: &FanotifyEvent) {
    if let Some(fd) = event.fd() {
        let _ = fanotify.write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW));
    }
}

impl Drop for HeldOpen {
    fn drop(&mut self) {
        allow(&self.fanotify, &self.event);
    }
}

impl Drop for DirectoryGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        // Closing the group (the last Arc) lets any open still waiting go on.
    }
}
