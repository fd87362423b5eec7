//! Paths walked beneath a trusted directory, one component at a time, never following a
//! symbolic link. The isolator runs as root and a task chooses the path: a component that is a
//! link (or becomes one in a race) must not steer it anywhere else. Each step opens the next
//! directory relative to the one before with `O_NOFOLLOW | O_DIRECTORY`, so there is no moment
//! in which a swapped component could be followed; every later operation is made relative to
//! the directory found.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, readlinkat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, symlinkat, unlinkat};

/// Why a walk stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{} is a symbolic link; refusing to follow it", path.display())]
    SymbolicLink { path: PathBuf },
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} has a component that is not a plain name", path.display())]
    NotPlain { path: PathBuf },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What is at a name in a directory, not following a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Absent,
    Directory,
    SymbolicLink(PathBuf),
    Other,
}

/// An open directory, and the path it was reached by (for messages and for what was made).
#[derive(Debug)]
pub struct Directory {
    fd: OwnedFd,
    path: PathBuf,
}

impl Directory {
    /// Opens a directory an operator or Mesos named (its own links are theirs to have made).
    pub fn open_trusted(path: &Path) -> Result<Self, WalkError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path, flags, Mode::empty()).map_err(io("open", path))?;
        Ok(Self { fd, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Walks `relative` (plain names only) from here. Missing directories are made with
    /// `create` (the mode; owned like this directory) if given, else the walk stops at the
    /// first one with `Ok(None)`. Returns the directory reached and, deepest last, the
    /// directories this walk made.
    pub fn walk(
        &self,
        relative: &Path,
        create: Option<Mode>,
    ) -> Result<Option<(Directory, Vec<PathBuf>)>, WalkError> {
        let (mut current, missing) = self.deepest(relative)?;
        if missing.is_empty() {
            return Ok(Some((current, Vec::new())));
        }
        let Some(mode) = create else { return Ok(None) };
        let owner = self.stat()?;
        let mut made = Vec::with_capacity(missing.len());
        for name in missing {
            current = current.make_directory(&name, mode, &owner)?;
            made.push(current.path.clone());
        }
        Ok(Some((current, made)))
    }

    /// The deepest directory of `relative` (plain names only) that is there, reached without
    /// following a link, and the names below it that are not.
    pub fn deepest(&self, relative: &Path) -> Result<(Directory, Vec<OsString>), WalkError> {
        let mut current = self.reopen()?;
        let mut components = relative.components();
        while let Some(component) = components.next() {
            let Component::Normal(name) = component else {
                return Err(WalkError::NotPlain { path: self.path.join(relative) });
            };
            match current.child(name)? {
                Some(next) => current = next,
                None => {
                    let mut missing = vec![name.to_owned()];
                    for below in components {
                        let Component::Normal(name) = below else {
                            return Err(WalkError::NotPlain { path: self.path.join(relative) });
                        };
                        missing.push(name.to_owned());
                    }
                    return Ok((current, missing));
                }
            }
        }
        Ok((current, Vec::new()))
    }

    /// The directory `name` in this one; `None` if nothing is there.
    pub fn child(&self, name: &OsStr) -> Result<Option<Directory>, WalkError> {
        let path = self.path.join(name);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(self.fd.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Self { fd, path })),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => match self.entry(name)? {
                Entry::SymbolicLink(_) => Err(WalkError::SymbolicLink { path }),
                _ => Err(WalkError::NotADirectory { path }),
            },
            Err(errno) => Err(io("open", &path)(errno)),
        }
    }

    /// Makes the directory `name` here with `mode` whatever the umask, owned as `owner` is;
    /// fails if anything is there already.
    fn make_directory(
        &self,
        name: &OsStr,
        mode: Mode,
        owner: &FileStat,
    ) -> Result<Directory, WalkError> {
        let path = self.path.join(name);
        mkdirat(self.fd.as_fd(), name, mode).map_err(io("create", &path))?;
        let made = self.child(name)?.ok_or(WalkError::NotADirectory { path })?;
        made.set_owner(Uid::from_raw(owner.st_uid), Gid::from_raw(owner.st_gid))?;
        nix::sys::stat::fchmod(made.fd.as_fd(), mode).map_err(io("set the mode of", &made.path))?;
        Ok(made)
    }

    /// What is at `name` here, not following a link.
    pub fn entry(&self, name: &OsStr) -> Result<Entry, WalkError> {
        let path = self.path.join(name);
        let stat = match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(Entry::Absent),
            Err(errno) => return Err(io("inspect", &path)(errno)),
        };
        Ok(match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => Entry::Directory,
            SFlag::S_IFLNK => {
                let target = readlinkat(self.fd.as_fd(), name).map_err(io("read", &path))?;
                Entry::SymbolicLink(PathBuf::from(target))
            }
            _ => Entry::Other,
        })
    }

    /// Puts a symbolic link to `target` at `name`, atomically (a temporary link renamed into
    /// place without replacing): fails with `AlreadyExists` if something is at `name`.
    pub fn symlink_new(&self, target: &Path, name: &OsStr) -> Result<(), WalkError> {
        let mut temporary = OsString::from(".");
        temporary.push(name);
        temporary.push(format!(".flocker-{}", std::process::id()));
        temporary.push(format!("-{:x}", nanos()));
        let temporary_path = self.path.join(&temporary);
        symlinkat(target, self.fd.as_fd(), temporary.as_os_str())
            .map_err(io("link", &temporary_path))?;
        let renamed = renameat2(
            self.fd.as_fd(),
            temporary.as_os_str(),
            self.fd.as_fd(),
            name,
            RenameFlags::RENAME_NOREPLACE,
        );
        renamed.map_err(|errno| {
            let _ = unlinkat(self.fd.as_fd(), temporary.as_os_str(), UnlinkatFlags::NoRemoveDir);
            io("link", &self.path.join(name))(errno)
        })
    }

    /// Removes the file or link `name` here.
    pub fn remove_file(&self, name: &OsStr) -> Result<(), WalkError> {
        unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            .map_err(io("remove", &self.path.join(name)))
    }

    /// Removes the directory `name` here if it is an empty directory: whether it was removed
    /// (or already gone).
    pub fn remove_empty_directory(&self, name: &OsStr) -> Result<bool, WalkError> {
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(true),
            // Not empty, a mount point, or no longer a directory: not ours to remove.
            Err(Errno::ENOTEMPTY | Errno::EEXIST | Errno::EBUSY | Errno::ENOTDIR) => Ok(false),
            Err(errno) => Err(io("remove", &self.path.join(name))(errno)),
        }
    }

    pub fn stat(&self) -> Result<FileStat, WalkError> {
        fstat(self.fd.as_fd()).map_err(io("inspect", &self.path))
    }

    /// Whether the directory holds nothing.
    pub fn is_empty(&self) -> Result<bool, WalkError> {
        let mut entries =
            std::fs::read_dir(self.proc_path()).map_err(io_err("read", &self.path))?;
        Ok(entries.next().is_none())
    }

    pub fn set_owner(&self, uid: Uid, gid: Gid) -> Result<(), WalkError> {
        fchown(self.fd.as_fd(), Some(uid), Some(gid)).map_err(io("change the owner of", &self.path))
    }

    /// Another descriptor of the same directory, so a walk can start from it.
    fn reopen(&self) -> Result<Directory, WalkError> {
        let fd = self.fd.try_clone().map_err(io_err("open", &self.path))?;
        Ok(Self { fd, path: self.path.clone() })
    }

    /// The directory through this process's descriptor: `read_dir` of it reads exactly the
    /// directory opened, whatever happened to its path since.
    fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(Errno) -> WalkError {
    let path = path.to_owned();
    move |errno| WalkError::Io { action, path, source: errno.into() }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WalkError {
    let path = path.to_owned();
    move |source| WalkError::Io { action, path, source }
}

impl WalkError {
    /// The underlying I/O error's kind, if the walk failed on one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            WalkError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn root() -> (tempfile::TempDir, Directory) {
        let dir = tempfile::tempdir().unwrap();
        let opened = Directory::open_trusted(dir.path()).unwrap();
        (dir, opened)
    }

    #[test]
    fn a_walk_makes_what_is_missing_with_the_mode_asked_and_says_what_it_made() {
        let (dir, root) = root();
        fs::create_dir(dir.path().join("a")).unwrap();
        let (reached, made) =
            root.walk(Path::new("a/b/c"), Some(Mode::from_bits_truncate(0o755))).unwrap().unwrap();
        assert_eq!(reached.path(), dir.path().join("a/b/c"));
        assert_eq!(made, [dir.path().join("a/b"), dir.path().join("a/b/c")]);
        let mode = fs::metadata(dir.path().join("a/b")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(root.walk(Path::new("a/x"), None).unwrap().is_none(), "no creating: stops");
    }

    #[test]
    fn a_link_anywhere_on_the_way_is_refused_not_followed() {
        let (dir, root) = root();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("evil")).unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("a/evil")).unwrap();
        for path in ["evil/x", "a/evil", "a/evil/y"] {
            let refused = root.walk(Path::new(path), Some(Mode::from_bits_truncate(0o755)));
            assert!(matches!(refused, Err(WalkError::SymbolicLink { .. })), "{path}: {refused:?}");
        }
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0, "nothing made through it");
        fs::write(dir.path().join("file"), b"x").unwrap();
        let refused = root.walk(Path::new("file/x"), None);
        assert!(matches!(refused, Err(WalkError::NotADirectory { .. })), "{refused:?}");
        let refused = root.walk(Path::new("../x"), None);
        assert!(matches!(refused, Err(WalkError::NotPlain { .. })), "{refused:?}");
    }

    #[test]
    fn a_new_link_never_replaces_anything() {
        let (dir, root) = root();
        root.symlink_new(Path::new("/target"), OsStr::new("link")).unwrap();
        assert_eq!(root.entry(OsStr::new("link")).unwrap(), Entry::SymbolicLink("/target".into()));
        let again = root.symlink_new(Path::new("/other"), OsStr::new("link"));
        assert_eq!(again.unwrap_err().io_kind(), Some(io::ErrorKind::AlreadyExists));
        assert_eq!(fs::read_link(dir.path().join("link")).unwrap(), Path::new("/target"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary link left");
        root.remove_file(OsStr::new("link")).unwrap();
        assert_eq!(root.entry(OsStr::new("link")).unwrap(), Entry::Absent);
    }

    #[test]
    fn only_empty_directories_are_removed() {
        let (dir, root) = root();
        fs::create_dir_all(dir.path().join("full/x")).unwrap();
        fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(!root.remove_empty_directory(OsStr::new("full")).unwrap());
        assert!(root.remove_empty_directory(OsStr::new("empty")).unwrap());
        assert!(root.remove_empty_directory(OsStr::new("empty")).unwrap(), "gone is fine");
        assert!(dir.path().join("full/x").is_dir());
        assert!(!root.is_empty().unwrap());
        assert!(
            root.child(OsStr::new("full"))
                .unwrap()
                .unwrap()
                .child(OsStr::new("x"))
                .unwrap()
                .unwrap()
                .is_empty()
                .unwrap()
        );
    }
}
