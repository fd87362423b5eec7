//! The demo's steps in order: the cluster comes up (certificates, control service, agents, the
//! isolator library), the app's tasks come and go (`webapp`), and the
//! cluster goes down. Each step is printed as it completes; a failed one shows why, with the
//! end of the logs that may say more, and stops the story — everything started so far is
//! stopped as the story's values drop.

use std::path::{Path, PathBuf};

use flocker_api::Node as ApiNode;

use crate::demo::backend::Backend;
use crate::demo::binaries::Binaries;
use crate::demo::certificates::{self, Certificates};
use crate::demo::cluster::Cluster;
use crate::demo::mesos::{self, MesosAgent};
use crate::demo::pools;
use crate::demo::promises::Promises;
use crate::demo::timeline::{Timeline, WIDTH, Witness, say, wrap};
use crate::demo::webapp::{self, Stage};
use crate::demo::workdir::WorkDir;
use crate::demo::{Node, agent, container};

/// Runs every step; the first failure ends the story (and is returned, already printed).
pub fn tell(
    binaries: &Binaries,
    backend: Backend,
    work: &WorkDir,
    timeline: &Timeline,
    promises: &mut Promises,
) -> anyhow::Result<()> {
    let certificates = make_certificates(work, timeline, backend)?;
    let mut cluster =
        step(timeline, "flocker-control started: the control service", &[], |notes| {
            start_control(binaries, work, &certificates, notes)
        })?;
    let witnesses = [control_log(work), agent_log(work, Node::A), agent_log(work, Node::B)];
    let title = "Dataset agents of node A and node B started, and seen in /v1/state/nodes";
    let hosts = step(timeline, title, &witnesses, |notes| {
        start_agents(binaries, backend, work, &certificates, &mut cluster, notes)
    })?;
    let title = "Isolator library loaded with dlopen, as a Mesos agent loads its modules";
    let agents = step(timeline, title, &[], |notes| {
        load_isolators(binaries, backend, work, &certificates, &cluster, notes)
    })?;
    let stage = Stage {
        work,
        timeline,
        backend,
        client: &cluster.client,
        nodes: certificates.nodes,
        hosts: hosts.map(|n| n.host),
        mesos: agents,
    };
    webapp::play(&stage, promises)?;
    drop(stage); // the isolators go before the services they talk to
    let title = "Processes stopped: SIGTERM to the agents and the control service";
    step(timeline, title, &witnesses, |notes| {
        notes.extend(cluster.stop()?);
        Ok(())
    })?;
    if backend == Backend::Btrfs {
        let title = "Pools unmounted and their loop devices detached (agents leave them mounted)";
        step(timeline, title, &[], |notes| {
            notes.extend(pools::release(work)?);
            Ok(())
        })?;
    }
    Ok(())
}

/// Runs one step of the timeline: `work` adds notes on what happened as it goes; they are
/// printed with the step, and so is the failure, with the tail of each witness's log.
pub fn step<T>(
    timeline: &Timeline,
    title: &str,
    witnesses: &[Witness],
    work: impl FnOnce(&mut Vec<String>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = timeline.now();
    let mut notes = Vec::new();
    match work(&mut notes) {
        Ok(value) => {
            timeline.done(started, title, &notes);
            Ok(value)
        }
        Err(error) => {
            timeline.failed(started, title, &notes, &error, witnesses);
            Err(error)
        }
    }
}

pub fn control_log(work: &WorkDir) -> Witness {
    witness(work, "the control service's log", work.control_log())
}

pub fn agent_log(work: &WorkDir, node: Node) -> Witness {
    witness(work, &format!("{node}'s agent log"), work.agent_log(node))
}

pub fn task_log(work: &WorkDir, node: Node) -> Witness {
    witness(work, &format!("the tasks' stderr on {node}"), work.task_log(node))
}

fn witness(work: &WorkDir, what: &str, path: PathBuf) -> Witness {
    Witness { label: format!("{what}, {}", work.show(&path)), path }
}

/// The first step, timed before the introduction is printed (it needs the node UUIDs) and
/// shown right after it.
fn make_certificates(
    work: &WorkDir,
    timeline: &Timeline,
    backend: Backend,
) -> anyhow::Result<Certificates> {
    let started = timeline.now();
    let title = "Certificates made by the cluster's own CA (what `flockerctl ca` does)";
    let certificates = certificates::make(work).inspect_err(|error| {
        timeline.failed(started, title, &[], error, &[]);
    })?;
    introduce(work, backend, &certificates);
    timeline.print_header();
    let notes = [
        format!(
            "a cluster CA \"{}\", and certificates it signs for the control service, node A and \
             node B (node.crt, its CN the node's UUID), and the API users \"{}\" (the isolators) \
             and \"{}\" (this demo's checks)",
            certificates::CLUSTER_NAME,
            certificates::PLUGIN_USER,
            certificates::DEMO_USER
        ),
        "every connection below is mutual TLS, both sides checked against that CA".to_owned(),
    ];
    timeline.done(started, title, &notes);
    Ok(certificates)
}

/// Where the demo works, who the nodes are, and what plays what.
fn introduce(work: &WorkDir, backend: Backend, certificates: &Certificates) {
    let path = |p: &Path| work.show(p);
    let at_the_end =
        if work.keeps() { "kept at the end, as --keep asks" } else { "removed at the end" };
    say!("flockerctl demo: persistent, movable volumes for Mesos tasks, on this machine");
    say!();
    paragraph(&format!("Working in {} ($WORK below; {at_the_end}).", work.path().display()));
    paragraph(
        "Node A and node B are two dataset agents on this machine, each standing in for a host \
         of a Mesos cluster:",
    );
    for node in Node::BOTH {
        say!("  {node}  {}", certificates.node(node));
    }
    paragraph(&match backend.shares_storage() {
        true => format!(
            "They keep volumes in one store, {}, as hosts share a SAN or NFS, with the {} \
             backend: {}.",
            path(&work.shared()),
            backend.agent_backend(),
            backend.describe()
        ),
        false => format!(
            "They share no storage: each keeps its volumes on a disk of its own, a btrfs pool \
             mounted at {} and {} (each a {} sparse file on a loop device here), with the {} \
             backend: {}.",
            path(&work.pool(Node::A)),
            path(&work.pool(Node::B)),
            flocker_api::units::binary_size(agent::POOL_SIZE),
            backend.agent_backend(),
            backend.describe()
        ),
    });
    paragraph(
        "This program plays the Mesos agent of both nodes: it loads the isolator library and \
         calls prepare before a task starts and cleanup after it ends, for the Marathon app",
    );
    say!(
        "  /webapp  env FLOCKER_ID={}  FLOCKER_CONTAINER_VOLUME_PATH=/tmp/data",
        container::FLOCKER_ID
    );
    paragraph(&format!(
        "whose /tmp/data is {} on node A and {} on node B here, both nodes being one machine.",
        path(&work.task_path(Node::A)),
        path(&work.task_path(Node::B))
    ));
    say!();
}

fn paragraph(text: &str) {
    for line in wrap(text, WIDTH) {
        say!("{line}");
    }
}

fn start_control(
    binaries: &Binaries,
    work: &WorkDir,
    certificates: &Certificates,
    notes: &mut Vec<String>,
) -> anyhow::Result<Cluster> {
    let cluster = Cluster::start_control(&binaries.control, work, certificates)?;
    let control = &cluster.control;
    notes.push(format!(
        "pid {}: REST API (Flocker's v1 API) on {}, agent API on {}; log in {}",
        control.service.pid(),
        control.rest,
        control.agent,
        work.show(control.service.log())
    ));
    let version = cluster.client.version().map_err(anyhow::Error::from)?;
    notes.push(format!("GET /v1/version answers {}", version.flocker));
    Ok(cluster)
}

fn start_agents(
    binaries: &Binaries,
    backend: Backend,
    work: &WorkDir,
    certificates: &Certificates,
    cluster: &mut Cluster,
    notes: &mut Vec<String>,
) -> anyhow::Result<[ApiNode; 2]> {
    cluster.start_agents(&binaries.agent, work, backend)?;
    let seen = cluster.wait_for_nodes(certificates.nodes)?;
    for node in Node::BOTH {
        let pid = cluster.agent(node).map(|a| a.pid().to_string()).unwrap_or_default();
        notes.push(format!(
            "{node}: pid {pid}, configured by {}, mounts under {}, seen at {}",
            work.show(&work.node(node).join("agent.yml")),
            work.show(&work.mount_root(node)),
            seen[node.index()].host
        ));
        if backend == Backend::Btrfs {
            notes.push(format!("{node}: {}", pools::describe(work, node)?));
        }
    }
    if backend == Backend::Btrfs {
        notes.push(
            "each takes the other's pushes on a port of its own (transfer_port: 0, any free \
             one), over mutual TLS with its node certificate"
                .into(),
        );
    }
    Ok(seen)
}

fn load_isolators(
    binaries: &Binaries,
    backend: Backend,
    work: &WorkDir,
    certificates: &Certificates,
    cluster: &Cluster,
    notes: &mut Vec<String>,
) -> anyhow::Result<[MesosAgent; 2]> {
    let library = mesos::load(&binaries.library)?;
    notes.push(format!("{}, version {}", binaries.library.display(), library.version()));
    let rest_port = cluster.control.rest.port();
    let create = |node| {
        let parameters = mesos::module_parameters(work, certificates, backend, rest_port, node);
        MesosAgent::create(library, node, &parameters)
    };
    let agents = [create(Node::A)?, create(Node::B)?];
    notes.push(format!(
        "flocker_isolator_new, once per node, with what modules.json would give it: the control \
         service, the \"{}\" user, the node's node.crt, a state_dir of its own, host_path_roots \
         its tmp/ (links go only there), mount_check {}, default_maximum_size 64MiB",
        certificates::PLUGIN_USER,
        backend.mount_check()
    ));
    notes.push("the library logs through this program's logger (RUST_LOG=debug shows it)".into());
    Ok(agents)
}
