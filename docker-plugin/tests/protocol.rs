//! Docker's volume plugin protocol on the plugin's socket, against a real cluster: a control
//! service, two dataset agents (loopback, one shared root_path, as root) and a plugin process
//! per node, called as Docker's daemon calls it (HTTP/1.1 POSTs of JSON on a Unix socket).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flocker_testkit::docker::DockerPlugin;
use flocker_testkit::{BackendKind, LocalCluster, require_root};
use serde_json::json;

fn start() -> (LocalCluster, Vec<DockerPlugin>) {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &[]);
    let plugins = (0..2).map(|i| DockerPlugin::start(&cluster, i, None)).collect();
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
