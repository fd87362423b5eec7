//! What `flockerctl list` shows: the desired configuration joined with what the agents report,
//! their problems and the pushes of volumes between nodes under way included.

use std::collections::HashMap;

use flocker_api::agent_protocol::TransferPhase;
use flocker_api::types::DatasetTransfer;
use flocker_api::{Dataset, DatasetProblem, DatasetState, Lease, Metadata, Node, NodeUuid};
use serde::Serialize;

use super::size;

/// How far a dataset's volume is from what the configuration asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// On its node and mounted: a task can use it there.
    Mounted,
    /// On its node, not mounted (yet).
    Attached,
    /// Not on its node yet: being created, or moving from another node.
    Pending,
    /// Not mounted, and its node's agent will not go on: see the row's `problem`.
    Refused,
    /// Deleted: a tombstone, its volume destroyed or being destroyed.
    Deleted,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Self::Mounted => "mounted",
            Self::Attached => "attached",
            Self::Pending => "pending",
            Self::Refused => "refused",
            Self::Deleted => "deleted",
        }
    }
}

/// One dataset, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetRow {
    pub dataset_id: String,
    pub maximum_size: Option<u64>,
    pub metadata: Metadata,
    pub status: Status,
    /// The node the configuration puts it on.
    pub primary: NodeUuid,
    /// That node's address, if its agent is reporting.
    pub host: Option<String>,
    /// Where it is mounted, when it is.
    pub path: Option<String>,
    /// The node holding its lease, if any: it cannot be moved or destroyed meanwhile.
    pub leased_to: Option<NodeUuid>,
    /// Why its node's agent leaves it as it is, in the agent's words (left out when there is
    /// none, and from a Flocker 1.x service, which does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The push of its volume from another node's own disk under way, as the pushing node
    /// reports it (left out when there is none, and from a service that does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,
}

/// A push of a dataset's volume between two nodes' own disks (the btrfs backend), as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    /// The node pushing: the one that had the volume.
    pub from: NodeUuid,
    pub to: NodeUuid,
    /// `pre-copy` while the old node's task may still write, then `handoff`.
    pub phase: TransferPhase,
    /// Bytes of the current send so far.
    pub sent: u64,
    /// What the current send is expected to carry, when known.
    pub estimate: Option<u64>,
    /// Why its last attempt failed, in the pushing node's words.
    pub problem: Option<String>,
}

impl Push {
    fn of(transfer: &DatasetTransfer) -> Self {
        Self {
            from: transfer.from,
            to: transfer.to,
            phase: transfer.phase,
            sent: transfer.sent,
            estimate: transfer.estimate,
            problem: transfer.problem.clone(),
        }
    }

    /// For people: `pushing to 2023157b: 412 MiB of 1 GiB (pre-copy)`, `handing off to
    /// 2023157b: 3 MiB of 4 MiB`, or `push to 2023157b failing: <why>`.
    pub fn describe(&self, long: bool) -> String {
        let to = short(&self.to.to_string(), long);
        let progress = size::progress(self.sent, self.estimate);
        match (&self.problem, self.phase) {
            (Some(problem), _) => format!("push to {to} failing: {problem}"),
            (None, TransferPhase::PreCopy) => format!("pushing to {to}: {progress} (pre-copy)"),
            (None, TransferPhase::Handoff) => format!("handing off to {to}: {progress}"),
        }
    }
}

/// Every dataset (tombstones only with `include_deleted`), sorted by primary's address, then id.
/// `states`, `problems` and `transfers` are what the agents report.
pub fn dataset_rows(
    datasets: &[Dataset],
    states: &[DatasetState],
    problems: &[DatasetProblem],
    transfers: &[DatasetTransfer],
    nodes: &[Node],
    leases: &[Lease],
    include_deleted: bool,
) -> Vec<DatasetRow> {
    let hosts: HashMap<NodeUuid, &str> = nodes.iter().map(|n| (n.uuid, n.host.as_str())).collect();
    let mut rows: Vec<DatasetRow> = datasets
        .iter()
        .filter(|d| include_deleted || !d.deleted)
        .map(|dataset| {
            let state = states.iter().find(|s| s.dataset_id == dataset.dataset_id);
            // Only its primary's word counts: another node's is about where it no longer goes.
            let problem = problems
                .iter()
                .find(|p| p.dataset_id == dataset.dataset_id && p.node_uuid == dataset.primary)
                .map(|p| p.problem.clone());
            // A push to its primary, else one to elsewhere (a move undone while it ran).
            let pushes = || transfers.iter().filter(|t| t.dataset_id == dataset.dataset_id);
            let push = pushes().find(|t| t.to == dataset.primary).or_else(|| pushes().next());
            DatasetRow {
                dataset_id: dataset.dataset_id.to_string(),
                maximum_size: dataset.maximum_size,
                metadata: dataset.metadata.clone(),
                status: status(dataset, state, problem.is_some()),
                primary: dataset.primary,
                host: hosts.get(&dataset.primary).map(|h| (*h).to_owned()),
                path: state
                    .filter(|s| s.primary == Some(dataset.primary))
                    .and_then(|s| s.path.clone()),
                leased_to: leases
                    .iter()
                    .find(|l| l.dataset_id == dataset.dataset_id)
                    .map(|l| l.node_uuid),
                problem,
                push: push.map(Push::of),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.host, &a.dataset_id).cmp(&(&b.host, &b.dataset_id)));
    rows
}

/// A problem overrides every status but mounted and deleted: the agent will not go further.
fn status(dataset: &Dataset, state: Option<&DatasetState>, problem: bool) -> Status {
    if dataset.deleted {
        return Status::Deleted;
    }
    match state {
        Some(state) if state.primary == Some(dataset.primary) && state.path.is_some() => {
            Status::Mounted
        }
        _ if problem => Status::Refused,
        Some(state) if state.primary == Some(dataset.primary) => Status::Attached,
        _ => Status::Pending,
    }
}

/// The cells of one row: `long` shows whole UUIDs, `human` sizes like `10.0G`.
pub fn dataset_cells(row: &DatasetRow, long: bool, human: bool) -> Vec<String> {
    let size = match row.maximum_size {
        Some(bytes) if human => size::human(bytes),
        Some(bytes) => bytes.to_string(),
        None => "-".to_owned(),
    };
    let metadata: Vec<String> = row.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let node = node_cell(&row.primary, row.host.as_deref(), long);
    vec![
        short(&row.dataset_id, long),
        size,
        if metadata.is_empty() { "-".to_owned() } else { metadata.join(",") },
        row.status.label().to_owned(),
        node,
    ]
}

/// The lines under the table: for each row with a problem, and for each with a push under way,
/// the dataset as its row shows it, then the problem or the push (a row with both gets both, the
/// problem first). Nothing for rows with neither.
pub fn problem_lines(rows: &[DatasetRow], long: bool) -> String {
    let mut lines = String::new();
    for row in rows {
        let dataset = short(&row.dataset_id, long);
        if let Some(problem) = &row.problem {
            lines.push_str(&format!("{dataset}: {problem}\n"));
        }
        if let Some(push) = &row.push {
            lines.push_str(&format!("{dataset}: {}\n", push.describe(long)));
        }
    }
    lines
}

/// A node for people: `3f2a0c1e (10.0.0.1)`, or `(no agent)` when none reports for it.
pub fn node_label(node: &NodeUuid, nodes: &[Node]) -> String {
    let host = nodes.iter().find(|n| &n.uuid == node).map(|n| n.host.as_str());
    node_cell(node, host, false)
}

/// A node and its host as a table shows them; `long` gives the whole UUID.
pub fn node_cell(node: &NodeUuid, host: Option<&str>, long: bool) -> String {
    format!("{} ({})", short(&node.to_string(), long), host.unwrap_or("no agent"))
}

/// The headers matching [`dataset_cells`].
pub const DATASET_HEADERS: [&str; 5] = ["DATASET", "SIZE", "METADATA", "STATUS", "NODE"];

/// The first 8 characters of a UUID, as Flocker's tools showed them, unless `long`.
pub fn short(uuid: &str, long: bool) -> String {
    if long { uuid.to_owned() } else { uuid.chars().take(8).collect() }
}

#[cfg(test)]
mod tests {
    use flocker_api::DatasetId;

    use super::*;

    fn node(n: u8) -> NodeUuid {
        format!("{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000").parse().unwrap()
    }

    fn dataset(n: u8, primary: NodeUuid, deleted: bool) -> Dataset {
        let id: DatasetId =
            format!("{n}{n}{n}{n}{n}{n}{n}{n}-1111-4111-8111-111111111111").parse().unwrap();
        serde_json::from_value(serde_json::json!({
            "dataset_id": id, "primary": primary, "deleted": deleted,
            "metadata": {"name": format!("data-{n}")}, "maximum_size": 67108864u64,
        }))
        .unwrap()
    }

    fn state(dataset: &Dataset, primary: Option<NodeUuid>, path: Option<&str>) -> DatasetState {
        serde_json::from_value(serde_json::json!({
            "dataset_id": dataset.dataset_id, "primary": primary, "path": path,
        }))
        .unwrap()
    }

    #[test]
    fn status_says_how_far_the_volume_is_from_its_configuration() {
        let (a, b) = (node(1), node(2));
        let datasets = [
            dataset(1, a, false),
            dataset(2, a, false),
            dataset(3, b, false),
            dataset(4, a, false),
        ];
        let states = [
            state(&datasets[0], Some(a), Some("/flocker/1")),
            state(&datasets[1], Some(a), None),
            state(&datasets[2], Some(a), Some("/flocker/3")), // still on A, moving to B
        ];
        let rows = dataset_rows(&datasets, &states, &[], &[], &[], &[], false);
        let statuses: Vec<Status> = rows.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Mounted, Status::Attached, Status::Pending, Status::Pending]);
        assert_eq!(rows[0].path.as_deref(), Some("/flocker/1"));
        assert_eq!(rows[2].path, None, "a path on the old node is not where it will be");
    }

    #[test]
    fn tombstones_are_listed_only_when_asked() {
        let datasets = [dataset(1, node(1), false), dataset(2, node(1), true)];
        assert_eq!(dataset_rows(&datasets, &[], &[], &[], &[], &[], false).len(), 1);
        let all = dataset_rows(&datasets, &[], &[], &[], &[], &[], true);
        assert_eq!(all[1].status, Status::Deleted);
    }

    #[test]
    fn cells_show_short_ids_human_sizes_and_the_node_s_address() {
        let a = node(1);
        let datasets = [dataset(1, a, false)];
        let nodes: Vec<Node> =
            serde_json::from_value(serde_json::json!([{"uuid": a, "host": "10.0.0.1"}])).unwrap();
        let row = &dataset_rows(&datasets, &[], &[], &[], &nodes, &[], false)[0];
        assert_eq!(
            dataset_cells(row, false, true),
            ["11111111", "64.0M", "name=data-1", "pending", "11111111 (10.0.0.1)"]
        );
        let long = dataset_cells(row, true, false);
        assert_eq!(long[0], datasets[0].dataset_id.to_string());
        assert_eq!(long[1], "67108864");
    }

    #[test]
    fn a_node_without_an_agent_says_so() {
        let row = &dataset_rows(&[dataset(1, node(1), false)], &[], &[], &[], &[], &[], false)[0];
        assert_eq!(dataset_cells(row, false, false)[4], "11111111 (no agent)");
    }

    fn problem(dataset: &Dataset, node: NodeUuid, text: &str) -> DatasetProblem {
        DatasetProblem { dataset_id: dataset.dataset_id, node_uuid: node, problem: text.into() }
    }

    #[test]
    fn a_problem_of_the_primary_makes_the_dataset_refused_and_is_shown_under_the_table() {
        let (a, b) = (node(1), node(2));
        let datasets = [dataset(1, b, false), dataset(2, b, false), dataset(3, a, false)];
        let states = [state(&datasets[1], Some(b), None)];
        let problems = [
            problem(&datasets[0], b, "not visible on this node"),
            problem(&datasets[1], b, "a file system of its own"),
            problem(&datasets[2], b, "said by a node it left"),
        ];
        let rows = dataset_rows(&datasets, &states, &problems, &[], &[], &[], false);
        let statuses: Vec<Status> = rows.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Refused, Status::Refused, Status::Pending]);
        assert_eq!(rows[2].problem, None, "only the primary's problem counts");
        assert_eq!(
            problem_lines(&rows, false),
            "11111111: not visible on this node\n22222222: a file system of its own\n"
        );
        assert_eq!(dataset_cells(&rows[0], false, false)[3], "refused");
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["problem"], "not visible on this node");
        assert!(json[2].get("problem").is_none(), "no key without a problem");
    }

    #[test]
    fn without_problems_nothing_is_added_under_the_table() {
        let rows = dataset_rows(&[dataset(1, node(1), false)], &[], &[], &[], &[], &[], false);
        assert_eq!(problem_lines(&rows, true), "");
    }

    fn transfer(dataset: &Dataset, from: NodeUuid, to: NodeUuid) -> DatasetTransfer {
        DatasetTransfer {
            dataset_id: dataset.dataset_id,
            from,
            to,
            phase: TransferPhase::PreCopy,
            sent: 412 << 20,
            estimate: Some(1 << 30),
            problem: None,
        }
    }

    #[test]
    fn a_push_under_way_is_shown_under_the_table_with_how_far_it_has_come() {
        let (a, b) = (node(1), node(2));
        let datasets = [dataset(1, b, false), dataset(2, b, false), dataset(3, b, false)];
        let states = [
            state(&datasets[0], Some(a), Some("/flocker/1")), // the old task still runs on A
            state(&datasets[1], Some(a), None),
        ];
        let handoff = DatasetTransfer {
            phase: TransferPhase::Handoff,
            sent: 3 << 20,
            estimate: Some(4 << 20),
            ..transfer(&datasets[1], a, b)
        };
        let failing = DatasetTransfer {
            problem: Some("connection refused by node 22222222".into()),
            ..transfer(&datasets[2], a, b)
        };
        let transfers = [transfer(&datasets[0], a, b), handoff, failing];
        let rows = dataset_rows(&datasets, &states, &[], &transfers, &[], &[], false);
        assert_eq!(
            problem_lines(&rows, false),
            "11111111: pushing to 22222222: 412 MiB of 1 GiB (pre-copy)\n\
             22222222: handing off to 22222222: 3 MiB of 4 MiB\n\
             33333333: push to 22222222 failing: connection refused by node 22222222\n"
        );
        let statuses: Vec<Status> = rows.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Pending; 3], "a push changes no status");
        let long = problem_lines(&rows[..1], true);
        assert!(long.starts_with(&format!("{}: pushing to {b}: ", datasets[0].dataset_id)));
    }

    #[test]
    fn a_push_without_an_estimate_says_only_what_was_sent() {
        let (a, b) = (node(1), node(2));
        let datasets = [dataset(1, b, false)];
        let transfers = [DatasetTransfer { estimate: None, ..transfer(&datasets[0], a, b) }];
        let rows = dataset_rows(&datasets, &[], &[], &transfers, &[], &[], false);
        assert_eq!(
            problem_lines(&rows, false),
            "11111111: pushing to 22222222: 412 MiB (pre-copy)\n"
        );
    }

    #[test]
    fn a_push_to_the_primary_is_preferred_and_shown_after_the_agent_s_problem() {
        let (a, b, c) = (node(1), node(2), node(3));
        let datasets = [dataset(1, b, false)];
        let transfers = [transfer(&datasets[0], a, c), transfer(&datasets[0], a, b)];
        let problems = [problem(&datasets[0], b, "not visible on this node")];
        let rows = dataset_rows(&datasets, &[], &problems, &transfers, &[], &[], false);
        assert_eq!(rows[0].push.as_ref().map(|p| p.to), Some(b));
        assert_eq!(
            problem_lines(&rows, false),
            "11111111: not visible on this node\n\
             11111111: pushing to 22222222: 412 MiB of 1 GiB (pre-copy)\n"
        );
        let elsewhere = dataset_rows(&datasets, &[], &[], &transfers[..1], &[], &[], false);
        assert_eq!(elsewhere[0].push.as_ref().map(|p| p.to), Some(c), "shown all the same");
    }

    #[test]
    fn a_push_is_in_the_json_with_every_field_and_left_out_without_one() {
        let (a, b) = (node(1), node(2));
        let datasets = [dataset(1, b, false), dataset(2, b, false)];
        let transfers = [transfer(&datasets[0], a, b)];
        let rows = dataset_rows(&datasets, &[], &[], &transfers, &[], &[], false);
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(
            json[0]["push"],
            serde_json::json!({
                "from": a, "to": b, "phase": "pre-copy", "sent": 412u64 << 20,
                "estimate": 1u64 << 30, "problem": null,
            })
        );
        assert!(json[1].get("push").is_none(), "no key without a push");
    }
}
