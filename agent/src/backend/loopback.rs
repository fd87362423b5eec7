//! The loopback backend, Flocker-compatible: a sparse file per dataset
//! (`block-<dataset_id>_<bytes>`), attached as a loop device, holding ext4, mounted at
//! `<mount_root>/<dataset_id>`. Needs root.
//!
//! A new volume is formatted while it is still a temporary file, before it appears under its
//! name, so a volume is never seen half-made and a device is never formatted by accident; the
//! Format step only ever runs for a volume made elsewhere (by Flocker's own agent) without a file
//! system, and refuses any device that holds one.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flocker_api::DatasetId;
use loopdev::{LoopControl, LoopDevice};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::layout::{Layout, sync_directory};
use super::{Attachment, Backend, BackendError, Filesystem, Volume, mount_point, path_str};
use crate::command::{self, CommandError};
use flocker_host::mounts::MountTable;

const QUICK: Duration = Duration::from_secs(30);
/// Formatting a large volume writes its inode tables and journal.
const FORMAT: Duration = Duration::from_secs(600);

pub struct Loopback {
    layout: Layout,
}

impl Loopback {
    pub fn new(root: &Path, instance: &str) -> Result<Self, BackendError> {
        Ok(Self { layout: Layout::new(root, instance, "block-")? })
    }

    /// The loop devices serving each file, from `/sys/block/loop*/loop/backing_file`, in
    /// order. A file has two only by accident (a `losetup` by hand, say); the first is used, and
    /// a detach lets go of all.
    pub(super) fn loop_devices() -> HashMap<PathBuf, Vec<PathBuf>> {
        let Ok(entries) = fs::read_dir("/sys/block") else { return HashMap::new() };
        let mut devices: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for entry in entries.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().into_string() else { continue };
            if let (true, Some(backing)) = (name.starts_with("loop"), backing_file(&entry.path())) {
                devices.entry(backing).or_default().push(Path::new("/dev").join(name));
            }
        }
        for list in devices.values_mut() {
            list.sort_by_key(|device| loop_number(device));
        }
        devices
    }
}

/// How many free devices an attach tries, when other processes take each one first.
const MOST_ATTACH_ATTEMPTS: usize = 16;

/// Attaches `file` to a free loop device. In this process, not by `losetup`: an agent killed
/// half-way leaves no tool running to attach the file a second time after its successor
/// looked. The whole file, no flags: `LOOP_SET_FD` alone, for the `LOOP_SET_STATUS64` that
/// would follow freezes the device's queue and costs milliseconds. Returns the device.
pub(super) fn attach_loop_device(file: &Path) -> Result<PathBuf, BackendError> {
    let control_path = Path::new("/dev/loop-control");
    let control = LoopControl::open().map_err(BackendError::io("open", control_path))?;
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(BackendError::io("attach a loop device to", file))?;
    for _ in 0..MOST_ATTACH_ATTEMPTS {
        let device = control.next_free().map_err(BackendError::io("open", control_path))?;
        match device.attach_fd(backing.as_raw_fd()) {
            Ok(()) => {
                return device.path().ok_or_else(|| BackendError::Refused {
                    path: file.to_owned(),
                    problem: "attached to a loop device that has no path".into(),
                });
            }
            // Another process took the device between our finding it free and attaching.
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => continue,
            Err(e) => return Err(BackendError::io("attach a loop device to", file)(e)),
        }
    }
    let problem = format!("no free loop device stayed free in {MOST_ATTACH_ATTEMPTS} attempts");
    Err(BackendError::Refused { path: file.to_owned(), problem })
}

/// Lets go of `device` if it serves `file`. The device is held open while that is checked, so
/// it cannot be let go by someone else and given to another volume in between; the kernel
/// completes the detach when it is closed, unless another still holds it open.
fn detach_loop_device(device: &Path, file: &Path) -> Result<(), BackendError> {
    let held = match LoopDevice::open(device) {
        Ok(held) => held,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackendError::io("open", device)(e)),
    };
    if !serves(device, file) {
        return Ok(());
    }
    match held.detach() {
        // ENXIO: nothing is attached to it any more.
        Err(e) if e.raw_os_error() != Some(Errno::ENXIO as i32) => {
            Err(BackendError::io("detach", device)(e))
        }
        _ => Ok(()),
    }
}

/// Whether the loop device `device` (`/dev/loopN`) serves `file` now.
fn serves(device: &Path, file: &Path) -> bool {
    let name = device.file_name().unwrap_or_default();
    backing_file(&Path::new("/sys/class/block").join(name)).is_some_and(|b| b == file)
}

impl Backend for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn blockdevice_id(&self, dataset_id: &DatasetId) -> String {
        format!("block-{dataset_id}")
    }

    fn list(&self) -> Result<Vec<Volume>, BackendError> {
        let devices = Self::loop_devices();
        self.layout.list(|file| devices.get(file).and_then(|d| d.first()).cloned())
    }

    fn create(&self, dataset_id: &DatasetId, size: u64) -> Result<(), BackendError> {
        let temporary = self.layout.temporary_for_creating(dataset_id, size);
        let made = make_volume_file(&temporary, size)
            .and_then(|()| self.layout.publish(&temporary, dataset_id, size));
        if made.is_err() {
            // Ours alone: nobody else knows the name, and a published volume has its own.
            let _ = fs::remove_file(&temporary);
        }
        made
    }

    fn attach(&self, volume: &Volume) -> Result<(), BackendError> {
        match &volume.attachment {
            Attachment::Unattached => attach_loop_device(&self.layout.attach(volume)?).map(drop),
            Attachment::Here { source: None } => {
                let here = self.layout.path_of(volume);
                self.layout.drop_second_name(&here)?;
                attach_loop_device(&here).map(drop)
            }
            Attachment::Here { source: Some(_) } => Ok(()),
            Attachment::Elsewhere(other) => Err(BackendError::Refused {
                path: self.layout.path_of(volume),
                problem: format!("attached to {other}"),
            }),
        }
    }

    fn detach(&self, volume: &Volume) -> Result<(), BackendError> {
        let Attachment::Here { .. } = &volume.attachment else { return Ok(()) };
        let file = self.layout.path_of(volume);
        let devices = Self::loop_devices().remove(&file).unwrap_or_default();
        for device in &devices {
            detach_loop_device(device, &file)?;
        }
        // The detach of a device still open (mounted in some mount namespace, say) succeeds and
        // only marks it to go at its last close: the file must not move under it.
        if devices.iter().any(|device| serves(device, &file)) {
            return Err(BackendError::Busy { path: file });
        }
        self.layout.detach(volume)
    }

    fn destroy(&self, volume: &Volume) -> Result<(), BackendError> {
        if volume.attachment != Attachment::Unattached {
            let path = self.layout.path_of(volume);
            return Err(BackendError::Refused { path, problem: "still attached".into() });
        }
        let doomed = self.layout.hide_for_destruction(volume)?;
        fs::remove_file(&doomed).map_err(BackendError::io("remove", &doomed))?;
        sync_directory(self.layout.root())
    }

    /// The ext2/3/4 magic number says "ours" without starting a process; anything else is
    /// left to blkid, which knows every file system and partition table.
    fn filesystem(&self, source: &Path) -> Result<Filesystem, BackendError> {
        if has_ext_magic(source)? {
            return Ok(Filesystem::Ours);
        }
        let probe = ["-p", "-o", "value", "-s", "TYPE", path_str(source)?];
        match command::run("blkid", &probe, QUICK) {
            Ok(kind) if kind.trim().starts_with("ext") => Ok(Filesystem::Ours),
            Ok(kind) => Ok(Filesystem::Foreign(kind.trim().to_owned())),
            // blkid's "nothing found"
            Err(CommandError::Failed { code: Some(2), .. }) => Ok(Filesystem::Empty),
            Err(error) => Err(error.into()),
        }
    }

    fn format(&self, source: &Path) -> Result<(), BackendError> {
        match self.filesystem(source)? {
            Filesystem::Empty => {
                command::run("mkfs.ext4", &["-q", "-m", "0", path_str(source)?], FORMAT)?;
                Ok(())
            }
            held => Err(BackendError::Refused {
                path: source.to_owned(),
                problem: format!("holds a file system already ({held:?}); it is never formatted"),
            }),
        }
    }

    fn mount(&self, source: &Path, target: &Path) -> Result<(), BackendError> {
        mount_point::prepare(target)?;
        nix::mount::mount(Some(source), target, Some("ext4"), MsFlags::empty(), None::<&str>)
            .map_err(|errno| BackendError::io("mount", target)(errno.into()))?;
        mount_point::tidy_fresh_filesystem(target)
    }

    fn unmount(&self, target: &Path) -> Result<(), BackendError> {
        unmount(target)
    }

    /// Whether `target` shows the file behind `source`: through `source`, or through another
    /// loop device of the same file (one made by hand, say). The first is told by the device
    /// number alone; the second needs two reads in sysfs, which cost a look at a node with many
    /// volumes most of its time.
    fn is_mounted(&self, source: &Path, target: &Path, mounts: &MountTable) -> bool {
        let Some(mount) = mounts.at(target) else { return false };
        if device_number(source).is_some_and(|number| number == mount.device) {
            return true;
        }
        let mounted = backing_file(&Path::new("/sys/dev/block").join(&mount.device));
        let ours = source
            .file_name()
            .and_then(|name| backing_file(&Path::new("/sys/class/block").join(name)));
        mounted.is_some() && mounted == ours
    }
}

/// A new volume file of `size` bytes holding an empty ext4, durably; created exclusively, so a
/// name in use is never truncated.
fn make_volume_file(path: &Path, size: u64) -> Result<(), BackendError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(BackendError::io("create", path))?;
    file.set_len(size).map_err(BackendError::io("size", path))?;
    // No space reserved for root: this is a data volume, not a system disk.
    command::run("mkfs.ext4", &["-q", "-m", "0", path_str(path)?], FORMAT)?;
    file.sync_all().map_err(BackendError::io("sync", path))
}

/// The file a loop device serves, from its directory in sysfs; `None` for other devices.
fn backing_file(block_device: &Path) -> Option<PathBuf> {
    let backing = fs::read_to_string(block_device.join("loop/backing_file")).ok()?;
    let backing = backing.trim_end_matches('\n');
    Some(PathBuf::from(backing.strip_suffix(" (deleted)").unwrap_or(backing)))
}

/// The `major:minor` of a block device, as the mount table writes it.
fn device_number(device: &Path) -> Option<String> {
    let metadata = fs::metadata(device).ok()?;
    metadata.file_type().is_block_device().then(|| {
        let number = metadata.rdev();
        format!("{}:{}", nix::sys::stat::major(number), nix::sys::stat::minor(number))
    })
}

/// `/dev/loop12` → 12, so that devices sort as the kernel numbers them.
fn loop_number(device: &Path) -> u64 {
    let name = device.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.trim_start_matches("loop").parse().unwrap_or(u64::MAX)
}

/// `umount`, never forced nor lazy: a busy file system stays mounted until it is let go.
pub(super) fn unmount(target: &Path) -> Result<(), BackendError> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => mount_point::remove(target),
        Err(Errno::EBUSY) => Err(BackendError::Busy { path: target.to_owned() }),
        Err(errno) => Err(BackendError::io("unmount", target)(errno.into())),
    }
}

/// Whether the superblock of an ext2/3/4 file system is there: 0xEF53 at byte 1080.
fn has_ext_magic(device: &Path) -> Result<bool, BackendError> {
    let mut magic = [0u8; 2];
    let file = fs::File::open(device).map_err(BackendError::io("read", device))?;
    match file.read_exact_at(&mut magic, 1080) {
        Ok(()) => Ok(magic == [0x53, 0xEF]),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(BackendError::io("read", device)(e)),
    }
}
