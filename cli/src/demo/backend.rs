//! Where the agents keep volumes: plain directories (no root needed), loopback block devices
//! (real ext4 file systems on loop devices, mounted: root needed) — both in one store the nodes
//! share — or a btrfs pool of each node's own (root needed), a volume moving by a copy.

use std::path::Path;

use crate::demo::machine;

/// The dataset backend both agents use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A directory per volume, shown at its mount point by a symbolic link; no root needed.
    Directory,
    /// A sparse file per volume on a loop device, formatted ext4 and mounted; needs root.
    Loopback,
    /// A btrfs subvolume per volume in each node's own pool (a sparse file on a loop device),
    /// copied between the nodes' pools when it moves; needs root and btrfs-progs.
    Btrfs,
}

/// What the loopback backend runs, through the agent.
const LOOPBACK_TOOLS: [&str; 3] = ["losetup", "mkfs.ext4", "blkid"];
/// What the btrfs backend runs, through the agent (and the demo: `losetup` to let go of the
/// pools' loop devices at the end).
const BTRFS_TOOLS: [&str; 4] = ["losetup", "mkfs.btrfs", "btrfs", "blkid"];

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
            Backend::Btrfs => {
                "a volume is a subvolume of the node's pool, bind-mounted; to move, it is \
                 copied from one node's pool to the other's over mutual TLS (a pre-copy while \
                 it may still be in use, then a handoff of the last changes)"
            }
        }
    }

    /// Whether the nodes keep their volumes in one store they share (else each in its own).
    pub fn shares_storage(self) -> bool {
        self != Backend::Btrfs
    }

    /// Refuses, saying what to do, what this machine cannot run.
    pub fn check_can_run(self) -> anyhow::Result<()> {
        let (flag, what, tools, packages): (_, _, &[&str], _) = match self {
            Backend::Directory => return Ok(()),
            Backend::Loopback => (
                "--backend loopback",
                "it attaches loop devices, formats them and mounts them",
                &LOOPBACK_TOOLS,
                "util-linux e2fsprogs",
            ),
            Backend::Btrfs => (
                "--backend btrfs",
                "it attaches a loop device per node, makes a btrfs pool on each and mounts them",
                &BTRFS_TOOLS,
                "util-linux btrfs-progs",
            ),
        };
        if !machine::is_root()? {
            anyhow::bail!(
                "{flag} needs root: {what}. Run it as root (`sudo flockerctl demo {flag}`), or \
                 leave out --backend to use the directory backend, which needs no root"
            );
        }
        if !Path::new("/dev/loop-control").exists() {
            anyhow::bail!(
                "{flag} needs loop devices, and this machine (or container) has no \
                 /dev/loop-control; leave out --backend to use the directory backend"
            );
        }
        if let Some(missing) = tools.iter().find(|tool| !machine::on_path(tool)) {
            anyhow::bail!(
                "{flag} needs {missing} on the PATH (Debian: apt-get install {packages})"
            );
        }
        Ok(())
    }

    /// `agent.yml`'s `backend`.
    pub fn agent_backend(self) -> &'static str {
        match self {
            Backend::Directory => "directory",
            Backend::Loopback => "loopback",
            Backend::Btrfs => "btrfs",
        }
    }

    /// `agent.yml`'s `mount_mode`: links, since without root nothing can be mounted.
    pub fn mount_mode(self) -> Option<&'static str> {
        match self {
            Backend::Directory => Some("symlink"),
            Backend::Loopback | Backend::Btrfs => None,
        }
    }

    /// The isolator's `mount_check`: how it knows the volume is really there before it links it.
    pub fn mount_check(self) -> &'static str {
        match self {
            Backend::Directory => "directory",
            Backend::Loopback | Backend::Btrfs => "mountpoint",
        }
    }
}
