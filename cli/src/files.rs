//! Crash-safe writing of new files that never overwrites an existing one.
//!
//! [`write_new`] writes the contents to a temporary file in the same
//! directory, sets its mode before any byte goes in, syncs it to disk, then
//! hard-links it to the final name. `link(2)` fails if the name exists, so a
//! file that appeared in the meantime (another process racing us) is never
//! clobbered; and a crash leaves either no final file or a complete one. The
//! temporary name is removed and the directory synced so the new name is
//! durable too.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Mode for secret files such as private keys: read-write for the owner only.
pub const SECRET_MODE: u32 = 0o600;

/// Mode for public files such as certificates: world-readable.
pub const PUBLIC_MODE: u32 = 0o644;

/// Why a new file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target already exists; nothing was written to it.
    #[error("refusing to overwrite {}", path.display())]
    AlreadyExists { path: PathBuf },
    /// An I/O step failed; `step` says which.
    #[error("cannot write {}: {step} failed", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

impl WriteError {
    fn io<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| WriteError::Io { path: path.to_path_buf(), step, source }
    }
}

/// Fails with [`WriteError::AlreadyExists`] for the first path that exists
/// (a dangling symbolic link counts as existing). Call it before doing any
/// costly work whose result would go to those paths.
pub fn refuse_existing(paths: &[&Path]) -> Result<(), WriteError> {
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => {
                return Err(WriteError::AlreadyExists { path: path.to_path_buf() });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(WriteError::io(path, "checking for an existing file")(error)),
        }
    }
    Ok(())
}

/// Creates `path` with exactly `contents` and permission bits `mode`,
/// crash-safely, failing with [`WriteError::AlreadyExists`] rather than
/// replacing a file that is already there.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let directory = parent_directory(path);
    let file_name =
        path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();

    // tempfile creates the file with O_EXCL and mode 0600, so nobody else can
    // read it; set the final mode (exactly, whatever the umask) before the
    // contents go in.
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(SECRET_MODE))
        .tempfile_in(directory)
        .map_err(WriteError::io(path, "creating a temporary file"))?;
    temporary
        .as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(WriteError::io(path, "setting the mode of the temporary file"))?;
    temporary.write_all(contents).map_err(WriteError::io(path, "writing the temporary file"))?;
    temporary.as_file().sync_all().map_err(WriteError::io(path, "syncing the temporary file"))?;

    // On error the temporary file is removed when `temporary` is dropped.
    match fs::hard_link(temporary.path(), path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(WriteError::AlreadyExists { path: path.to_path_buf() });
        }
        Err(error) => return Err(WriteError::io(path, "linking the temporary file")(error)),
    }

    // The final file is complete: a temporary name left behind is untidy but
    // not a failure (it has the same mode as the final file).
    let temporary_path = temporary.path().to_path_buf();
    if let Err(error) = temporary.close() {
        log::warn!("cannot remove temporary file {}: {error}", temporary_path.display());
    }

    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(WriteError::io(path, "syncing the directory"))?;
    log::debug!("wrote {} (mode {mode:o})", path.display());
    Ok(())
}

/// The directory that holds `path` (the current one for a bare file name).
fn parent_directory(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn names_in(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_contents_and_mode_and_leaves_no_temporary_file() {
        let directory = tempfile::tempdir().unwrap();
        let secret = directory.path().join("secret.key");
        let public = directory.path().join("public.crt");

        write_new(&secret, b"secret bytes", SECRET_MODE).unwrap();
        write_new(&public, b"public bytes", PUBLIC_MODE).unwrap();

        assert_eq!(fs::read(&secret).unwrap(), b"secret bytes");
        assert_eq!(fs::read(&public).unwrap(), b"public bytes");
        assert_eq!(mode_of(&secret), 0o600);
        assert_eq!(mode_of(&public), 0o644);
        assert_eq!(names_in(directory.path()), ["public.crt", "secret.key"]);
    }

    #[test]
    fn refuses_to_replace_an_existing_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("taken");
        fs::write(&path, b"original").unwrap();

        let error = write_new(&path, b"replacement", PUBLIC_MODE).unwrap_err();

        assert!(matches!(&error, WriteError::AlreadyExists { path: p } if p == &path));
        assert_eq!(error.to_string(), format!("refusing to overwrite {}", path.display()));
        assert_eq!(fs::read(&path).unwrap(), b"original");
        assert_eq!(names_in(directory.path()), ["taken"]);
    }

    #[test]
    fn refuse_existing_names_the_first_existing_path_including_dangling_links() {
        let directory = tempfile::tempdir().unwrap();
        let absent = directory.path().join("absent");
        let dangling = directory.path().join("dangling");
        std::os::unix::fs::symlink(directory.path().join("nowhere"), &dangling).unwrap();

        refuse_existing(&[&absent]).unwrap();
        let error = refuse_existing(&[&absent, &dangling]).unwrap_err();
        assert!(matches!(error, WriteError::AlreadyExists { path } if path == dangling));
    }

    #[test]
    fn missing_directory_is_an_io_error_naming_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("no-such-dir").join("file");

        let error = write_new(&path, b"x", PUBLIC_MODE).unwrap_err();

        assert!(matches!(error, WriteError::Io { .. }));
        assert!(error.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn bare_file_names_live_in_the_current_directory() {
        assert_eq!(parent_directory(Path::new("cluster.crt")), Path::new("."));
        assert_eq!(parent_directory(Path::new("/x/cluster.crt")), Path::new("/x"));
    }
}
