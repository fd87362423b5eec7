//! Putting a mounted volume where the task expects it.
//!
//! - No image and an absolute path: a symbolic link at that host path, published atomically
//!   (a temporary link renamed into place), parents created. Something already there that is not
//!   one of our links is refused and left alone — the original module deleted it.
//! - An image (`rootfs`) or a relative path: a bind mount that Mesos makes in the container's own
//!   mount namespace, returned in the launch info, its target under the rootfs or the sandbox.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use flocker_api::DatasetId;
use flocker_host::PathError;
use serde::Serialize;

use crate::request::TaskPath;

/// `MS_BIND | MS_REC`.
const BIND_FLAGS: u32 = 4096 | 16384;
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
    pub fn bind(&mut self, source: &Path, target: &Path) {
        self.mounts.push(MountInfo {
            source: source.to_string_lossy().into_owned(),
            target: target.to_string_lossy().into_owned(),
            flags: BIND_FLAGS,
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
    #[error("{} is a symbolic link inside the image; refusing to follow it", path.display())]
    LinkInImage { path: PathBuf },
    #[error(transparent)]
    Io(#[from] PathError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PlacementError {
    let at = PathError::at(action, path);
    move |source| PlacementError::Io(at(source))
}

/// A link is ours if it points at a dataset's mount point: a directory named by a dataset id.
pub fn is_our_link(path: &Path) -> bool {
    fs::read_link(path).is_ok_and(|target| {
        target.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.parse::<DatasetId>().is_ok())
    })
}

/// Checks, before anything is done for a task, that its link can be made: nothing is at the
/// path, or a link of ours.
pub fn check_link_free(link: &Path) -> Result<(), PlacementError> {
    match fs::symlink_metadata(link) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Ok(_) if is_our_link(link) => Ok(()),
        Ok(_) => Err(PlacementError::Occupied { path: link.to_owned() }),
        Err(e) => Err(io("inspect", link)(e)),
    }
}

/// Makes `link` point at `target`, atomically; a stale link of ours is replaced. The link is
/// not flushed to disk: no container outlives the machine, so after a crash nothing needs it
/// (recover finds the checkpoint, and removes the link if it is there).
pub fn publish_link(link: &Path, target: &Path) -> Result<(), PlacementError> {
    let parent = link.parent().ok_or_else(|| PlacementError::Occupied { path: link.to_owned() })?;
    check_link_free(link)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(io("create", parent))?;
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = parent.join(format!(".{name}.flocker-{}", uuid::Uuid::new_v4().simple()));
    std::os::unix::fs::symlink(target, &temporary).map_err(io("link", &temporary))?;
    fs::rename(&temporary, link).map_err(|e| {
        let _ = fs::remove_file(&temporary);
        io("link", link)(e)
    })
}

/// Removes `link` if it is still a link of ours; anything else there is left alone.
pub fn remove_link(link: &Path) -> Result<(), PlacementError> {
    match fs::symlink_metadata(link) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Ok(_) if is_our_link(link) => fs::remove_file(link).map_err(io("remove", link)),
        Ok(_) => {
            log::warn!("{} is no longer our link; leaving it", link.display());
            Ok(())
        }
        Err(e) => Err(io("inspect", link)(e)),
    }
}

/// Creates the directory a bind mount goes onto, under `base` (the rootfs or the sandbox),
/// never following a symbolic link: an image must not steer us into the host's files.
pub fn prepare_mount_target(target: &Path, base: &Path) -> Result<(), PlacementError> {
    let inside = target.strip_prefix(base).unwrap_or(target);
    let mut current = base.to_owned();
    for component in inside.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PlacementError::LinkInImage { path: current });
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(PlacementError::Occupied { path: current }),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&current)
                    .map_err(io("create", &current))?;
            }
            Err(e) => return Err(io("inspect", &current)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_link_is_published_over_a_stale_link_of_ours_but_never_over_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join(DatasetId::random().to_string());
        fs::create_dir(&volume).unwrap();
        let link = dir.path().join("deep/er/data");
        publish_link(&link, &volume).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), volume);
        let newer = dir.path().join(DatasetId::random().to_string());
        publish_link(&link, &newer).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), newer);
        remove_link(&link).unwrap();
        assert!(fs::symlink_metadata(&link).is_err());

        let occupied = dir.path().join("occupied");
        fs::create_dir(&occupied).unwrap();
        fs::write(occupied.join("file"), b"theirs").unwrap();
        assert!(matches!(publish_link(&occupied, &volume), Err(PlacementError::Occupied { .. })));
        let foreign = dir.path().join("foreign");
        std::os::unix::fs::symlink("/etc", &foreign).unwrap();
        assert!(matches!(publish_link(&foreign, &volume), Err(PlacementError::Occupied { .. })));
        remove_link(&foreign).unwrap();
        assert_eq!(fs::read_link(&foreign).unwrap(), Path::new("/etc"), "not ours: left alone");
        assert_eq!(fs::read(occupied.join("file")).unwrap(), b"theirs");
    }

    #[test]
    fn a_mount_target_is_created_without_following_links_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path();
        prepare_mount_target(&rootfs.join("var/lib/redis"), rootfs).unwrap();
        assert!(rootfs.join("var/lib/redis").is_dir());
        std::os::unix::fs::symlink("/etc", rootfs.join("evil")).unwrap();
        let refused = prepare_mount_target(&rootfs.join("evil/x"), rootfs);
        assert!(matches!(refused, Err(PlacementError::LinkInImage { .. })));
    }

    #[test]
    fn a_bind_mount_asks_for_a_new_mount_namespace() {
        let mut launch = LaunchInfo::default();
        launch.bind(Path::new("/flocker/x"), Path::new("/rootfs/data"));
        let json = serde_json::to_value(&launch).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"mounts": [{"source": "/flocker/x", "target": "/rootfs/data", "flags": 20480}], "clone_namespaces": [131072]})
        );
    }
}
