//! The life of the Marathon app `/webapp` and its volume `webapp-data`, step by step, as the
//! Mesos agents of node A and node B see it: task 1 on A (the volume is created, mounted,
//! linked, written), a task on B refused while task 1 runs, task 1's end, task 2 on B (the
//! volume moves, the bytes are there), task 2's end, and the volume's deletion. Each step
//! checks what it claims; the promises are kept as their checks pass.

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use flocker_api::types::DatasetTransfer;
use flocker_api::{Client, Dataset, DatasetId, NodeUuid};
use flocker_isolator_loader::CallError;

use crate::demo::backend::Backend;
use crate::demo::container::{Container, FLOCKER_ID};
use crate::demo::mesos::MesosAgent;
use crate::demo::promises::{Promise, Promises};
use crate::demo::story::{agent_log, control_log, step, task_log};
use crate::demo::task::{self, Task};
use crate::demo::timeline::{Timeline, Witness, milliseconds};
use crate::demo::workdir::WorkDir;
use crate::demo::{Node, machine, push, volume};
use crate::ops::{table, view};

/// How long a task may take to write or read its page, or to end.
const TASK_TIMEOUT: Duration = Duration::from_secs(10);
const MIB: u64 = 1024 * 1024;
/// Longer than this between the unmount and the end of the listing is worth explaining.
const LINGER: Duration = Duration::from_millis(100);

/// Everything the app's steps use.
pub struct Stage<'a> {
    pub work: &'a WorkDir,
    pub timeline: &'a Timeline,
    pub backend: Backend,
    pub client: &'a Client,
    pub nodes: [NodeUuid; 2],
    /// Each node's host, as `/v1/state/nodes` shows it.
    pub hosts: [String; 2],
    /// Node A's and node B's Mesos agents.
    pub mesos: [MesosAgent; 2],
}

/// Plays the app's story, keeping promises 1 to 3 as they are shown.
pub fn play(stage: &Stage, promises: &mut Promises) -> anyhow::Result<()> {
    let (container_1, dataset) = stage.prepare_task_1()?;
    let (task_1, written) = stage.run_task_1(&container_1)?;
    promises.keep(
        Promise::CreatedOnA,
        format!(
            "dataset {} was created by task 1's prepare on node A; task 1 wrote {} bytes to \
             index.html in it",
            dataset.dataset_id,
            written.len()
        ),
    );
    let took = stage.refuse_on_b()?;
    promises.keep(
        Promise::RefusedOnB,
        format!(
            "refused in {took:.1} ms, the reason naming node A ({}) and its host {}",
            stage.nodes[Node::A.index()],
            stage.hosts[Node::A.index()]
        ),
    );
    stage.end_task_1(task_1, &container_1, dataset.dataset_id)?;
    let container_2 = stage.prepare_task_2(dataset.dataset_id)?;
    stage.run_task_2(&container_2, &written)?;
    stage.show_listing()?;
    promises.keep(
        Promise::MovedToB,
        format!(
            "task 2 on node B read the {} bytes task 1 wrote on node A, byte for byte",
            written.len()
        ),
    );
    stage.end_task_2(&container_2, dataset.dataset_id)?;
    stage.delete(dataset.dataset_id)
}

impl Stage<'_> {
    /// What an operator sees now: the listing `flockerctl list --human` prints.
    fn show_listing(&self) -> anyhow::Result<()> {
        let title = "What an operator sees meanwhile: `flockerctl list --human`";
        let table = step(self.timeline, title, &[], |notes| {
            let (datasets, _) = self.client.list_datasets()?;
            let (states, leases) = (self.client.dataset_states()?, self.client.list_leases()?);
            let problems = self.client.dataset_problems()?.unwrap_or_default();
            let transfers = self.client.dataset_transfers()?.unwrap_or_default();
            let nodes = self.client.list_nodes()?;
            let rows = view::dataset_rows(
                &datasets, &states, &problems, &transfers, &nodes, &leases, false,
            );
            ensure!(
                rows.iter()
                    .any(|r| r.status == view::Status::Mounted && r.primary == self.uuid(Node::B)),
                "the listing does not show the volume mounted on node B"
            );
            notes.push(format!(
                "node B is {}: the volume is mounted there, leased to task 2",
                view::short(&self.uuid(Node::B).to_string(), false)
            ));
            let cells: Vec<Vec<String>> =
                rows.iter().map(|r| view::dataset_cells(r, false, true)).collect();
            let problems = view::problem_lines(&rows, false);
            let table = table::render(&view::DATASET_HEADERS, &cells);
            Ok(if problems.is_empty() { table } else { format!("{table}\n{problems}") })
        })?;
        self.timeline.verbatim(&table);
        Ok(())
    }

    fn mesos(&self, node: Node) -> &MesosAgent {
        &self.mesos[node.index()]
    }

    fn uuid(&self, node: Node) -> NodeUuid {
        self.nodes[node.index()]
    }

    /// The logs that may explain a failure on `node`.
    fn witnesses(&self, node: Node) -> [Witness; 3] {
        [agent_log(self.work, node), control_log(self.work), task_log(self.work, node)]
    }

    fn prepare_task_1(&self) -> anyhow::Result<(Container, Dataset)> {
        let title =
            format!("Node A: Mesos calls prepare for task 1 of /webapp (FLOCKER_ID={FLOCKER_ID})");
        step(self.timeline, &title, &self.witnesses(Node::A), |notes| {
            let before = volume::datasets_named(self.client, FLOCKER_ID)?;
            ensure!(before.is_empty(), "a volume named {FLOCKER_ID} existed before any task ran");
            let container = self.container(Node::A)?;
            notes.push(format!("container {}", container.id));
            let launch = self.mesos(Node::A).prepare(&container).context("prepare failed")?;
            let dataset = volume::the_dataset(self.client, FLOCKER_ID)?;
            ensure!(dataset.primary == self.uuid(Node::A), "the volume was created elsewhere");
            notes.push(format!(
                "no volume {FLOCKER_ID} existed: the isolator created dataset {} ({} MiB) on \
                 node A, and took node A's lease on it (while a task uses a volume, the \
                 lease pins it to the task's node)",
                dataset.dataset_id,
                dataset.maximum_size.unwrap_or_default() / MIB
            ));
            self.check_lease(dataset.dataset_id, Some(Node::A))?;
            self.check_in_place(Node::A, dataset.dataset_id, notes)?;
            notes.push(match launch {
                None => "prepare answered: no launch info, as a host path needs no mount".into(),
                Some(launch) => format!("prepare answered with the launch info {launch}"),
            });
            Ok((container, dataset))
        })
    }

    fn run_task_1(&self, container: &Container) -> anyhow::Result<(Task, Vec<u8>)> {
        let title = "Task 1 runs on node A: it writes index.html into its volume";
        step(self.timeline, title, &self.witnesses(Node::A), |notes| {
            let task = Task::start(task::WRITER, container, &self.work.task_log(Node::A))?;
            notes.push(format!(
                "pid {}: sh -c, with FLOCKER_ID and FLOCKER_CONTAINER_VOLUME_PATH in its \
                 environment as Mesos sets them",
                task.pid()
            ));
            let written = task.next_line(TASK_TIMEOUT)?;
            notes.push(format!("it wrote: {}", String::from_utf8_lossy(&written).trim_end()));
            let page = self.work.task_path(Node::A).join("index.html");
            let found =
                std::fs::read(&page).with_context(|| format!("cannot read {}", page.display()))?;
            let page = self.work.show(&page);
            ensure!(found == written, "{page} does not hold what task 1 wrote");
            notes.push(format!("{page} holds those {} bytes; task 1 keeps running", written.len()));
            Ok((task, written))
        })
    }

    /// A second task asks for the volume on node B while task 1 holds it: how long the refusal
    /// took, in milliseconds.
    fn refuse_on_b(&self) -> anyhow::Result<f64> {
        let title = "Node B: Mesos calls prepare for task 2 while task 1 still runs: REFUSED";
        step(self.timeline, title, &self.witnesses(Node::B), |notes| {
            notes.push(
                "Marathon's default upgrade starts the new task before it stops the old one".into(),
            );
            let container = self.container(Node::B)?;
            let started = self.timeline.now();
            let reason = match self.mesos(Node::B).prepare(&container) {
                Err(CallError::Failed(reason)) => reason,
                Err(other) => return Err(anyhow::Error::from(other).context("prepare failed")),
                Ok(_) => anyhow::bail!("node B was given the volume while task 1 used it on A"),
            };
            let took = milliseconds(started.elapsed());
            notes.push(format!("the isolator's reason, as the Mesos agent logs it: {reason}"));
            let (uuid, host) = (self.uuid(Node::A).to_string(), &self.hosts[Node::A.index()]);
            ensure!(reason.contains(&uuid), "the reason does not name node A ({uuid})");
            ensure!(reason.contains(host.as_str()), "the reason does not name node A's host");
            notes.push(format!("that is node A, and {host} its host: the holder is named"));
            let dataset = volume::the_dataset(self.client, FLOCKER_ID)?;
            self.check_lease(dataset.dataset_id, Some(Node::A))?;
            check_absent(&self.work.task_path(Node::B))?;
            notes
                .push("task 1's lease on node A is untouched; nothing was linked on node B".into());
            self.mesos(Node::B).cleanup(&container)?;
            notes.push("Mesos then calls cleanup for the container it could not launch: ok".into());
            Ok(took)
        })
    }

    fn end_task_1(
        &self,
        mut task: Task,
        container: &Container,
        id: DatasetId,
    ) -> anyhow::Result<()> {
        let title = "Task 1 ends; node A: Mesos calls cleanup";
        step(self.timeline, title, &self.witnesses(Node::A), |notes| {
            let status = task.end(TASK_TIMEOUT)?;
            ensure!(status.success(), "task 1 failed: {status}");
            notes.push(format!("task 1 (pid {}) ended: {status}", task.pid()));
            self.mesos(Node::A).cleanup(container)?;
            self.check_released(Node::A, id, notes)?;
            notes.push("the volume stays mounted on node A until another node asks for it".into());
            Ok(())
        })
    }

    fn prepare_task_2(&self, id: DatasetId) -> anyhow::Result<Container> {
        let title = "Node B: Mesos calls prepare for task 2 again: the volume moves from A to B";
        let witnesses =
            [agent_log(self.work, Node::A), agent_log(self.work, Node::B), control_log(self.work)];
        step(self.timeline, title, &witnesses, |notes| {
            let container = self.container(Node::B)?;
            notes.push(format!("a new container, {}", container.id));
            let (prepared, pushes) = match self.backend {
                Backend::Btrfs => {
                    push::watching(self.client, id, || self.mesos(Node::B).prepare(&container))
                }
                Backend::Directory | Backend::Loopback => {
                    (self.mesos(Node::B).prepare(&container), Vec::new())
                }
            };
            prepared.context("prepare failed")?;
            let dataset = volume::the_dataset(self.client, FLOCKER_ID)?;
            ensure!(dataset.dataset_id == id, "the volume is now another dataset");
            ensure!(dataset.primary == self.uuid(Node::B), "the volume's primary is not node B");
            let on_a = volume::mounted_on(self.client, id, self.uuid(Node::A))?;
            ensure!(on_a.is_none(), "the volume is still mounted on node A");
            let how = match self.backend {
                Backend::Btrfs => {
                    "node A's agent unmounted the volume and pushed it to node B's agent over \
                     mutual TLS, which made a volume of it in its own pool"
                }
                Backend::Directory | Backend::Loopback => {
                    "node A's agent let the volume go, node B's agent took it"
                }
            };
            notes.push(format!(
                "the isolator took node B's lease and made node B the primary of dataset {id}; \
                 {how}"
            ));
            self.check_lease(id, Some(Node::B))?;
            self.check_in_place(Node::B, id, notes)?;
            if self.backend == Backend::Btrfs {
                self.show_push(&pushes, id, notes)?;
            }
            Ok(container)
        })
    }

    /// The push as `flockerctl list` showed it while prepare waited, and that node A no longer
    /// holds the volume once node B has it.
    fn show_push(
        &self,
        seen: &[DatasetTransfer],
        id: DatasetId,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        match seen {
            [] => notes.push(
                "the push was too quick for a look at /v1/state/transfers to catch it during \
                 the move (a longer one shows there, and under the table of `flockerctl list`, \
                 with the bytes sent)"
                    .into(),
            ),
            _ => {
                let listed: Vec<String> = seen.iter().map(push::as_listed).collect();
                notes.push(format!(
                    "meanwhile `flockerctl list` showed the push under its table, as node A's \
                     agent reported it to /v1/state/transfers: {}",
                    listed.join(", then ")
                ));
            }
        }
        let pool = self.work.pool(Node::A);
        let took = push::wait_until_gone(self.client, &pool, id)?;
        notes.push(format!(
            "node A no longer holds it: {} has no subvolume or snapshot of dataset {id} left, \
             and no push of it is under way ({:.1} ms after prepare returned)",
            self.work.show(&pool),
            milliseconds(took)
        ));
        Ok(())
    }

    fn run_task_2(&self, container: &Container, written: &[u8]) -> anyhow::Result<()> {
        let title = "Task 2 runs on node B: it reads index.html";
        step(self.timeline, title, &self.witnesses(Node::B), |notes| {
            let mut task = Task::start(task::READER, container, &self.work.task_log(Node::B))?;
            let pid = task.pid();
            let (read, status) = task.run_to_end(TASK_TIMEOUT)?;
            ensure!(status.success(), "task 2 failed: {status}");
            notes.push(format!("pid {pid} read: {}", String::from_utf8_lossy(&read).trim_end()));
            ensure!(
                read == written,
                "task 2 read {} bytes, not the {} task 1 wrote",
                read.len(),
                written.len()
            );
            notes.push(format!("the same {} bytes task 1 wrote on node A", written.len()));
            Ok(())
        })
    }

    fn end_task_2(&self, container: &Container, id: DatasetId) -> anyhow::Result<()> {
        let title = "Task 2 ends; node B: Mesos calls cleanup";
        step(self.timeline, title, &self.witnesses(Node::B), |notes| {
            self.mesos(Node::B).cleanup(container)?;
            self.check_released(Node::B, id, notes)
        })
    }

    fn delete(&self, id: DatasetId) -> anyhow::Result<()> {
        let title = "The volume is deleted through the API; node B's agent destroys it";
        step(self.timeline, title, &self.witnesses(Node::B), |notes| {
            let deletion = volume::delete_and_wait(self.client, id)?;
            notes.push(format!("DELETE /v1/configuration/datasets/{id}: done"));
            notes.push(format!(
                "{:.1} ms later no node had it mounted: node B's agent unmounted it and \
                 destroyed it ({})",
                milliseconds(deletion.unmounted),
                match self.backend {
                    Backend::Directory => "its directory is gone",
                    Backend::Loopback => "loop device detached, file removed",
                    Backend::Btrfs => "its subvolume deleted from node B's pool",
                }
            ));
            let mut listed = format!(
                "{:.1} ms after the DELETE, /v1/state/datasets no longer listed it",
                milliseconds(deletion.gone)
            );
            if self.backend.shares_storage() && deletion.gone > deletion.unmounted + LINGER {
                listed += " (node A's agent had seen the volume in the shared store while it \
                           moved, and dropped it at its next look: agents look every second here)";
            }
            notes.push(listed);
            Ok(())
        })
    }

    /// A new container of the app on `node`, its volume at the node's task path.
    fn container(&self, node: Node) -> anyhow::Result<Container> {
        Container::new(FLOCKER_ID, &self.work.task_path(node), &self.work.sandbox(node))
    }

    /// The volume is mounted on `node` as the cluster state says, and linked at the task's
    /// path.
    fn check_in_place(
        &self,
        node: Node,
        id: DatasetId,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let mount = volume::mounted_on(self.client, id, self.uuid(node))?
            .with_context(|| format!("/v1/state/datasets does not show it mounted on {node}"))?;
        notes.push(format!(
            "{node}'s agent mounted it at {} ({})",
            self.work.show(&mount),
            self.what_is_at(node, &mount)
        ));
        let path = self.work.task_path(node);
        let link =
            std::fs::read_link(&path).with_context(|| format!("no link at {}", path.display()))?;
        ensure!(link == mount, "{} links to {}, not the volume", path.display(), link.display());
        notes.push(format!(
            "linked at {}, the task's FLOCKER_CONTAINER_VOLUME_PATH",
            self.work.show(&path)
        ));
        Ok(())
    }

    /// What the mount point is, for the curious: a link into the shared store, or a mount.
    fn what_is_at(&self, node: Node, mount: &Path) -> String {
        match self.backend {
            Backend::Directory => match std::fs::read_link(mount) {
                // The volume's directory in the shared store, under the node it is attached to.
                Ok(target) => match target.parent() {
                    Some(directory) => format!("a link into {}/", self.work.show(directory)),
                    None => format!("a link to {}", self.work.show(&target)),
                },
                Err(_) => "not a link".to_owned(),
            },
            Backend::Loopback => match machine::mount_at(mount) {
                Some(m) => format!("{} on {}", m.fs_type, m.source),
                None => "not a mount point".to_owned(),
            },
            // The subvolume in the node's pool, bind-mounted.
            Backend::Btrfs => match machine::mount_at(mount) {
                Some(m) => {
                    let inside = m.root.strip_prefix("/").unwrap_or(&m.root);
                    format!(
                        "a bind mount of {}, a subvolume of {node}'s pool ({} on {})",
                        self.work.show(&self.work.pool(node).join(inside)),
                        m.fs_type,
                        m.source
                    )
                }
                None => "not a mount point".to_owned(),
            },
        }
    }

    /// After a cleanup on `node`: its link is gone and its lease released.
    fn check_released(
        &self,
        node: Node,
        id: DatasetId,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let path = self.work.task_path(node);
        check_absent(&path)?;
        notes.push(format!("the link at {} is gone", self.work.show(&path)));
        self.check_lease(id, None)?;
        notes.push(format!("{node}'s lease is released: the volume is free to move"));
        Ok(())
    }

    /// The dataset is leased to `holder`, or to no one.
    fn check_lease(&self, id: DatasetId, holder: Option<Node>) -> anyhow::Result<()> {
        let leases: Vec<NodeUuid> =
            volume::leases_on(self.client, id)?.iter().map(|l| l.node_uuid).collect();
        let expected: Vec<NodeUuid> = holder.iter().map(|n| self.uuid(*n)).collect();
        let name = |uuid: &NodeUuid| match Node::BOTH.iter().find(|n| self.uuid(**n) == *uuid) {
            Some(node) => node.to_string(),
            None => uuid.to_string(),
        };
        let held: Vec<String> = leases.iter().map(name).collect();
        ensure!(
            leases == expected,
            "the volume should be leased to {}, and is leased to {}",
            holder.map_or("no one".to_owned(), |n| n.to_string()),
            if held.is_empty() { "no one".to_owned() } else { held.join(", ") }
        );
        Ok(())
    }
}

/// Nothing is at `path`, not even a dangling link.
fn check_absent(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(_) => anyhow::bail!("{} is still there", path.display()),
    }
}
