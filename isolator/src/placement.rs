//! Putting a mounted volume where the task expects it.
//!
//! - No image and an absolute path: a symbolic link at that host path, published atomically
//!   (a temporary link renamed into place), parents created. Something already there that is not
//!   one of our links is refused and left alone — the original module deleted it.
//! - An image (`rootfs`) or a relative path: a bind mount that Mesos makes in the container's own
//!   mount namespace, returned in the launch info, its target under the rootfs or the sandbox.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use flocker_api::DatasetId;
use flocker_host::beneath::{Directory, Entry, WalkError};
use nix::sys::stat::Mode;
use serde::Serialize;

use crate::request::TaskPath;

/// `MS_BIND | MS_REC`.
const BIND_FLAGS: u32 = 4096 | 16384;
/// `MS_RDONLY`: Mesos remounts a bind mount that has it read-only.
const READ_ONLY_FLAG: u32 = 1;
/// Directories the isolator makes on the way to a link or a mount target.
const DIRECTORY_MODE: Mode = Mode::from_bits_truncate(0o755);
/// `CLONE_NEWNS`: Mesos applies mounts only in a new mount namespace.
const CLONE_NEWNS: i32 = 0x0002_0000;
/// Where Mesos shows the sandbox inside a container that has an image.
const SANDBOX_IN_IMAGE: &str = "mnt/mesos/sandbox";

/// Where a volume goes for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A symbolic link at this host path.
    Link(PathBuf),
    /// A bind mount onto this host path (under the rootfs or the sandbox).
    BindMount(PathBuf),
}

/// Decides where a volume goes. Pure.
pub fn placement(path: &TaskPath, sandbox: &Path, rootfs: Option<&Path>) -> Placement {
    let path = path.as_path();
    match (rootfs, path.is_absolute()) {
        (None, true) => Placement::Link(path.to_owned()),
        (None, false) => Placement::BindMount(sandbox.join(path)),
        (Some(rootfs), true) => Placement::BindMount(rootfs.join(relative(path))),
        (Some(rootfs), false) => Placement::BindMount(rootfs.join(SANDBOX_IN_IMAGE).join(path)),
    }
}

fn relative(path: &Path) -> PathBuf {
    path.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

/// What `prepare` gives Mesos: the `ContainerLaunchInfo` fields we set, in proto names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LaunchInfo {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clone_namespaces: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountInfo {
    pub source: String,
    pub target: String,
    pub flags: u32,
}

impl LaunchInfo {
    pub fn bind(&mut self, source: &Path, target: &Path, read_only: bool) {
        self.mounts.push(MountInfo {
            source: source.to_string_lossy().into_owned(),
            target: target.to_string_lossy().into_owned(),
            flags: if read_only { BIND_FLAGS | READ_ONLY_FLAG } else { BIND_FLAGS },
        });
        self.clone_namespaces = vec![CLONE_NEWNS];
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "{} already exists and is not a link of ours; it is left untouched (remove it, or \
         choose another FLOCKER_CONTAINER_VOLUME_PATH)",
        path.display()
    )]
    Occupied { path: PathBuf },
    #[error("{} (of the module's host_path_roots) does not exist: an operator must make it", root.display())]
    RootMissing { root: PathBuf },
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// A link is ours if it points at a dataset's mount point: a directory named by a dataset id.
pub fn is_our_link_target(target: &Path) -> bool {
    target.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.parse::<DatasetId>().is_ok())
}

/// The link's directory beneath its root, and its name.
fn split(link: &Path, root: &Path) -> Result<(PathBuf, OsString), PlacementError> {
    let occupied = || PlacementError::Occupied { path: link.to_owned() };
    let name = link.file_name().ok_or_else(occupied)?.to_owned();
    let parent = link.parent().ok_or_else(occupied)?;
    let relative = parent.strip_prefix(root).map_err(|_| occupied())?;
    Ok((relative.to_owned(), name))
}

fn open_root(root: &Path) -> Result<Directory, PlacementError> {
    Directory::open_trusted(root).map_err(|error| match error.io_kind() {
        Some(ErrorKind::NotFound) => PlacementError::RootMissing { root: root.to_owned() },
        _ => error.into(),
    })
}

/// Checks, before anything is done for a task, that its link can be made beneath `root`:
/// no symbolic link on the way, and nothing at the path but a link of ours. Returns the
/// directories that publishing will make, shallowest first.
pub fn plan_link(link: &Path, root: &Path) -> Result<Vec<PathBuf>, PlacementError> {
    let (relative, name) = split(link, root)?;
    let (current, missing) = open_root(root)?.deepest(&relative)?;
    if !missing.is_empty() {
        let mut path = current.path().to_owned();
        return Ok(missing
            .iter()
            .map(|name| {
                path.push(name);
                path.clone()
            })
            .collect());
    }
    match current.entry(&name)? {
        Entry::Absent => Ok(Vec::new()),
        Entry::SymbolicLink(target) if is_our_link_target(&target) => Ok(Vec::new()),
        _ => Err(PlacementError::Occupied { path: link.to_owned() }),
    }
}

/// Makes `link` point at `target`: walks from `root` without following links, makes the
/// missing directories (0755, owned like the root), and puts the link there atomically; a
/// stale link of ours is replaced, anything else refused. Returns the directories it made.
/// The link is not flushed to disk: no container outlives the machine, so after a crash
/// nothing needs it (recover finds the checkpoint, and removes the link if it is there).
pub fn publish_link(
    link: &Path,
    root: &Path,
    target: &Path,
) -> Result<Vec<PathBuf>, PlacementError> {
    let (relative, name) = split(link, root)?;
    let walked = open_root(root)?.walk(&relative, Some(DIRECTORY_MODE))?;
    let Some((directory, made)) = walked else {
        return Err(PlacementError::Occupied { path: link.to_owned() });
    };
    match directory.entry(&name)? {
        Entry::Absent => {}
        Entry::SymbolicLink(old) if is_our_link_target(&old) => directory.remove_file(&name)?,
        _ => return Err(PlacementError::Occupied { path: link.to_owned() }),
    }
    directory.symlink_new(target, &name).map_err(|error| match error.io_kind() {
        Some(ErrorKind::AlreadyExists) => PlacementError::Occupied { path: link.to_owned() },
        _ => error.into(),
    })?;
    Ok(made)
}

/// Removes `link` if it is still a link of ours (anything else there is left alone), then the
/// directories `made` for it, deepest first, each only if it is empty. A path changed since
/// (a directory on the way swapped for a link) is left as it is: a cleanup must not fail for
/// what someone else did, nor follow them.
pub fn remove_link(link: &Path, root: &Path, made: &[PathBuf]) -> Result<(), PlacementError> {
    let (relative, name) = split(link, root)?;
    let root_directory = match open_root(root) {
        Err(PlacementError::RootMissing { .. }) => return Ok(()),
        other => other?,
    };
    if let Some(directory) = walk_existing(&root_directory, &relative)? {
        match directory.entry(&name)? {
            Entry::Absent => {}
            Entry::SymbolicLink(target) if is_our_link_target(&target) => {
                directory.remove_file(&name)?
            }
            _ => log::warn!("{} is no longer our link; leaving it", link.display()),
        }
    }
    for made in made.iter().rev() {
        let (relative, name) = split(made, root)?;
        if let Some(directory) = walk_existing(&root_directory, &relative)?
            && !directory.remove_empty_directory(&name)?
        {
            log::info!("{} is not an empty directory any more; leaving it", made.display());
        }
    }
    Ok(())
}

/// The directory at `relative` beneath `root` if it is still there, reached without following
/// a link; `None` (and a warning) if something on the way is no longer a directory.
fn walk_existing(root: &Directory, relative: &Path) -> Result<Option<Directory>, PlacementError> {
    match root.walk(relative, None) {
        Ok(walked) => Ok(walked.map(|(directory, _)| directory)),
        Err(changed @ (WalkError::SymbolicLink { .. } | WalkError::NotADirectory { .. })) => {
            log::warn!("{changed}: it changed since the link was made; leaving it");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Makes the directory a bind mount goes onto, under `base` (the rootfs or the sandbox),
/// never following a symbolic link: an image or a task must not steer us into the host's
/// files. What it makes is owned like `base`, mode 0755.
pub fn prepare_mount_target(target: &Path, base: &Path) -> Result<(), PlacementError> {
    let inside = target
        .strip_prefix(base)
        .map_err(|_| PlacementError::Occupied { path: target.to_owned() })?;
    Directory::open_trusted(base)?.walk(inside, Some(DIRECTORY_MODE))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn path(text: &str) -> TaskPath {
        text.parse().unwrap()
    }

    #[test]
    fn an_absolute_path_without_an_image_is_a_host_link_and_everything_else_a_bind_mount() {
        let (sandbox, rootfs) = (Path::new("/sandbox"), Path::new("/rootfs"));
        assert_eq!(
            placement(&path("/tmp/data"), sandbox, None),
            Placement::Link("/tmp/data".into())
        );
        assert_eq!(
            placement(&path("data"), sandbox, None),
            Placement::BindMount("/sandbox/data".into())
        );
        assert_eq!(
            placement(&path("/var/lib/redis"), sandbox, Some(rootfs)),
            Placement::BindMount("/rootfs/var/lib/redis".into())
        );
        assert_eq!(
            placement(&path("data"), sandbox, Some(rootfs)),
            Placement::BindMount("/rootfs/mnt/mesos/sandbox/data".into())
        );
    }

    fn volume_in(dir: &Path) -> PathBuf {
        let volume = dir.join(DatasetId::random().to_string());
        fs::create_dir(&volume).unwrap();
        volume
    }

    #[test]
    fn a_link_is_published_over_a_stale_link_of_ours_but_never_over_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let volume = volume_in(root);
        let link = root.join("deep/er/data");
        let planned = plan_link(&link, root).unwrap();
        assert_eq!(planned, [root.join("deep"), root.join("deep/er")]);
        assert_eq!(publish_link(&link, root, &volume).unwrap(), planned);
        assert_eq!(fs::read_link(&link).unwrap(), volume);
        let newer = volume_in(root);
        assert!(plan_link(&link, root).unwrap().is_empty(), "a stale link of ours will do");
        assert!(publish_link(&link, root, &newer).unwrap().is_empty());
        assert_eq!(fs::read_link(&link).unwrap(), newer);
        remove_link(&link, root, &planned).unwrap();
        assert!(!root.join("deep").exists(), "what was made for the link goes with it");

        let occupied = root.join("occupied");
        fs::create_dir(&occupied).unwrap();
        fs::write(occupied.join("file"), b"theirs").unwrap();
        for taken in [&occupied, &occupied.join("file")] {
            assert!(matches!(plan_link(taken, root), Err(PlacementError::Occupied { .. })));
            let refused = publish_link(taken, root, &volume);
            assert!(matches!(refused, Err(PlacementError::Occupied { .. })), "{refused:?}");
        }
        let foreign = root.join("foreign");
        std::os::unix::fs::symlink("/etc", &foreign).unwrap();
        assert!(matches!(
            publish_link(&foreign, root, &volume),
            Err(PlacementError::Occupied { .. })
        ));
        remove_link(&foreign, root, &[]).unwrap();
        assert_eq!(fs::read_link(&foreign).unwrap(), Path::new("/etc"), "not ours: left alone");
        assert_eq!(fs::read(occupied.join("file")).unwrap(), b"theirs");
    }

    #[test]
    fn a_symbolic_link_on_the_way_to_a_link_is_refused_before_and_while_publishing() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        let volume = volume_in(dir.path());
        let refused = plan_link(&root.join("evil/x/data"), &root);
        assert!(matches!(refused, Err(PlacementError::Walk(WalkError::SymbolicLink { .. }))));
        // Swapped in after the plan: publishing walks again and refuses.
        let link = root.join("real/x/data");
        assert_eq!(plan_link(&link, &root).unwrap(), [root.join("real/x")]);
        fs::remove_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("real")).unwrap();
        let refused = publish_link(&link, &root, &volume);
        assert!(matches!(refused, Err(PlacementError::Walk(WalkError::SymbolicLink { .. }))));
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing made through the link");
        // Nor is anything removed through one, and the cleanup goes on.
        fs::create_dir(outside.join("x")).unwrap();
        remove_link(&link, &root, &[root.join("real/x")]).unwrap();
        assert!(outside.join("x").is_dir());
    }

    #[test]
    fn only_empty_directories_made_for_the_link_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let volume = volume_in(root);
        let link = root.join("a/b/data");
        let made = publish_link(&link, root, &volume).unwrap();
        fs::write(root.join("a/theirs"), b"x").unwrap();
        remove_link(&link, root, &made).unwrap();
        assert!(!root.join("a/b").exists());
        assert_eq!(fs::read(root.join("a/theirs")).unwrap(), b"x", "a is not empty: kept");
        let missing_root = root.join("nope");
        assert!(matches!(
            plan_link(&missing_root.join("x"), &missing_root),
            Err(PlacementError::RootMissing { .. })
        ));
    }

    #[test]
    fn a_mount_target_is_created_without_following_links_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path();
        prepare_mount_target(&rootfs.join("var/lib/redis"), rootfs).unwrap();
        assert!(rootfs.join("var/lib/redis").is_dir());
        std::os::unix::fs::symlink("/etc", rootfs.join("evil")).unwrap();
        let refused = prepare_mount_target(&rootfs.join("evil/x"), rootfs);
        assert!(matches!(refused, Err(PlacementError::Walk(WalkError::SymbolicLink { .. }))));
        let refused = prepare_mount_target(&rootfs.join("evil"), rootfs);
        assert!(
            matches!(refused, Err(PlacementError::Walk(WalkError::SymbolicLink { .. }))),
            "the target itself too"
        );
    }

    #[test]
    fn a_read_only_bind_mount_says_so() {
        let mut launch = LaunchInfo::default();
        launch.bind(Path::new("/flocker/x"), Path::new("/sandbox/data"), true);
        assert_eq!(launch.mounts[0].flags, BIND_FLAGS | READ_ONLY_FLAG);
    }

    #[test]
    fn a_bind_mount_asks_for_a_new_mount_namespace() {
        let mut launch = LaunchInfo::default();
        launch.bind(Path::new("/flocker/x"), Path::new("/rootfs/data"), false);
        let json = serde_json::to_value(&launch).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"mounts": [{"source": "/flocker/x", "target": "/rootfs/data", "flags": 20480}], "clone_namespaces": [131072]})
        );
    }
}
