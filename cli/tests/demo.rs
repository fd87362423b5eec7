//! `flockerctl demo` run as the real binary, against the control service, the agents and the
//! isolator library `cargo build --workspace` put beside this test's profile directory
//! (`target/<profile>/`). Its output is read as a person would, and the machine is checked
//! afterwards for anything the demo promised not to leave.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FLOCKERCTL: &str = env!("CARGO_BIN_EXE_flockerctl");

/// `target/<profile>`: this test runs as `target/<profile>/deps/demo-…`.
fn built_binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let directory = exe.parent().and_then(Path::parent).expect("the target profile directory");
    for name in ["flocker-control", "flocker-dataset-agent", "libflocker_isolator.so"] {
        assert!(
            directory.join(name).exists(),
            "{} is missing: run `cargo build --workspace` first",
            directory.join(name).display()
        );
    }
    directory.to_owned()
}

fn demo(args: &[&str]) -> Output {
    Command::new(FLOCKERCTL)
        .arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("cannot run flockerctl")
}

/// What a run printed, as text with every run of whitespace made one space: notes are wrapped
/// at spaces, and this undoes it.
struct Printed {
    stdout: String,
    flat: String,
    stderr: String,
}

impl Printed {
    fn of(output: &Output) -> Self {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let flat = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        Self { stdout, flat, stderr }
    }

    /// The work directory the first lines name.
    fn work_directory(&self) -> PathBuf {
        let line =
            self.stdout.lines().find(|l| l.starts_with("Working in ")).unwrap_or_else(|| {
                panic!("no 'Working in' line:\n{}", self.stdout);
            });
        let path = line["Working in ".len()..].split(' ').next().unwrap_or_default();
        assert!(path.contains("flocker-demo-"), "{line}");
        PathBuf::from(path)
    }

    /// The UUID the introduction gives `node` ("A" or "B").
    fn node_uuid(&self, node: &str) -> String {
        let prefix = format!("  node {node}  ");
        let line = self.stdout.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| {
            panic!("no line for node {node}:\n{}", self.stdout);
        });
        let uuid = line[prefix.len()..].trim().to_owned();
        assert_eq!(uuid.len(), 36, "{line}");
        uuid
    }

    fn for_failure(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs the demo and checks everything a successful run says and leaves; returns what it
/// printed and its work directory, for further checks.
fn run_and_check_every_promise(args: &[&str]) -> (Printed, PathBuf) {
    let output = demo(args);
    let printed = Printed::of(&output);
    let context = printed.for_failure();
    assert!(output.status.success(), "the demo failed\n{context}");
    for number in 1..=4 {
        assert!(printed.stdout.contains(&format!("✔ {number}. ")), "promise {number}\n{context}");
    }
    assert!(!printed.stdout.contains('✘'), "{context}");
    assert!(printed.flat.contains("4 of 4 promises kept"), "{context}");
    let node_a = printed.node_uuid("A");
    assert_ne!(node_a, printed.node_uuid("B"), "{context}");
    let refusal = format!("is in use on node {node_a} (127.0.0.1)");
    assert!(printed.flat.contains(&refusal), "the refusal does not name node A\n{context}");
    assert!(printed.flat.contains("REFUSED"), "{context}");
    // The expected refusal must not look like a failure: no log noise without RUST_LOG.
    assert!(printed.stderr.trim().is_empty(), "the demo printed to stderr\n{context}");
    let work = printed.work_directory();
    assert!(!work.exists(), "{} is still there\n{context}", work.display());
    (printed, work)
}

#[test]
fn the_directory_backend_keeps_every_promise_and_leaves_nothing() {
    let bin_dir = built_binaries();
    let (printed, _) = run_and_check_every_promise(&["--bin-dir", &bin_dir.to_string_lossy()]);
    let context = printed.for_failure();
    assert!(printed.flat.contains("They keep volumes in one store, $WORK/shared"), "{context}");
    assert!(!printed.flat.contains("Pools unmounted"), "{context}");
}

#[test]
fn the_loopback_backend_keeps_every_promise_and_leaves_no_mount_or_loop_device() {
    flocker_testkit::require_root();
    let bin_dir = built_binaries();
    let (_, work) = run_and_check_every_promise(&[
        "--bin-dir",
        &bin_dir.to_string_lossy(),
        "--backend",
        "loopback",
    ]);
    assert_no_mount_or_loop_device_under(&work);
}

#[test]
fn the_btrfs_backend_copies_the_volume_between_the_nodes_own_pools_and_releases_them() {
    flocker_testkit::require_root();
    let bin_dir = built_binaries();
    let (printed, work) = run_and_check_every_promise(&[
        "--bin-dir",
        &bin_dir.to_string_lossy(),
        "--backend",
        "btrfs",
    ]);
    let context = printed.for_failure();
    // The story says there is no shared storage, and each node's pool is its own.
    assert!(printed.flat.contains("They share no storage"), "{context}");
    assert!(!printed.flat.contains("$WORK/shared"), "{context}");
    for (node, directory) in [("A", "node-a"), ("B", "node-b")] {
        let pool = format!("node {node}: its pool $WORK/{directory}/pool: btrfs on /dev/loop");
        assert!(printed.flat.contains(&pool), "{pool}\n{context}");
    }
    // The volume was pushed, lives in node B's pool, and node A let go of its copy.
    assert!(printed.flat.contains("pushed it to node B's agent over mutual TLS"), "{context}");
    assert!(printed.flat.contains("a subvolume of node B's pool (btrfs on /dev/loop"), "{context}");
    // The push, as `flockerctl list` shows it, if a look caught it while it ran.
    let caught = printed.flat.contains("showed the push under its table, as node A's agent");
    let missed = printed.flat.contains("the push was too quick for a look");
    assert!(caught || missed, "{context}");
    assert!(
        printed.flat.contains("node A no longer holds it: $WORK/node-a/pool has no"),
        "{context}"
    );
    assert!(printed.flat.contains("its subvolume deleted from node B's pool"), "{context}");
    // The pools the agents left mounted were let go of by the demo itself, not found left over.
    assert!(printed.flat.contains("Pools unmounted and their loop devices detached"), "{context}");
    for node in ["A", "B"] {
        let released = format!("node {node}'s pool: unmounted from $WORK/node-");
        assert!(printed.flat.contains(&released), "{released}\n{context}");
    }
    assert_no_mount_or_loop_device_under(&work);
}

/// Nothing on this machine refers to `work` any more: no mount, no loop device.
fn assert_no_mount_or_loop_device_under(work: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let needle = work.to_string_lossy().into_owned();
    let mounted: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&needle)).collect();
    assert!(mounted.is_empty(), "still mounted: {mounted:?}");
    let losetup = Command::new("losetup").arg("-a").output().expect("losetup -a");
    let attached = String::from_utf8_lossy(&losetup.stdout).into_owned();
    assert!(!attached.contains(&needle), "still attached: {attached}");
    for entry in std::fs::read_dir("/sys/block").expect("/sys/block").flatten() {
        let backing = std::fs::read_to_string(entry.path().join("loop/backing_file"));
        let backing = backing.unwrap_or_default();
        assert!(!backing.contains(&needle), "{:?} is backed by {backing}", entry.file_name());
    }
}

#[test]
fn a_missing_program_is_a_one_line_error_that_says_how_to_build_it() {
    let empty = tempfile::tempdir().expect("temporary directory");
    let output = demo(&["--bin-dir", &empty.path().to_string_lossy()]);
    let printed = Printed::of(&output);
    let context = printed.for_failure();
    assert!(!output.status.success(), "{context}");
    assert_eq!(printed.stderr.lines().count(), 1, "{context}");
    assert!(printed.stderr.contains("flocker-control is missing"), "{context}");
    assert!(printed.stderr.contains("cargo build --release --workspace"), "{context}");
    assert!(printed.stdout.is_empty(), "nothing should have started\n{context}");
}

#[test]
fn a_failure_half_way_says_which_promise_broke_shows_the_log_and_still_cleans_up() {
    let built = built_binaries();
    let bin_dir = tempfile::tempdir().expect("temporary directory");
    for name in ["flocker-control", "libflocker_isolator.so"] {
        std::os::unix::fs::symlink(built.join(name), bin_dir.path().join(name)).expect("symlink");
    }
    let agent = bin_dir.path().join("flocker-dataset-agent");
    std::fs::write(&agent, "#!/bin/sh\necho 'this agent is broken on purpose' >&2\nexit 3\n")
        .expect("write the broken agent");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = demo(&["--bin-dir", &bin_dir.path().to_string_lossy()]);
    let printed = Printed::of(&output);
    let context = printed.for_failure();
    assert!(!output.status.success(), "{context}");
    assert!(printed.stderr.contains("promises 1, 2, 3 were not kept"), "{context}");
    assert!(printed.flat.contains("✘ FAILED: Dataset agents"), "{context}");
    assert!(printed.flat.contains("ended (exit status: 3)"), "{context}");
    assert!(printed.flat.contains("| this agent is broken on purpose"), "no log tail\n{context}");
    assert!(printed.stdout.contains("✘ 1. "), "{context}");
    assert!(printed.stdout.contains("✔ 4. "), "{context}");
    let work = printed.work_directory();
    assert!(!work.exists(), "{} is still there\n{context}", work.display());
}

#[test]
fn ctrl_c_stops_everything_and_leaves_no_mount_loop_device_or_directory() {
    flocker_testkit::require_root();
    interrupt_and_check("loopback");
}

#[test]
fn ctrl_c_with_btrfs_also_lets_go_of_both_pools() {
    flocker_testkit::require_root();
    interrupt_and_check("btrfs");
}

/// Interrupts a demo on `backend` once the volume is mounted on node A, and checks that it
/// stopped as interrupted and left nothing behind.
fn interrupt_and_check(backend: &str) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader};

    let bin_dir = built_binaries();
    let mut child = Command::new(FLOCKERCTL)
        .args(["demo", "--backend", backend, "--bin-dir", &bin_dir.to_string_lossy()])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run flockerctl");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut work = None;
    // Stopped where the volume is mounted on node A and task 1 is about to run; the interrupt
    // is delivered as it resumes, as if Ctrl-C had been pressed right then.
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(rest) = line.strip_prefix("Working in ") {
            work = rest.split(' ').next().map(PathBuf::from);
        }
        if line.contains("Node A: Mesos calls prepare for task 1") {
            kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
            break;
        }
    }
    let work = work.expect("the demo names its work directory");
    assert!(work.exists(), "{} should still be there while it runs", work.display());
    kill(pid, Signal::SIGINT).expect("SIGINT");
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}\n{}", rest.join("\n"));
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!work.exists(), "{} is still there\n{stderr}\n{}", work.display(), rest.join("\n"));
    assert_no_mount_or_loop_device_under(&work);
    let survivors = Command::new("pgrep").args(["-f", &work.to_string_lossy()]).output();
    let survivors = survivors.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    assert_eq!(survivors.unwrap_or_default().trim(), "", "processes survived");
}
