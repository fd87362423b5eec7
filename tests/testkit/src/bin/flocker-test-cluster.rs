//! A whole cluster on this machine for test programs in other languages (the GoogleTest suite):
//! fresh certificates, a control service, dataset agents — optionally each in a network
//! namespace of its own. It prints what a test needs, one fact a line, then `ready`, and answers
//! commands on stdin until `quit` or end of input, when it takes everything down.
//!
//! ```text
//! flocker-test-cluster [--nodes N] [--backend loopback|directory] [--netns]
//!   out: node <i> uuid <uuid> | node <i> netns <path|-> | node <i> mount_root <path>
//!        node <i> parameter <key> <value> | links <dir> | ready
//!   in:  leases | datasets <flocker_id> | mounted <flocker_id> <i> | nodes | delete <flocker_id>
//!        kill-agent <i> | restart-agent <i> | quit
//! ```

use std::io::{BufRead, Write};

use flocker_api::DatasetId;
use flocker_testkit::{BackendKind, LocalCluster};

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let nodes = value_of(&arguments, "--nodes").and_then(|n| n.parse().ok()).unwrap_or(2);
    let backend = match value_of(&arguments, "--backend").as_deref() {
        Some("directory") => BackendKind::Directory,
        _ => BackendKind::Loopback,
    };
    let mut cluster = if arguments.iter().any(|a| a == "--netns") {
        LocalCluster::start_in_namespaces(backend, nodes)
    } else {
        LocalCluster::start(backend, nodes, &[])
    };
    let links = cluster.certificates.root().join("links");
    std::fs::create_dir_all(&links).expect("links directory");
    let mut out = std::io::stdout();
    for i in 0..nodes {
        let agent = &cluster.agents[i];
        let netns = agent.netns.as_ref().map_or("-".to_owned(), |p| p.display().to_string());
        let _ = writeln!(out, "node {i} uuid {}", agent.node.uuid);
        let _ = writeln!(out, "node {i} netns {netns}");
        let _ = writeln!(out, "node {i} mount_root {}", agent.mount_root.display());
        let parameters = cluster.isolator_parameters(i);
        for (key, value) in parameters.as_object().into_iter().flatten() {
            let value = value.as_str().map_or(value.to_string(), str::to_owned);
            let _ = writeln!(out, "node {i} parameter {key} {value}");
        }
    }
    let _ = writeln!(out, "links {}", links.display());
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["quit"] => break,
            command => answer(&mut cluster, command),
        };
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
}

fn answer(cluster: &mut LocalCluster, command: &[&str]) -> String {
    let named = |cluster: &LocalCluster, id: &str| -> Vec<DatasetId> {
        let datasets =
            cluster.client.list_datasets().map(|(datasets, _)| datasets).unwrap_or_default();
        datasets
            .into_iter()
            .filter(|d| !d.deleted && d.metadata.get("name").is_some_and(|n| n == id))
            .map(|d| d.dataset_id)
            .collect()
    };
    match command {
        ["leases"] => {
            let leases = cluster.client.list_leases().unwrap_or_default();
            let holders: Vec<String> = leases.iter().map(|l| l.node_uuid.to_string()).collect();
            format!("leases {} {}", leases.len(), holders.join(" "))
        }
        ["datasets", id] => {
            let ids: Vec<String> = named(cluster, id).iter().map(ToString::to_string).collect();
            format!("datasets {} {}", ids.len(), ids.join(" "))
        }
        ["mounted", id, node] => {
            let index: usize = node.parse().unwrap_or(usize::MAX);
            let mounted = index < cluster.agents.len()
                && named(cluster, id).iter().any(|d| cluster.mounted_path(d, index).is_some());
            format!("mounted {}", if mounted { "yes" } else { "no" })
        }
        ["nodes"] => {
            let nodes = cluster.client.list_nodes().unwrap_or_default();
            let listed: Vec<String> =
                nodes.iter().map(|n| format!("{}={}", n.uuid, n.host)).collect();
            format!("nodes {}", listed.join(" "))
        }
        ["delete", id] => {
            let ids = named(cluster, id);
            for dataset in &ids {
                let _ = cluster.client.delete_dataset(dataset, None);
            }
            format!("deleted {}", ids.len())
        }
        ["kill-agent", node] => {
            match node.parse::<usize>().ok().and_then(|i| cluster.agents.get_mut(i)) {
                Some(agent) => {
                    agent.kill();
                    "ok".to_owned()
                }
                None => "error no such node".to_owned(),
            }
        }
        ["restart-agent", node] => {
            match node.parse::<usize>().ok().and_then(|i| cluster.agents.get_mut(i)) {
                Some(agent) => {
                    agent.restart().map_or_else(|e| format!("error {e}"), |()| "ok".to_owned())
                }
                None => "error no such node".to_owned(),
            }
        }
        other => format!("error unknown command {}", other.join(" ")),
    }
}

fn value_of(arguments: &[String], flag: &str) -> Option<String> {
    arguments.iter().position(|a| a == flag).and_then(|i| arguments.get(i + 1)).cloned()
}
