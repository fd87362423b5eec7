//! libflocker_isolator through its C header, driven by a small C program that stands in for the
//! Mesos agent (the one part that cannot run here), against a real control service and two real
//! dataset agents.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use flocker_testkit::task::{command_task, container_id, fixture, with_variables};
use flocker_testkit::{BackendKind, LocalCluster, require_root};
use serde_json::{Value, json};

/// `target/<profile>/deps`, where cargo builds libflocker_isolator.so for the tests (it copies
/// it up a level only on `cargo build`).
fn library_directory() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_owned()
}

/// The stand-in, compiled once against the committed header and the built library.
fn standin_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/standin.c");
        let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
        let library = library_directory();
        let binary = library.join("flocker-isolator-standin");
        let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"])
            .arg(&source)
            .arg("-I")
            .arg(&include)
            .arg("-L")
            .arg(&library)
            .arg(format!("-Wl,-rpath,{}", library.display()))
            .args(["-lflocker_isolator", "-o"])
            .arg(&binary)
            .status()
            .expect("a C compiler (cc)");
        assert!(status.success(), "the stand-in does not compile");
        binary
    })
}

/// A running stand-in with its isolator.
struct Standin {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
    directory: PathBuf,
    log: PathBuf,
}

impl Standin {
    /// Starts the stand-in with `parameters`; Err with the create error if the isolator was refused.
    fn start(parameters: &Value, directory: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(directory).unwrap();
        let parameters_file = directory.join("parameters.json");
        std::fs::write(&parameters_file, parameters.to_string()).unwrap();
        let log = directory.join("standin.log");
        let mut child = Command::new(standin_binary())
            .arg(&parameters_file)
            // The library built for this test run, not an older copy cargo left a level up.
            .env("LD_LIBRARY_PATH", library_directory())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut standin = Self { child, stdin, answers, directory: directory.to_owned(), log };
        match standin.answer().as_deref() {
            Some(ready) if ready.starts_with("ready ") => Ok(standin),
            Some(other) => Err(other.to_owned()),
            None => Err(format!("no answer; the stand-in's log:\n{}", standin.log())),
        }
    }

    fn answer(&mut self) -> Option<String> {
        self.answers.recv_timeout(Duration::from_secs(60)).ok()
    }

    /// Sends a command whose arguments are JSON documents; Ok(launch info or null), Err(message).
    fn call(&mut self, command: &str, documents: &[&Value]) -> Result<Value, String> {
        self.send(command, documents);
        match self.answer() {
            Some(line) if line.starts_with("ok ") => Ok(serde_json::from_str(&line[3..]).unwrap()),
            Some(line) => Err(line.trim_start_matches("error ").to_owned()),
            None => Err("no answer".to_owned()),
        }
    }

    /// Sends a command and does not wait for its answer.
    fn send(&mut self, command: &str, documents: &[&Value]) {
        let files: Vec<String> = documents
            .iter()
            .map(|document| {
                let path = self.directory.join(format!("{}.json", uuid::Uuid::new_v4()));
                std::fs::write(&path, document.to_string()).unwrap();
                path.display().to_string()
            })
            .collect();
        writeln!(self.stdin, "{command} {}", files.join(" ")).unwrap();
        self.stdin.flush().unwrap();
    }

    /// `kill -9`, as a crashing agent.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_cluster() -> LocalCluster {
    require_root();
    LocalCluster::start(BackendKind::Loopback, 2, &[])
}

fn standin(cluster: &LocalCluster, index: usize, name: &str) -> Standin {
    let directory = cluster.certificates.root().join(name);
    Standin::start(&cluster.isolator_parameters(index), &directory).unwrap()
}

fn link_path(cluster: &LocalCluster, name: &str) -> PathBuf {
    cluster.certificates.root().join("links").join(name)
}

#[test]
fn the_header_compiles_as_c_and_as_cpp() {
    standin_binary();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let mut compiler = Command::new("c++")
        .args(["-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-x", "c++", "-I"])
        .arg(&include)
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .expect("a C++ compiler (c++)");
    compiler
        .stdin
        .take()
        .unwrap()
        .write_all(b"#include \"flocker_isolator.h\"\nint main() { return 0; }\n")
        .unwrap();
    assert!(compiler.wait().unwrap().success());
}

#[test]
fn a_volume_goes_from_node_a_to_node_b_through_the_c_abi() {
    let cluster = start_cluster();
    let (mut a, mut b) = (standin(&cluster, 0, "standin-a"), standin(&cluster, 1, "standin-b"));
    let link = link_path(&cluster, "webapp");
    let config = command_task(&[("webapp-data", link.to_str().unwrap())]);
    let first = container_id();
    assert_eq!(a.call("prepare", &[&first, &config]), Ok(Value::Null));
    std::fs::write(link.join("hello"), b"from node A").unwrap();
    assert_eq!(a.call("cleanup", &[&first]), Ok(Value::Null));
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert_eq!(b.call("prepare", &[&container_id(), &config]), Ok(Value::Null));
    assert_eq!(std::fs::read(link.join("hello")).unwrap(), b"from node A");
    assert!(
        a.log().contains("log 3 flocker_isolator_core container"),
        "the log callback saw nothing:\n{}",
        a.log()
    );
}

#[test]
fn a_task_with_an_image_gets_a_bind_mount_under_its_rootfs() {
    let cluster = start_cluster();
    let mut a = standin(&cluster, 0, "standin-a");
    let rootfs = cluster.certificates.root().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut config = fixture("docker-image-task");
    config["rootfs"] = json!(rootfs);
    let config = with_variables(
        config,
        &[
            ("FLOCKER_ID".into(), "redis-data".into()),
            ("FLOCKER_CONTAINER_VOLUME_PATH".into(), "data".into()),
        ],
    );
    let launch = a.call("prepare", &[&container_id(), &config]).unwrap();
    let target = rootfs.join("mnt/mesos/sandbox/data");
    assert_eq!(launch["mounts"][0]["target"], json!(target));
    assert_eq!(launch["clone_namespaces"], json!([0x0002_0000]));
    let source = PathBuf::from(launch["mounts"][0]["source"].as_str().unwrap());
    assert!(source.starts_with(&cluster.agents[0].mount_root));
    assert!(target.is_dir(), "the mount target was not made");
}

#[test]
fn a_nested_task_group_container_gets_its_volume_and_other_containers_get_none() {
    let cluster = start_cluster();
    let mut a = standin(&cluster, 0, "standin-a");
    let link = link_path(&cluster, "orders");
    let config = with_variables(
        fixture("task-group-nested"),
        &[
            ("FLOCKER_ID".into(), "orders-data".into()),
            ("FLOCKER_CONTAINER_VOLUME_PATH".into(), link.display().to_string()),
        ],
    );
    let nested = json!({"value": "task", "parent": {"value": "executor"}});
    assert_eq!(a.call("prepare", &[&nested, &config]), Ok(Value::Null));
    assert!(std::fs::read_link(&link).is_ok());
    for name in ["not-flocker", "debug-container"] {
        assert_eq!(
            a.call("prepare", &[&container_id(), &fixture(name)]),
            Ok(Value::Null),
            "{name}"
        );
    }
    assert_eq!(cluster.client.list_datasets().unwrap().0.len(), 1);
    let refused = a.call("prepare", &[&container_id(), &fixture("bad-half-pair")]).unwrap_err();
    assert!(refused.contains("FLOCKER_CONTAINER_VOLUME_PATH"), "{refused}");
}

#[test]
fn bad_parameters_are_refused_with_the_parameter_named() {
    let directory = tempfile_directory();
    let refused = Standin::start(&json!({"ipaddress": "127.0.0.1", "prot": "4523"}), &directory)
        .err()
        .unwrap();
    assert!(refused.starts_with("create-error") && refused.contains("prot"), "{refused}");
}

fn tempfile_directory() -> PathBuf {
    let directory = std::env::temp_dir().join(format!("flocker-standin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

#[test]
fn after_the_agent_is_killed_recover_keeps_running_containers_and_cleans_the_rest() {
    let mut cluster = start_cluster();
    let mut a = standin(&cluster, 0, "standin-a");
    let (kept_link, gone_link) = (link_path(&cluster, "kept"), link_path(&cluster, "gone"));
    let (kept, gone) = (container_id(), container_id());
    a.call("prepare", &[&kept, &command_task(&[("kept", kept_link.to_str().unwrap())])]).unwrap();
    a.call("prepare", &[&gone, &command_task(&[("gone", gone_link.to_str().unwrap())])]).unwrap();
    // A third prepare is killed half-way: its volume can never mount while node A's agent is down.
    cluster.agents[0].kill();
    let (midway, midway_link) = (container_id(), link_path(&cluster, "midway"));
    a.send("prepare", &[&midway, &command_task(&[("midway", midway_link.to_str().unwrap())])]);
    cluster.wait_for("the half-way prepare to take its lease", Duration::from_secs(30), || {
        cluster.client.list_leases().unwrap().len() == 3
    });
    a.kill();
    cluster.agents[0].restart().unwrap();

    let mut again = standin(&cluster, 0, "standin-a-again");
    let recover = json!({"states": [{"container_id": kept, "pid": 1, "directory": "/sandbox"}], "orphans": []});
    assert_eq!(again.call("recover", &[&recover]), Ok(Value::Null));
    assert!(std::fs::read_link(&kept_link).is_ok(), "a running container's link was removed");
    assert!(std::fs::symlink_metadata(&gone_link).is_err(), "a gone container's link stayed");
    assert!(std::fs::symlink_metadata(&midway_link).is_err());
    let leases = cluster.client.list_leases().unwrap();
    let kept_dataset = cluster
        .client
        .list_datasets()
        .unwrap()
        .0
        .into_iter()
        .find(|d| d.metadata["name"] == "kept")
        .unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].dataset_id, kept_dataset.dataset_id);
}

/// Issue 14 through the C ABI: a path outside the operator's roots, and a symbolic link on the
/// way to an allowed one, are refused with their reasons, before anything is done.
#[test]
fn host_links_outside_the_roots_or_through_a_symbolic_link_are_refused_through_the_c_abi() {
    let cluster = start_cluster();
    let scratch = cluster.certificates.root().join("host");
    for directory in ["allowed", "etc/cron.d"] {
        std::fs::create_dir_all(scratch.join(directory)).unwrap();
    }
    std::os::unix::fs::symlink(scratch.join("etc"), scratch.join("allowed/evil")).unwrap();
    let mut parameters = cluster.isolator_parameters(0);
    parameters["host_path_roots"] = json!(scratch.join("allowed"));
    let mut a =
        Standin::start(&parameters, &cluster.certificates.root().join("standin-a")).unwrap();
    let attack = |path: &str| command_task(&[("attack", scratch.join(path).to_str().unwrap())]);
    let outside = a.call("prepare", &[&container_id(), &attack("etc/cron.d/x")]).unwrap_err();
    assert!(
        outside.contains("may only have its volume linked beneath the module's host_path_roots"),
        "{outside}"
    );
    let through =
        a.call("prepare", &[&container_id(), &attack("allowed/evil/cron.d/x")]).unwrap_err();
    assert!(through.contains("is a symbolic link; refusing to follow it"), "{through}");
    assert_eq!(std::fs::read_dir(scratch.join("etc/cron.d")).unwrap().count(), 0);
    assert!(cluster.client.list_datasets().unwrap().0.is_empty(), "nothing was created");
}

/// Issue 14 through the C ABI: a read-only volume is a read-only bind mount and never a host
/// link, and a role uses only the volume names the operator gives it.
#[test]
fn read_only_volumes_and_role_prefixes_through_the_c_abi() {
    let cluster = start_cluster();
    let mut parameters = cluster.isolator_parameters(0);
    parameters["volume_prefixes_by_role"] = json!("*=web-");
    let mut a =
        Standin::start(&parameters, &cluster.certificates.root().join("standin-a")).unwrap();
    let sandbox = cluster.certificates.root().join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    let read_only = |id: &str, path: &str| {
        let mut config = with_variables(
            fixture("command-task"),
            &[
                ("FLOCKER_ID".into(), id.into()),
                ("FLOCKER_CONTAINER_VOLUME_PATH".into(), path.into()),
                ("FLOCKER_CONTAINER_VOLUME_MODE".into(), "ro".into()),
            ],
        );
        config["directory"] = json!(sandbox);
        config
    };
    let link = link_path(&cluster, "reports");
    let refused =
        a.call("prepare", &[&container_id(), &read_only("web-reports", link.to_str().unwrap())]);
    assert!(refused.unwrap_err().contains("a link cannot be read-only"));
    let launch =
        a.call("prepare", &[&container_id(), &read_only("web-reports", "reports")]).unwrap();
    assert_eq!(launch["mounts"][0]["flags"].as_u64().map(|f| f & 1), Some(1), "{launch}");
    let refused = a.call("prepare", &[&container_id(), &read_only("billing-ledger", "ledger")]);
    assert!(
        refused.unwrap_err().contains("role '*' may only use volumes whose name begins with web-")
    );
    assert_eq!(cluster.client.list_datasets().unwrap().0.len(), 1, "only web-reports was made");
}
