//! The directories under `root_path` and the names of volumes in them, shared by both backends,
//! and every change of a name there.
//!
//! When nodes share `root_path`, their agents change names in it at the same moments, so two
//! rules hold for every step here:
//! - **A volume is never replaced.** A move into a name that another node may also use is made
//!   with `RENAME_NOREPLACE`, or where the file system lacks it (NFS) by `link` + `unlink`; a
//!   name that exists stops the step ([`BackendError::WouldReplace`]). Temporary names are
//!   unique to their maker, created exclusively.
//! - **A torn listing never says "missing".** See [`Layout::list`].

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use flocker_api::DatasetId;
use flocker_host::no_replace;

use super::{Attachment, BackendError, Volume};

/// How old a temporary file must be before it is taken for a crash's leftover.
const STALE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why the directory backend cannot use a file system without `RENAME_NOREPLACE`.
pub const NEEDS_NOREPLACE: &str = "the file system cannot rename a directory without replacing \
     what may be there (RENAME_NOREPLACE, which NFS lacks), and the directory backend needs it: \
     put root_path on a local file system, or use the loopback backend";

/// How many listings may disagree in a row before a discovery pass gives up (the next pass
/// starts again).
const MOST_LISTINGS: usize = 8;

/// Where a move that must not replace anything may fall back to, on a file system without
/// `RENAME_NOREPLACE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// Other nodes may create the new name at any moment (`unattached/`): `link` + `unlink`,
    /// for files only.
    LinkThenUnlink,
    /// Only this node writes the new name (its own `attached/` directory, a temporary name of
    /// its own): a plain rename once the name is found free.
    RenameIfFree,
}

/// `<root>/unattached`, `<root>/attached/<instance>`; volumes named `<prefix><id>_<size>`.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    instance: String,
    prefix: &'static str,
    /// The file system cannot rename without replacing (`RENAME_NOREPLACE`): NFS, for one.
    pub without_noreplace: bool,
}

impl Layout {
    /// Creates the directories if needed. The root is made canonical, as the kernel reports the
    /// backing files of loop devices.
    pub fn new(root: &Path, instance: &str, prefix: &'static str) -> Result<Self, BackendError> {
        for directory in [root.join("unattached"), root.join("attached").join(instance)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&directory)
                .map_err(BackendError::io("create", &directory))?;
        }
        let root = root.canonicalize().map_err(BackendError::io("resolve", root))?;
        let without_noreplace = !renames_without_replacing(&root.join("attached").join(instance))?;
        if without_noreplace {
            log::info!(
                "{} cannot rename without replacing (RENAME_NOREPLACE), as NFS cannot: volumes \
                 are moved by link and unlink instead",
                root.display()
            );
        }
        let layout = Self { root, instance: instance.to_owned(), prefix, without_noreplace };
        layout.remove_stale_temporaries();
        Ok(layout)
    }

    /// A crash can leave a volume half-made (`.creating-*`) or half-destroyed (`.destroying-*`).
    /// Those an hour old are nobody's work in progress, even with a shared root: remove them.
    /// A temporary name that a crash left beside the volume's own (a `link` made, the `unlink`
    /// not) only loses that name.
    fn remove_stale_temporaries(&self) {
        let stale = |path: &Path| {
            fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > STALE))
        };
        for directory in [self.root.clone(), self.unattached()] {
            for name in read_names(&directory).unwrap_or_default() {
                let path = directory.join(&name);
                if (name.starts_with(".creating-") || name.starts_with(".destroying-"))
                    && stale(&path)
                {
                    log::info!("removing {}, left by an interrupted operation", path.display());
                    let removed = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    if let Err(error) = removed {
                        log::warn!("cannot remove {}: {error}", path.display());
                    }
                }
            }
        }
    }

    /// As on a file system without `RENAME_NOREPLACE` (NFS), for tests of the fallbacks.
    #[cfg(test)]
    fn without_noreplace(self) -> Self {
        Self { without_noreplace: true, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn name(&self, dataset_id: &DatasetId, size: u64) -> String {
        format!("{}{dataset_id}_{size}", self.prefix)
    }

    pub fn unattached(&self) -> PathBuf {
        self.root.join("unattached")
    }

    pub fn attached_here(&self) -> PathBuf {
        self.root.join("attached").join(&self.instance)
    }

    /// Where a volume is now: attached here, or unattached.
    pub fn path_of(&self, volume: &Volume) -> PathBuf {
        let directory = match volume.attachment {
            Attachment::Here { .. } => self.attached_here(),
            _ => self.unattached(),
        };
        directory.join(self.name(&volume.dataset_id, volume.size))
    }

    /// Where a new volume is made before [`Layout::publish`] names it: a name in `unattached/`
    /// that no other node or agent uses. Whoever makes it must create it exclusively.
    pub fn temporary_for_creating(&self, dataset_id: &DatasetId, size: u64) -> PathBuf {
        unique_name(&self.unattached(), "creating", &self.name(dataset_id, size))
    }

    /// Every volume, with where it is attached; `here` finds the source of one attached here.
    ///
    /// The directories are listed until two listings agree. Each rename between them is atomic,
    /// so a volume is always in exactly one of them; but a listing reads them one after another,
    /// and a volume that another node moves from a directory not yet read to one already read
    /// (node B detaching into `unattached/` after A read it, before A reads `attached/B/`) is in
    /// no part of that listing. Taken for "missing", that once made an agent create a new volume
    /// over B's. A volume missing from two listings that agree must have moved against the
    /// reading order during both, and back in between: a round trip between nodes within
    /// milliseconds. Even then nothing is lost: an agent never creates a volume for a dataset
    /// the control service knows had one, and never replaces a volume.
    pub fn list(
        &self,
        here: impl FnMut(&Path) -> Option<PathBuf>,
    ) -> Result<Vec<Volume>, BackendError> {
        self.list_settled(here, || {})
    }

    /// [`Layout::list`], running `between` after `unattached/` is read and before `attached/`
    /// is (tests make their renames there).
    fn list_settled(
        &self,
        mut here: impl FnMut(&Path) -> Option<PathBuf>,
        mut between: impl FnMut(),
    ) -> Result<Vec<Volume>, BackendError> {
        let mut previous = self.list_once(&mut here, &mut between)?;
        for _ in 1..MOST_LISTINGS {
            let next = self.list_once(&mut here, &mut between)?;
            if next == previous {
                return Ok(next);
            }
            previous = next;
        }
        Err(BackendError::Unsettled { root: self.root.clone(), listings: MOST_LISTINGS })
    }

    /// One listing, in a stable order so that two can be compared.
    fn list_once(
        &self,
        here: &mut impl FnMut(&Path) -> Option<PathBuf>,
        between: &mut impl FnMut(),
    ) -> Result<Vec<Volume>, BackendError> {
        let mut volumes = Vec::new();
        for (dataset_id, size, _) in self.entries(&self.unattached())? {
            volumes.push(Volume { dataset_id, size, attachment: Attachment::Unattached });
        }
        between();
        let attached = self.root.join("attached");
        for instance in read_names(&attached)? {
            for (dataset_id, size, path) in self.entries(&attached.join(&instance))? {
                let attachment = if instance == self.instance {
                    Attachment::Here { source: here(&path) }
                } else {
                    Attachment::Elsewhere(instance.clone())
                };
                volumes.push(Volume { dataset_id, size, attachment });
            }
        }
        volumes.sort();
        Ok(volumes)
    }

    /// The volumes in one directory; other names (temporary files, strays) are passed over.
    fn entries(&self, directory: &Path) -> Result<Vec<(DatasetId, u64, PathBuf)>, BackendError> {
        Ok(read_names(directory)?
            .into_iter()
            .filter_map(|name| {
                let (id, size) = name.strip_prefix(self.prefix)?.split_once('_')?;
                Some((id.parse().ok()?, size.parse().ok()?, directory.join(&name)))
            })
            .collect())
    }

    /// Gives a finished new volume (made under [`Layout::temporary_for_creating`]) its name in
    /// `unattached/`, unless a volume has that name already.
    pub fn publish(
        &self,
        temporary: &Path,
        dataset_id: &DatasetId,
        size: u64,
    ) -> Result<(), BackendError> {
        let name = self.unattached().join(self.name(dataset_id, size));
        self.move_without_replacing(temporary, &name, Fallback::LinkThenUnlink)
    }

    /// Attaches a volume to this node by name: `unattached/` to `attached/<instance>/`. The
    /// rename claims the volume: of two nodes attaching it at once, one finds it gone.
    pub fn attach(&self, volume: &Volume) -> Result<PathBuf, BackendError> {
        let here = Volume { attachment: Attachment::Here { source: None }, ..volume.clone() };
        let (from, to) = (self.path_of(volume), self.path_of(&here));
        self.move_without_replacing(&from, &to, Fallback::RenameIfFree)?;
        Ok(to)
    }

    /// Detaches a volume from this node by name: back to `unattached/`, unless another volume
    /// of the dataset is there.
    pub fn detach(&self, volume: &Volume) -> Result<(), BackendError> {
        let unattached = Volume { attachment: Attachment::Unattached, ..volume.clone() };
        let (from, to) = (self.path_of(volume), self.path_of(&unattached));
        self.move_without_replacing(&from, &to, Fallback::LinkThenUnlink)
    }

    /// Moves an unattached volume to a temporary name of its destroyer, out of every node's
    /// sight; the temporary name.
    pub fn hide_for_destruction(&self, volume: &Volume) -> Result<PathBuf, BackendError> {
        let from = self.path_of(volume);
        let name = self.name(&volume.dataset_id, volume.size);
        let doomed = unique_name(&self.root, "destroying", &name);
        self.move_without_replacing(&from, &doomed, Fallback::RenameIfFree)?;
        Ok(doomed)
    }

    /// After a crash between the `link` and the `unlink` of a detach on a file system without
    /// `RENAME_NOREPLACE`, the volume attached here has a second name in `unattached/`: remove
    /// that name (only if it is the same file), so no other node can take the volume by it.
    pub fn drop_second_name(&self, here: &Path) -> Result<(), BackendError> {
        let Some(name) = here.file_name() else { return Ok(()) };
        let twin = self.unattached().join(name);
        let identity = |path: &Path| fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
        if identity(&twin).is_some() && identity(&twin) == identity(here) {
            log::warn!(
                "{} is a second name of {}, left by a crash; removing it",
                twin.display(),
                here.display()
            );
            fs::remove_file(&twin).map_err(BackendError::io("remove", &twin))?;
            sync_directory(&self.unattached())?;
        }
        Ok(())
    }

    /// Moves `from` to `to`, never replacing anything at `to`, and makes the move durable.
    fn move_without_replacing(
        &self,
        from: &Path,
        to: &Path,
        fallback: Fallback,
    ) -> Result<(), BackendError> {
        let moved = if self.without_noreplace {
            move_by_fallback(from, to, fallback)
        } else {
            no_replace::rename(from, to)
        };
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BackendError::WouldReplace {
                    from: from.to_owned(),
                    to: to.to_owned(),
                });
            }
            Err(e) => return Err(BackendError::io("move", from)(e)),
        }
        for directory in [from.parent(), to.parent()].into_iter().flatten() {
            sync_directory(directory)?;
        }
        Ok(())
    }
}

fn move_by_fallback(from: &Path, to: &Path, fallback: Fallback) -> io::Result<()> {
    match fallback {
        Fallback::RenameIfFree if fs::symlink_metadata(to).is_ok() => {
            Err(io::ErrorKind::AlreadyExists.into())
        }
        Fallback::RenameIfFree => fs::rename(from, to),
        // Directories cannot be linked; the directory backend refuses such a root_path.
        Fallback::LinkThenUnlink if fs::symlink_metadata(from)?.is_dir() => {
            Err(io::Error::new(io::ErrorKind::Unsupported, NEEDS_NOREPLACE))
        }
        Fallback::LinkThenUnlink => no_replace::link_then_unlink(from, to),
    }
}

/// Whether the file system can rename without replacing, tried on a file of this agent's own
/// in `directory` (its `attached/<instance>/`, where only it writes): first it removes what an
/// agent killed while probing left there.
fn renames_without_replacing(directory: &Path) -> Result<bool, BackendError> {
    for name in read_names(directory)?.iter().filter(|n| n.starts_with(".probe")) {
        let leftover = directory.join(name);
        fs::remove_file(&leftover).map_err(BackendError::io("remove", &leftover))?;
    }
    let (probe, moved) =
        (unique_name(directory, "probe", "a"), unique_name(directory, "probe", "b"));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(BackendError::io("create", &probe))?;
    let renamed = no_replace::rename(&probe, &moved);
    let _ = fs::remove_file(if renamed.is_ok() { &moved } else { &probe });
    match renamed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(false),
        Err(e) => Err(BackendError::io("rename", &probe)(e)),
    }
}

/// `.<purpose>-<name>.<random>` in `directory`: one temporary name per use.
fn unique_name(directory: &Path, purpose: &str, name: &str) -> PathBuf {
    directory.join(format!(".{purpose}-{name}.{}", uuid::Uuid::new_v4().simple()))
}

fn read_names(directory: &Path) -> Result<Vec<String>, BackendError> {
    let entries = match fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackendError::io("read", directory)(e)),
    };
    Ok(entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
}

pub fn sync_directory(directory: &Path) -> Result<(), BackendError> {
    fs::File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(BackendError::io("sync", directory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn volumes_are_listed_with_their_attachment_and_strays_are_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        let (mine, theirs, free) = (DatasetId::random(), DatasetId::random(), DatasetId::random());
        fs::write(layout.attached_here().join(layout.name(&mine, 1024)), b"").unwrap();
        let other = layout.root().join("attached").join("node-b");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join(layout.name(&theirs, 2048)), b"").unwrap();
        fs::write(layout.unattached().join(layout.name(&free, 4096)), b"").unwrap();
        for stray in ["lost+found", ".creating-block-x_1", "block-notauuid_1", "block-ok"] {
            fs::write(layout.unattached().join(stray), b"").unwrap();
        }
        let mut volumes = layout.list(|path| Some(path.with_extension("dev"))).unwrap();
        volumes.sort_by_key(|v| v.size);
        let attachments: Vec<_> =
            volumes.iter().map(|v| (v.dataset_id, v.size, v.attachment.clone())).collect();
        let source = layout.attached_here().join(layout.name(&mine, 1024)).with_extension("dev");
        assert_eq!(
            attachments,
            [
                (mine, 1024, Attachment::Here { source: Some(source) }),
                (theirs, 2048, Attachment::Elsewhere("node-b".into())),
                (free, 4096, Attachment::Unattached),
            ]
        );
    }

    #[test]
    fn only_temporaries_an_hour_old_are_taken_for_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        let (old, fresh) = (
            layout.unattached().join(".creating-old"),
            layout.unattached().join(".creating-fresh"),
        );
        for path in [&old, &fresh] {
            fs::write(path, b"").unwrap();
        }
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        Layout::new(dir.path(), "node-a", "block-").unwrap();
        assert!(!old.exists());
        assert!(fresh.exists(), "another node may be creating it right now");
    }

    fn volume(layout: &Layout, attachment: Attachment) -> (Volume, PathBuf) {
        let volume = Volume { dataset_id: DatasetId::random(), size: 1024, attachment };
        let path = match &volume.attachment {
            Attachment::Elsewhere(node) => {
                let directory = layout.root().join("attached").join(node);
                fs::create_dir_all(&directory).unwrap();
                directory.join(layout.name(&volume.dataset_id, volume.size))
            }
            _ => layout.path_of(&volume),
        };
        fs::write(&path, b"someone's data").unwrap();
        (volume, path)
    }

    #[test]
    fn a_volume_moved_between_the_two_parts_of_a_listing_is_still_found() {
        // Issue 12: B detaches after A read unattached/, before A reads attached/node-b/.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        let (volume, on_b) = volume(&layout, Attachment::Elsewhere("node-b".into()));
        let detached = Volume { attachment: Attachment::Unattached, ..volume.clone() };
        let b_detaches = || {
            if on_b.exists() {
                fs::rename(&on_b, layout.path_of(&detached)).unwrap();
            }
        };
        let torn = layout.list_once(&mut |_| None, &mut { b_detaches }).unwrap();
        assert!(torn.is_empty(), "the interleaving did not happen: {torn:?}");
        fs::rename(layout.path_of(&detached), &on_b).unwrap();
        let listed = layout.list_settled(|_| None, b_detaches).unwrap();
        assert_eq!(listed, [detached]);
    }

    #[test]
    fn a_listing_that_never_settles_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        let (volume, on_b) = volume(&layout, Attachment::Elsewhere("node-b".into()));
        let unattached = layout.path_of(&Volume { attachment: Attachment::Unattached, ..volume });
        let busy_nodes = || {
            let (from, to) =
                if on_b.exists() { (&on_b, &unattached) } else { (&unattached, &on_b) };
            fs::rename(from, to).unwrap();
        };
        let error = layout.list_settled(|_| None, busy_nodes).unwrap_err();
        assert!(matches!(error, BackendError::Unsettled { .. }), "{error}");
    }

    /// Each way a name in `unattached/` can be taken while a node moves a volume there: the move
    /// stops, and both volumes keep their bytes.
    fn no_move_replaces_a_volume(layout: &Layout) {
        let (mine, here) = volume(layout, Attachment::Here { source: None });
        let theirs = layout.path_of(&Volume { attachment: Attachment::Unattached, ..mine.clone() });
        fs::write(&theirs, b"the data B detached").unwrap();
        let error = layout.detach(&mine).unwrap_err();
        assert!(matches!(error, BackendError::WouldReplace { .. }), "{error}");
        let temporary = layout.temporary_for_creating(&mine.dataset_id, mine.size);
        fs::write(&temporary, b"a new, empty volume").unwrap();
        let error = layout.publish(&temporary, &mine.dataset_id, mine.size).unwrap_err();
        assert!(matches!(error, BackendError::WouldReplace { .. }), "{error}");
        let unattached = Volume { attachment: Attachment::Unattached, ..mine };
        let error = layout.attach(&unattached).unwrap_err();
        assert!(matches!(error, BackendError::WouldReplace { .. }), "{error}");
        assert_eq!(fs::read(&theirs).unwrap(), b"the data B detached");
        assert_eq!(fs::read(&here).unwrap(), b"someone's data");
        assert_eq!(fs::read(&temporary).unwrap(), b"a new, empty volume");
    }

    #[test]
    fn no_move_replaces_a_volume_with_renameat2() {
        let dir = tempfile::tempdir().unwrap();
        no_move_replaces_a_volume(&Layout::new(dir.path(), "node-a", "block-").unwrap());
    }

    #[test]
    fn no_move_replaces_a_volume_with_the_fallbacks_of_nfs() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap().without_noreplace();
        no_move_replaces_a_volume(&layout);
    }

    #[test]
    fn the_fallbacks_move_volumes_as_renameat2_does() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap().without_noreplace();
        let (volume, unattached) = volume(&layout, Attachment::Unattached);
        let here = layout.attach(&volume).unwrap();
        assert!(!unattached.exists());
        layout
            .detach(&Volume { attachment: Attachment::Here { source: None }, ..volume.clone() })
            .unwrap();
        assert!(!here.exists());
        assert_eq!(fs::read(&unattached).unwrap(), b"someone's data");
        let doomed = layout.hide_for_destruction(&volume).unwrap();
        assert!(!unattached.exists() && doomed.exists());
    }

    #[test]
    fn the_second_name_a_crash_left_in_unattached_is_dropped_but_never_another_volume() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap().without_noreplace();
        let (volume, here) = volume(&layout, Attachment::Here { source: None });
        let twin = layout.path_of(&Volume { attachment: Attachment::Unattached, ..volume });
        fs::hard_link(&here, &twin).unwrap(); // the link of a detach made, the unlink not
        layout.drop_second_name(&here).unwrap();
        assert!(!twin.exists() && here.exists());
        fs::write(&twin, b"another volume").unwrap();
        layout.drop_second_name(&here).unwrap();
        assert_eq!(fs::read(&twin).unwrap(), b"another volume");
    }

    #[test]
    fn a_new_layout_knows_its_file_system_and_leaves_nothing_of_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("attached").join("node-a");
        fs::create_dir_all(&mine).unwrap();
        fs::write(mine.join(".probe-a.left-by-a-kill"), b"").unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        assert!(!layout.without_noreplace, "a local file system has RENAME_NOREPLACE");
        assert_eq!(read_names(&mine).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn temporary_names_are_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "node-a", "block-").unwrap();
        let id = DatasetId::random();
        assert_ne!(layout.temporary_for_creating(&id, 1), layout.temporary_for_creating(&id, 1));
    }
}
