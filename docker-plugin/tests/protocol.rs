//! Docker's volume plugin protocol on the plugin's socket, against a real cluster: a control
//! service, two dataset agents (loopback, one shared root_path, as root) and a plugin process
//! per node, called as Docker's daemon calls it (HTTP/1.1 POSTs of JSON on a Unix socket).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flocker_testkit::{BackendKind, LocalCluster, require_root};
use serde_json::{Value, json};

/// A plugin process for one node; killed when dropped.
struct Plugin {
    child: Option<Child>,
    arguments: Vec<String>,
    socket: PathBuf,
    log: PathBuf,
}

impl Plugin {
    fn start(cluster: &LocalCluster, index: usize) -> Self {
        let directory = cluster.agents[index].directory.join("docker-plugin");
        let certificates = directory.join("certificates");
        fs::create_dir_all(&certificates).unwrap();
        let parameters = cluster.isolator_parameters(index);
        let text = |key: &str| parameters[key].as_str().unwrap().to_owned();
        for (from, to) in [
            ("cluster_certificate", "cluster.crt"),
            ("client_certificate", "plugin.crt"),
            ("client_key", "plugin.key"),
            ("node_certificate", "node.crt"),
        ] {
            fs::copy(text(from), certificates.join(to)).unwrap();
        }
        let socket = directory.join("flocker.sock");
        let arguments = vec![
            format!("--control-service={}", text("control_service_host")),
            format!("--rest-api-port={}", text("control_service_port")),
            format!("--certificates-directory={}", certificates.display()),
            format!("--socket={}", socket.display()),
            format!("--state-dir={}", directory.join("state").display()),
            "--mount-timeout=30".to_owned(),
        ];
        let mut plugin = Self { child: None, arguments, socket, log: directory.join("plugin.log") };
        plugin.restart();
        plugin
    }

    fn restart(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flocker-docker-plugin"))
            .args(&self.arguments)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_call("/Plugin.Activate", "{}").is_err() {
            assert!(Instant::now() < deadline, "the plugin did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A POST as Docker sends it; the status and the JSON answer.
    fn try_call(&self, call: &str, body: &str) -> std::io::Result<(u16, Value)> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "POST {call} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
    }

    /// A call that must answer 200; its JSON.
    fn call(&self, call: &str, body: Value) -> Value {
        let (status, answer) = self.try_call(call, &body.to_string()).unwrap();
        assert_eq!(status, 200, "{call} {body}: {answer}\n{}", self.log());
        answer
    }

    /// A call that must succeed (`Err` empty).
    fn ok(&self, call: &str, body: Value) -> Value {
        let answer = self.call(call, body.clone());
        assert_eq!(answer["Err"], "", "{call} {body}: {answer}\n{}", self.log());
        answer
    }

    /// A call that must fail; its `Err`.
    fn refused(&self, call: &str, body: Value) -> String {
        let answer = self.call(call, body.clone());
        let error = answer["Err"].as_str().unwrap_or_default().to_owned();
        assert!(!error.is_empty(), "{call} {body} succeeded: {answer}");
        error
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start() -> (LocalCluster, Vec<Plugin>) {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &[]);
    let plugins = (0..2).map(|i| Plugin::start(&cluster, i)).collect();
    (cluster, plugins)
}

fn datasets_named(cluster: &LocalCluster, name: &str) -> Vec<flocker_api::Dataset> {
    let (datasets, _) = cluster.client.list_datasets().unwrap();
    datasets
        .into_iter()
        .filter(|d| !d.deleted && d.metadata.get("name").map(String::as_str) == Some(name))
        .collect()
}

#[test]
fn activate_and_capabilities_say_a_global_volume_driver_and_the_socket_is_roots_alone() {
    let (_cluster, plugins) = start();
    let answer = plugins[0].call("/Plugin.Activate", json!({}));
    assert_eq!(answer, json!({"Implements": ["VolumeDriver"]}));
    let answer = plugins[0].call("/VolumeDriver.Capabilities", json!({}));
    assert_eq!(answer["Capabilities"]["Scope"], "global");
    let mode = fs::metadata(&plugins[0].socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_volume_follows_its_container_from_node_to_node_and_is_refused_while_in_use_elsewhere() {
    let (cluster, plugins) = start();
    plugins[0].ok("/VolumeDriver.Create", json!({"Name": "web", "Opts": {"size": "128M"}}));
    let dataset = &datasets_named(&cluster, "web")[0];
    assert_eq!(dataset.maximum_size, Some(128 << 20));
    assert_eq!(dataset.primary, cluster.node(0));

    let mounted = plugins[0].ok("/VolumeDriver.Mount", json!({"Name": "web", "ID": "c1"}));
    let path = PathBuf::from(mounted["Mountpoint"].as_str().unwrap());
    fs::write(path.join("index.html"), b"hello from A").unwrap();
    assert_eq!(
        plugins[0].ok("/VolumeDriver.Path", json!({"Name": "web"}))["Mountpoint"],
        mounted["Mountpoint"]
    );

    // B while A's container runs: refused at once, naming node A.
    let started = Instant::now();
    let refused = plugins[1].refused("/VolumeDriver.Mount", json!({"Name": "web", "ID": "c2"}));
    assert!(refused.contains(&cluster.node(0).to_string()), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5), "not at once: {:?}", started.elapsed());
    plugins[1].refused("/VolumeDriver.Path", json!({"Name": "web"}));
    // Removing it while in use is refused on either node.
    assert!(plugins[0].refused("/VolumeDriver.Remove", json!({"Name": "web"})).contains("in use"));
    assert!(plugins[1].refused("/VolumeDriver.Remove", json!({"Name": "web"})).contains("in use"));

    plugins[0].ok("/VolumeDriver.Unmount", json!({"Name": "web", "ID": "c1"}));
    let mounted = plugins[1].ok("/VolumeDriver.Mount", json!({"Name": "web", "ID": "c2"}));
    let path = Path::new(mounted["Mountpoint"].as_str().unwrap());
    assert_eq!(fs::read(path.join("index.html")).unwrap(), b"hello from A");
    assert_eq!(cluster.mounted_path(&dataset.dataset_id, 1).as_deref(), Some(path));

    let listed = plugins[0].ok("/VolumeDriver.List", json!({}));
    let volumes = listed["Volumes"].as_array().unwrap();
    let web = volumes.iter().find(|v| v["Name"] == "web").unwrap();
    assert_eq!(web["Mountpoint"], "", "not mounted on node A");
    let got = plugins[1].ok("/VolumeDriver.Get", json!({"Name": "web"}));
    assert_eq!(got["Volume"]["Mountpoint"], mounted["Mountpoint"]);
    assert_eq!(got["Volume"]["Status"]["dataset_id"], dataset.dataset_id.to_string());

    plugins[1].ok("/VolumeDriver.Unmount", json!({"Name": "web", "ID": "c2"}));
    plugins[1].ok("/VolumeDriver.Remove", json!({"Name": "web"}));
    assert!(datasets_named(&cluster, "web").is_empty());
    assert!(plugins[0].refused("/VolumeDriver.Get", json!({"Name": "web"})).contains("no volume"));
    plugins[0].ok("/VolumeDriver.Remove", json!({"Name": "web"})); // gone already: fine
}

#[test]
fn the_lease_stays_until_the_last_container_on_the_node_unmounts_even_across_a_plugin_restart() {
    let (cluster, mut plugins) = start();
    plugins[0].ok("/VolumeDriver.Mount", json!({"Name": "shared", "ID": "one"}));
    plugins[0].ok("/VolumeDriver.Mount", json!({"Name": "shared", "ID": "two"}));
    let dataset = datasets_named(&cluster, "shared")[0].dataset_id;
    let leased = || cluster.client.list_leases().unwrap().iter().any(|l| l.dataset_id == dataset);
    plugins[0].kill();
    plugins[0].restart();
    plugins[0].ok("/VolumeDriver.Unmount", json!({"Name": "shared", "ID": "one"}));
    assert!(leased(), "released while container two still uses it");
    plugins[0].ok("/VolumeDriver.Unmount", json!({"Name": "shared", "ID": "one"})); // again: no-op
    assert!(leased());
    plugins[0].ok("/VolumeDriver.Unmount", json!({"Name": "shared", "ID": "two"}));
    assert!(!leased(), "the last unmount releases the lease");
}

#[test]
fn concurrent_creates_of_one_name_on_two_nodes_make_exactly_one_dataset() {
    let (cluster, plugins) = start();
    for round in 0..5 {
        let name = format!("race-{round}");
        std::thread::scope(|scope| {
            for plugin in &plugins {
                let name = name.clone();
                scope.spawn(move || plugin.ok("/VolumeDriver.Create", json!({"Name": name})));
            }
        });
        assert_eq!(datasets_named(&cluster, &name).len(), 1, "{name}");
    }
}

#[test]
fn bad_requests_get_a_clear_err_and_change_nothing() {
    let (cluster, plugins) = start();
    let plugin = &plugins[0];
    let before = cluster.client.list_datasets().unwrap().0.len();
    for (body, words) in [
        (json!({"Name": "../etc/passwd"}), "volume name"),
        (json!({"Name": ""}), "volume name"),
        (json!({"Name": "ok", "Opts": {"size": "ten gigs"}}), "not a size"),
        (json!({"Name": "ok", "Opts": {"size": "1M"}}), "at least 64 MiB"),
        (json!({"Name": "ok", "Opts": {"sise": "1G"}}), "unknown option 'sise'"),
        (json!({"Name": 7}), "not one of this call"),
    ] {
        let error = plugin.refused("/VolumeDriver.Create", body.clone());
        assert!(error.contains(words), "{body}: {error}");
    }
    let (status, answer) = plugin.try_call("/VolumeDriver.Create", "{not json").unwrap();
    assert_eq!(status, 200);
    assert!(answer["Err"].as_str().unwrap().contains("not one of this call"));
    let huge = format!("{{\"Name\": \"{}\"}}", "x".repeat(100 << 10));
    let (_, answer) = plugin.try_call("/VolumeDriver.Create", &huge).unwrap();
    assert!(!answer["Err"].as_str().unwrap_or_default().is_empty(), "{answer}");
    let (status, _) = plugin.try_call("/VolumeDriver.Explode", "{}").unwrap();
    assert_eq!(status, 404);
    assert!(plugin.refused("/VolumeDriver.Path", json!({"Name": "nothing"})).contains("no volume"));
    plugin.ok("/VolumeDriver.Unmount", json!({"Name": "nothing", "ID": "x"}));
    assert_eq!(cluster.client.list_datasets().unwrap().0.len(), before, "something was created");
}
