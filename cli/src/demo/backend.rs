//! Where the agents keep volumes: plain directories (no root needed) or loopback block devices
//! (real ext4 file systems on loop devices, mounted: root needed).

use std::path::Path;

use crate::demo::machine;

/// The dataset backend both agents use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A directory per volume, shown at its mount point by a symbolic link; no root needed.
    Directory,
    /// A sparse file per volume on a loop device, formatted ext4 and mounted; needs root.
    Loopback,
}

/// What the loopback backend runs, through the agent.
const LOOPBACK_TOOLS: [&str; 3] = ["losetup", "mkfs.ext4", "blkid"];

impl Backend {
    /// What a volume is, for people who never heard of Flocker.
    pub fn describe(self) -> &'static str {
        match self {
            Backend::Directory => {
                "a volume is a directory, shown where it is mounted by a symbolic \
                 link (no root needed; `--backend loopback` for real block devices)"
            }
            Backend::Loopback => {
                "a volume is a sparse file on a loop device, formatted ext4 and \
                 mounted, as on a real cluster"
            }
        }
    }

    /// Refuses, saying what to do, what this machine cannot run.
    pub fn check_can_run(self) -> anyhow::Result<()> {
        if self == Backend::Directory {
            return Ok(());
        }
        if !machine::is_root()? {
            anyhow::bail!(
                "--backend loopback needs root: it attaches loop devices, formats them and mounts \
                 them. Run it as root (`sudo flockerctl demo --backend loopback`), or leave out \
                 --backend to use the directory backend, which needs no root"
            );
        }
        if !Path::new("/dev/loop-control").exists() {
            anyhow::bail!(
                "--backend loopback needs loop devices, and this machine (or container) has no \
                 /dev/loop-control; leave out --backend to use the directory backend"
            );
        }
        if let Some(missing) = LOOPBACK_TOOLS.iter().find(|tool| !machine::on_path(tool)) {
            anyhow::bail!(
                "--backend loopback needs {missing} on the PATH (Debian: apt-get install \
                 util-linux e2fsprogs)"
            );
        }
        Ok(())
    }

    /// `agent.yml`'s `backend`.
    pub fn agent_backend(self) -> &'static str {
        match self {
            Backend::Directory => "directory",
            Backend::Loopback => "loopback",
        }
    }

    /// `agent.yml`'s `mount_mode`: links, since without root nothing can be mounted.
    pub fn mount_mode(self) -> Option<&'static str> {
        match self {
            Backend::Directory => Some("symlink"),
            Backend::Loopback => None,
        }
    }

    /// The isolator's `mount_check`: how it knows the volume is really there before it links it.
    pub fn mount_check(self) -> &'static str {
        match self {
            Backend::Directory => "directory",
            Backend::Loopback => "mountpoint",
        }
    }
}
