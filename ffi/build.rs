//! Builds the Mesos module part (`cpp-shim/`) into the library when Mesos's headers are there:
//! `MESOS_INCLUDE_DIRS` (directories separated by `:`), or a standard install that has
//! `mesos/module/isolator.hpp`. Without them the library is the C ABI alone, and the build says
//! so. `MESOS_CXXFLAGS` adds the agent's own ABI-changing flags (cpp-shim/BUILDING.md).

use std::env;
use std::path::{Path, PathBuf};

/// The symbol Mesos looks up, exported from the library (rustc exports only Rust items).
const MODULE_SYMBOL: &str = "com_clusterhq_flocker_FlockerIsolator";

fn main() {
    println!("cargo:rerun-if-env-changed=MESOS_INCLUDE_DIRS");
    println!("cargo:rerun-if-env-changed=MESOS_CXXFLAGS");
    println!("cargo:rerun-if-changed=../cpp-shim/flocker_isolator.cpp");
    println!("cargo:rerun-if-changed=../cpp-shim/flocker_isolator.hpp");
    println!("cargo:rerun-if-changed=include/flocker_isolator.h");
    let Some(include_dirs) = mesos_include_dirs() else {
        println!(
            "cargo:warning=Mesos headers not found (set MESOS_INCLUDE_DIRS, or install Mesos): \
             built the C ABI only; the Mesos module part (cpp-shim) was skipped"
        );
        return;
    };
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file(manifest.join("../cpp-shim/flocker_isolator.cpp"))
        .include(manifest.join("include"))
        .define("__STDC_FORMAT_MACROS", None)
        .flag("-Wall")
        .flag("-Wextra")
        // Into the cdylib only: the shim's Mesos symbols are bound by the agent that loads the
        // library, so an executable linking the rlib (a test, a bench) could not have them.
        .cargo_metadata(false);
    // The agent's own build flags that change what headers mean (for the official 1.11.0 build:
    // `-DUSE_SSL_SOCKET=1 -DPICOJSON_USE_INT64`); scripts/mesos-runtime says which.
    for flag in env::var("MESOS_CXXFLAGS").unwrap_or_default().split_whitespace() {
        build.flag(flag);
    }
    for directory in &include_dirs {
        // Mesos's own headers are not ours to fix: their warnings are not the shim's.
        build.flag("-isystem").flag(directory.to_string_lossy().as_ref());
    }
    build.compile("flocker_mesos_shim");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    let archive = out_dir.join("libflocker_mesos_shim.a");
    // Whole: nothing in the library refers to the module descriptor; Mesos looks it up by name.
    for arg in ["-Wl,--whole-archive", &archive.display().to_string(), "-Wl,--no-whole-archive"] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
    println!("cargo:rustc-cdylib-link-arg=-lstdc++");

    let map = out_dir.join("module.map");
    std::fs::write(&map, format!("{{ global: {MODULE_SYMBOL}; }};\n"))
        .expect("write the version script");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
    println!(
        "cargo:warning=built the Mesos module {MODULE_SYMBOL} against {}",
        describe(&include_dirs)
    );
}

fn mesos_include_dirs() -> Option<Vec<PathBuf>> {
    if let Ok(dirs) = env::var("MESOS_INCLUDE_DIRS") {
        let dirs: Vec<PathBuf> =
            env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()).collect();
        return dirs.iter().any(|d| d.join("mesos/module/isolator.hpp").exists()).then_some(dirs);
    }
    ["/usr/local/include", "/usr/include"]
        .iter()
        .map(Path::new)
        .find(|d| d.join("mesos/module/isolator.hpp").exists())
        .map(|d| vec![d.to_owned(), d.join("mesos/3rdparty")])
}

/// The Mesos version the headers say, for the build's message.
fn describe(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.join("mesos/version.hpp"))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| {
            text.lines().find(|l| l.starts_with("#define MESOS_VERSION ")).map(|l| {
                format!(
                    "Mesos {}",
                    l.trim_start_matches("#define MESOS_VERSION ").trim_matches('"')
                )
            })
        })
        .unwrap_or_else(|| "Mesos headers of an unknown version".to_owned())
}
