//! Renames that never replace what is at the new name. `rename(2)` silently replaces an existing
//! file, so on storage several nodes share, one node's rename can unlink a volume another node
//! has just put there. These refuse instead, atomically: there is no moment between a check and
//! the rename in which another process could create the name.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

/// Renames `from` to `to` with `RENAME_NOREPLACE`. Fails with [`io::ErrorKind::AlreadyExists`]
/// if `to` exists, and with [`io::ErrorKind::Unsupported`] on file systems that cannot refuse
/// to replace (NFS and most FUSE file systems): see [`link_then_unlink`] for those.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // What a file system without the flag answers (ENOSYS: a kernel without renameat2).
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the file system cannot rename without replacing (RENAME_NOREPLACE)",
        )),
        Err(errno) => Err(errno.into()),
    }
}

/// The same end for a regular file where [`rename`] is unsupported: a hard link at `to`
/// (`link(2)` refuses an existing name, on NFS too), then the unlink of `from`. Between the two
/// the file has both names; a repeat after a crash there finds `to` already linked to the same
/// file and only unlinks `from`. Fails with [`io::ErrorKind::AlreadyExists`] if `to` is another
/// file. Unlike a rename it does not claim `from`: two processes linking the same `from` to two
/// names both succeed, so use it only where nobody else moves `from`.
pub fn link_then_unlink(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && same_file(from, to)? => {}
        Err(e) => return Err(e),
    }
    fs::remove_file(from)
}

fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    let (a, b) = (fs::symlink_metadata(a)?, fs::symlink_metadata(b)?);
    Ok((a.dev(), a.ino()) == (b.dev(), b.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in names {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn a_rename_to_a_free_name_moves_the_file() {
        let dir = files(&[("a", b"volume")]);
        rename(&dir.path().join("a"), &dir.path().join("b")).unwrap();
        assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"volume");
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn a_rename_onto_an_existing_name_changes_nothing() {
        let dir = files(&[("a", b"new and empty"), ("b", b"someone's data")]);
        let error = rename(&dir.path().join("a"), &dir.path().join("b")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"someone's data");
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"new and empty");
    }

    #[test]
    fn a_directory_is_never_renamed_over_another_even_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap(); // plain rename(2) would replace an empty directory
        assert_eq!(rename(&a, &b).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert!(a.is_dir() && b.is_dir());
    }

    #[test]
    fn link_then_unlink_moves_a_file_and_never_replaces_one() {
        let dir = files(&[("a", b"volume"), ("c", b"someone's data")]);
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        link_then_unlink(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"volume");
        assert!(!a.exists());
        let error = link_then_unlink(&b, &c).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&c).unwrap(), b"someone's data");
        assert_eq!(fs::read(&b).unwrap(), b"volume");
    }

    #[test]
    fn link_then_unlink_finishes_a_move_a_crash_left_with_both_names() {
        let dir = files(&[("a", b"volume")]);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::hard_link(&a, &b).unwrap(); // the crash came between the link and the unlink
        link_then_unlink(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), b"volume");
        assert_eq!(fs::metadata(&b).unwrap().nlink(), 1);
    }
}
