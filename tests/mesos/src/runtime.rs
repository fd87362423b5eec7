//! Where the real Mesos is: the runtime `scripts/mesos-runtime` built (the official 1.11.0
//! library made loadable, our `mesos-local`, `mesos-containerizer` and the executors), and the
//! isolator module built against the same SDK.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The symbol Mesos looks up in the module library.
pub const MODULE_NAME: &str = "com_clusterhq_flocker_FlockerIsolator";

#[derive(Debug, Clone)]
pub struct Runtime {
    /// `scripts/mesos-runtime`'s output directory.
    pub directory: PathBuf,
    /// `libflocker_isolator.so` with the Mesos module in it.
    pub module: PathBuf,
}

impl Runtime {
    /// From `FLOCKER_MESOS_RUNTIME` (and `FLOCKER_ISOLATOR_MODULE`, else the library built
    /// beside this test); `scripts/test` sets them. Fails loudly without them: these tests are
    /// run on purpose, never skipped in silence.
    pub fn from_env() -> Self {
        let directory =
            std::env::var_os("FLOCKER_MESOS_RUNTIME").map(PathBuf::from).unwrap_or_else(|| {
                panic!(
                    "FLOCKER_MESOS_RUNTIME is not set: the real-Mesos suite needs the runtime \
                     scripts/mesos-runtime builds; scripts/test runs this suite with it"
                )
            });
        assert!(
            directory.join("bin/mesos-local").exists(),
            "{} is not a Mesos runtime (no bin/mesos-local)",
            directory.display()
        );
        let module = std::env::var_os("FLOCKER_ISOLATOR_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(|| flocker_testkit::built_binary("libflocker_isolator.so"));
        assert_has_module(&module);
        Self { directory, module }
    }

    pub fn mesos_local(&self) -> PathBuf {
        self.directory.join("bin/mesos-local")
    }

    pub fn launcher_dir(&self) -> PathBuf {
        self.directory.join("libexec/mesos")
    }
}

/// The library must export the module: built without Mesos headers it has the C ABI only.
fn assert_has_module(library: &Path) {
    let symbols = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library)
        .output()
        .unwrap_or_else(|e| panic!("nm {}: {e}", library.display()));
    let text = String::from_utf8_lossy(&symbols.stdout);
    assert!(
        text.lines().any(|line| line.ends_with(MODULE_NAME)),
        "{} does not export {MODULE_NAME}: build it with MESOS_INCLUDE_DIRS and MESOS_CXXFLAGS \
         from the runtime's env.sh (scripts/test does)",
        library.display()
    );
}
