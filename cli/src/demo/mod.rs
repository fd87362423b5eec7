//! `flockerctl demo`: the whole system on this machine, told as a story with a timeline.
//!
//! In a temporary directory it makes a cluster's certificates, starts `flocker-control` and two
//! `flocker-dataset-agent`s (node A and node B, sharing one volume store as two hosts share
//! storage, or each with a btrfs pool of its own, a volume copied from one to the other), loads the built `libflocker_isolator.so` with `dlopen` and plays the Mesos agent of
//! both nodes for the Marathon app `/webapp` (`FLOCKER_ID=webapp-data`): task 1 writes on A, a
//! task on B is refused while task 1 runs, task 2 reads the same bytes on B after the volume
//! moved. Four promises are checked and summed up; nothing is left behind.
//!
//! - `binaries`: where the built programs are; `backend`: directory, loopback or btrfs;
//!   `pools`: the btrfs backend's pools, one per node, let go of at the end;
//! - `workdir`: the temporary directory and its layout; `certificates`: the cluster's CA;
//! - `process`, `control`, `agent`, `cluster`: the services as child processes;
//! - `container`, `mesos`, `task`: the Mesos agent's side: ContainerConfigs, the isolator
//!   library, the tasks' processes; `volume`: what the control service says about the volume;
//! - `story` and `webapp`: the steps in order; `timeline` and `promises`: what is printed;
//! - `machine`: mounts, loop devices and processes of this machine, to find leftovers;
//!   `interrupt`: the same clean-up on Ctrl-C.

mod agent;
mod backend;
mod binaries;
mod certificates;
mod cluster;
mod container;
mod control;
mod interrupt;
mod machine;
mod mesos;
mod pools;
mod process;
mod promises;
mod push;
mod story;
mod task;
mod timeline;
mod volume;
mod webapp;
mod workdir;

use std::fmt;
use std::path::PathBuf;

pub use backend::Backend;
pub use interrupt::{EXIT_STATUS as INTERRUPTED_EXIT_STATUS, happened as interrupted};

use crate::demo::binaries::Binaries;
use crate::demo::promises::{Aftermath, Promises};
use crate::demo::timeline::Timeline;
use crate::demo::workdir::{Finished, WorkDir};

/// What `flockerctl demo` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `flocker-control`, `flocker-dataset-agent` and `libflocker_isolator.so` are; `None`:
    /// beside the running `flockerctl`.
    pub bin_dir: Option<PathBuf>,
    pub backend: Backend,
    /// Keep the work directory for inspection instead of removing it.
    pub keep: bool,
}

/// The two nodes of the demo: two dataset agents on this machine, each standing in for a host
/// that runs a Mesos agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    A,
    B,
}

impl Node {
    pub const BOTH: [Node; 2] = [Node::A, Node::B];

    /// Its position in arrays of per-node things.
    pub fn index(self) -> usize {
        match self {
            Node::A => 0,
            Node::B => 1,
        }
    }

    /// `a` or `b`, for file names.
    pub fn lowercase(self) -> &'static str {
        match self {
            Node::A => "a",
            Node::B => "b",
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::A => f.write_str("node A"),
            Node::B => f.write_str("node B"),
        }
    }
}

/// Runs the demo. An error means a promise was broken (or the demo could not start at all);
/// either way everything it started and made is gone when this returns.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let binaries = Binaries::find(options.bin_dir.as_deref())?;
    options.backend.check_can_run()?;
    interrupt::install()?;
    let timeline = Timeline::start();
    let work = WorkDir::create(options.keep, options.backend.shares_storage())?;
    interrupt::watch(work.path(), options.keep);
    let mut promises = Promises::default();
    // Every process, isolator and task of the story ends inside `tell`, failure or not.
    if let Err(error) = story::tell(&binaries, options.backend, &work, &timeline, &mut promises) {
        // After Ctrl-C the step failed because its services were stopped: say what happened.
        let error =
            if interrupt::happened() { anyhow::anyhow!("interrupted (Ctrl-C)") } else { error };
        promises.blame_first_open(&error);
        // The agents leave their pools mounted, as on a host; the story ended before it let
        // go of them.
        if options.backend == Backend::Btrfs {
            pools::release_quietly(&work);
        }
    }
    let aftermath = clean_up(work, &timeline);
    promises.judge_aftermath(&aftermath);
    promises.print_summary(timeline.elapsed(), aftermath.kept_at.as_ref());
    promises.verdict()
}

/// The last step: looks for leftovers (before the work directory goes: removing it would hide
/// a mount left under it), lets go of them and removes the directory (or keeps it), and looks
/// again.
fn clean_up(work: WorkDir, timeline: &Timeline) -> Aftermath {
    let found = machine::Leftovers::find(work.path());
    let started = timeline.now();
    let (path, keep) = (work.path().to_owned(), work.keeps());
    let finished = work.finish();
    // Looked for again only if something was found: a clean run needs no second look.
    let mut remaining = match found.describe().is_empty() {
        true => machine::Leftovers::default(),
        false => machine::Leftovers::find(&path),
    };
    remaining.directory_remains = !keep && path.exists();
    let mut aftermath = Aftermath { found, remaining, ..Aftermath::default() };
    match finished {
        Ok(Finished::Removed) => {
            timeline.done(started, "Work directory removed", &[path.display().to_string()]);
        }
        Ok(Finished::Kept) => {
            let note = format!("{} (kept, as --keep asked: remove it yourself)", path.display());
            timeline.done(started, "Work directory kept for inspection", &[note]);
            aftermath.kept_at = Some(path);
        }
        Err(error) => {
            timeline.failed(started, "Work directory removed", &[], &error, &[]);
            aftermath.removal_error = Some(format!("{error:#}"));
        }
    }
    aftermath
}
