//! `flockerctl demo`: the whole system on this machine (see [`flocker_cli::demo`]).

use std::path::PathBuf;

use clap::Args;
use flocker_cli::demo::{self, Backend};

#[derive(Args)]
pub struct DemoArgs {
    /// Where volumes live: `directory` needs no root; `loopback` uses real block devices (loop
    /// devices, ext4, mounts) and needs root; `btrfs` gives each node a btrfs pool of its own (on
    /// a loop device) and copies the volume between them, and needs root and btrfs-progs
    #[arg(long, value_enum, default_value_t = Backend::Directory)]
    backend: Backend,
    /// The directory holding flocker-control, flocker-dataset-agent and libflocker_isolator.so
    /// [default: the directory of this flockerctl]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Keep the work directory (certificates, agent.yml files, logs) for inspection
    #[arg(long)]
    keep: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let options = demo::Options { bin_dir: args.bin_dir, backend: args.backend, keep: args.keep };
    let result = demo::run(&options);
    if demo::interrupted() {
        // Cleaned up like any failure; the status says why it stopped.
        std::process::exit(demo::INTERRUPTED_EXIT_STATUS);
    }
    result
}
