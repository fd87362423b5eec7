//! Where the built programs are: beside the running `flockerctl`, as `cargo build` leaves them
//! in `target/<profile>/`, or in the directory `--bin-dir` names.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The three things the demo runs or loads, each known to exist.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub control: PathBuf,
    pub agent: PathBuf,
    pub library: PathBuf,
}

impl Binaries {
    /// Finds them in `bin_dir`, or beside this executable. A missing one is a one-line error
    /// that says how to build it.
    pub fn find(bin_dir: Option<&Path>) -> anyhow::Result<Self> {
        let directory = match bin_dir {
            Some(directory) => directory.to_owned(),
            None => beside_this_executable()?,
        };
        Ok(Self {
            control: existing(&directory, "flocker-control")?,
            agent: existing(&directory, "flocker-dataset-agent")?,
            library: existing(&directory, "libflocker_isolator.so")?,
        })
    }
}

fn beside_this_executable() -> anyhow::Result<PathBuf> {
    let executable = std::env::current_exe().context("cannot tell where flockerctl is")?;
    let directory = executable.parent().context("flockerctl has no directory")?;
    Ok(directory.to_owned())
}

fn existing(directory: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = directory.join(name);
    if path.is_file() {
        return Ok(path);
    }
    anyhow::bail!(
        "{} is missing: run `cargo build --release --workspace` (or `scripts/demo`, which builds \
         and runs the demo), or point --bin-dir at the directory that holds {name}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named_with_the_way_to_build_it() {
        let directory = tempfile::tempdir().unwrap();
        let error = Binaries::find(Some(directory.path())).unwrap_err().to_string();
        assert!(error.contains("flocker-control is missing"), "{error}");
        assert!(error.contains("cargo build --release --workspace"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn all_three_present_are_found() {
        let directory = tempfile::tempdir().unwrap();
        for name in ["flocker-control", "flocker-dataset-agent", "libflocker_isolator.so"] {
            std::fs::write(directory.path().join(name), b"").unwrap();
        }
        let found = Binaries::find(Some(directory.path())).unwrap();
        assert_eq!(found.library, directory.path().join("libflocker_isolator.so"));
    }
}
