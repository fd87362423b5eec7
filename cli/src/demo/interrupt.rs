//! Ctrl-C. The terminal sends SIGINT to the demo and to the services it started alike, but the
//! demo must still clean up: with the loopback backend a mount and a loop device would stay
//! behind. On SIGINT the services are stopped, so that the step under way fails at once and the
//! demo's own clean-up runs as after any failure; the program then exits as an interrupted one
//! does (130). Should the demo not finish in time, the handler cleans up itself.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::demo::machine;

/// The work directory to clean up after, and whether to keep it.
static WORK: OnceLock<(PathBuf, bool)> = OnceLock::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// How long the demo may take to finish its own clean-up before the handler does it.
const FINISH: Duration = Duration::from_secs(15);
/// The exit status of a program ended by SIGINT, as shells report it.
pub const EXIT_STATUS: i32 = 130;

/// Handles SIGINT from now on (once per process).
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(on_interrupt).context("cannot handle Ctrl-C")
}

/// The directory an interrupt cleans up after.
pub fn watch(work: &Path, keep: bool) {
    let _ = WORK.set((work.to_owned(), keep));
}

/// Whether the demo was interrupted.
pub fn happened() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn on_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    eprintln!("flockerctl demo: interrupted; stopping the services and cleaning up");
    let Some((work, keep)) = WORK.get() else { std::process::exit(EXIT_STATUS) };
    // Once, and only SIGTERM: the demo's own clean-up, which may start any moment now, runs
    // `umount` and `losetup` on paths under the work directory too, and must not be killed.
    signal_all(work, Signal::SIGTERM);
    // The demo now fails its step, cleans up and exits; this thread ends with the process.
    std::thread::sleep(FINISH);
    eprintln!("flockerctl demo: the demo did not finish; cleaning up {}", work.display());
    signal_all(work, Signal::SIGKILL);
    machine::release(work);
    if !keep {
        let _ = std::fs::remove_dir_all(work);
    }
    std::process::exit(EXIT_STATUS);
}

/// Signals every process under the work directory: the services and tasks, which may not have
/// had the terminal's SIGINT.
fn signal_all(work: &Path, signal: Signal) {
    for (pid, _) in machine::processes_under(work) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}
