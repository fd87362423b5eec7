//! The directories datasets are mounted on, `<mount_root>/<dataset_id>`: made when a dataset is
//! mounted and removed when it is unmounted, so that nothing can be written to the node's own
//! disk at that path while the dataset is away. Nothing that is not ours is ever replaced.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::{BackendError, VOLUME_ROOT_MODE};
use flocker_host::mounts::MountTable;

/// Makes `target` an empty directory to mount on. Refuses if something else is there, a mount
/// included: mounts are never stacked.
pub fn prepare(target: &Path) -> Result<(), BackendError> {
    let mounts =
        MountTable::read().map_err(BackendError::io("read", Path::new("/proc/self/mountinfo")))?;
    if mounts.at(target).is_some() {
        return Err(refused(target, "something is mounted there already"));
    }
    make_root(target)?;
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
            .mode(0o755)
            .create(target)
            .map_err(BackendError::io("create", target)),
        Err(e) => Err(BackendError::io("inspect", target)(e)),
        Ok(metadata) if !metadata.is_dir() => {
            Err(refused(target, "something that is not a directory is in the way"))
        }
        Ok(_) => match fs::read_dir(target).map_err(BackendError::io("read", target))?.next() {
            None => Ok(()),
            Some(_) => Err(refused(target, "the directory is not empty; it is not ours to hide")),
        },
    }
}

/// Makes the directory that holds the mount points (`mount_root`) if needed. Tasks reach their
/// volumes through it, so it is traversable by all.
pub fn make_root(target: &Path) -> Result<(), BackendError> {
    let Some(root) = target.parent() else { return Ok(()) };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root)
        .map_err(BackendError::io("create", root))
}

/// Removes the mount point once nothing is mounted on it, if it is empty.
pub fn remove(target: &Path) -> Result<(), BackendError> {
    match fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
            log::warn!("{} is not empty after the unmount; leaving it", target.display());
            Ok(())
        }
        Err(e) => Err(BackendError::io("remove", target)(e)),
    }
}

/// A new file system holds only an empty `lost+found`: remove it, so that programs that want
/// an empty directory (initdb, say) accept the volume, and give its root the mode of every new
/// volume, whatever `mkfs` chose: root's alone to write, not everyone's as Flocker made it (the
/// isolator gives a fresh volume's root to the task's user).
pub fn tidy_fresh_filesystem(target: &Path) -> Result<(), BackendError> {
    let entries: Vec<_> = fs::read_dir(target)
        .map_err(BackendError::io("read", target))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    if entries != ["lost+found"] {
        return Ok(());
    }
    let lost_found = target.join("lost+found");
    if fs::remove_dir(&lost_found).is_ok() {
        fs::set_permissions(target, fs::Permissions::from_mode(VOLUME_ROOT_MODE))
            .map_err(BackendError::io("set the mode of", target))?;
    }
    Ok(())
}

fn refused(path: &Path, problem: &str) -> BackendError {
    BackendError::Refused { path: path.to_owned(), problem: problem.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_point_is_made_and_removed_but_never_over_someone_elses_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("flocker").join("d1");
        prepare(&target).unwrap();
        assert!(target.is_dir());
        prepare(&target).unwrap(); // an empty directory will do
        fs::write(target.join("precious"), b"data").unwrap();
        assert!(matches!(prepare(&target), Err(BackendError::Refused { .. })));
        remove(&target).unwrap(); // not empty: left alone
        assert_eq!(fs::read(target.join("precious")).unwrap(), b"data");
        let file = dir.path().join("flocker").join("d2");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(prepare(&file), Err(BackendError::Refused { .. })));
        fs::remove_file(target.join("precious")).unwrap();
        remove(&target).unwrap();
        assert!(!target.exists());
    }

    #[test]
    fn only_a_lone_empty_lost_and_found_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        fs::create_dir(dir.path().join("lost+found")).unwrap();
        tidy_fresh_filesystem(dir.path()).unwrap();
        assert!(!dir.path().join("lost+found").exists());
        assert_eq!(fs::metadata(dir.path()).unwrap().permissions().mode() & 0o7777, 0o755);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(dir.path().join("lost+found")).unwrap();
        fs::write(dir.path().join("data"), b"x").unwrap();
        tidy_fresh_filesystem(dir.path()).unwrap();
        assert!(dir.path().join("lost+found").exists());
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "a volume in use keeps the mode it has");
    }
}
