//! The cluster's actual state, as the agents report it: which nodes are alive, their eras, and
//! what each has. Kept in memory only and rebuilt from reports after a restart, as Flocker did.
//! With a store shared by several control services, the nodes that report to another service
//! are mirrored here as that service shares them (`store::zookeeper::nodes`), alive as long as
//! it does. Pure: the time is an argument, so liveness rules are unit tests.
//!
//! Each node's problems (why its agent leaves some of its datasets as they are) and the pushes
//! under way from it (its transfers) are kept the same way: replaced by each report, forgotten
//! with the node's era or when it goes quiet. So is the port where it takes pushes, from its
//! hello.
//!
//! A node speaks only for itself, and `/v1/state/datasets` lists each dataset once:
//! - mounted: where its configured primary reports it mounted, or else where the node that last
//!   mounted it as its primary still has it (the old node, while a move is under way). A node
//!   claiming another's dataset is not listed, and is logged.
//! - not mounted anywhere (Flocker's "non-manifest datasets", on storage the nodes share): as
//!   its primary's latest report saw it, or, while the primary is not reporting, as the newest
//!   report that saw it did. Each node's report is kept apart, so one node's report never
//!   erases what another's said.
//! - datasets the configuration does not know are dropped from reports: a node cannot make the
//!   listing (or the service's memory) grow with ids of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{ReportedDataset, ReportedTransfer};
use flocker_api::client::host_address;
use flocker_api::types::DatasetTransfer;
use flocker_api::{DatasetId, DatasetProblem, DatasetState, Era, Node, NodeUuid};

use crate::error::ApiError;
use crate::store::zookeeper::nodes::SharedNode;

struct NodeRecord {
    era: Era,
    host: String,
    /// Where on `host` it takes pushes from other nodes, as its hello said.
    transfer_port: Option<u16>,
    last_seen: Instant,
    /// The datasets of the configuration its last report named, by dataset.
    datasets: Vec<ReportedDataset>,
    /// Problems of the node's own datasets, one each, as its last report said.
    problems: BTreeMap<DatasetId, String>,
    /// The pushes under way from it, one per dataset of the configuration, by dataset.
    transfers: Vec<ReportedTransfer>,
    /// When its last report came, in report order.
    reported: u64,
    /// What its last report claimed that was not its to claim, to log each change once.
    ignored: BTreeSet<DatasetId>,
    /// Mirrored from another control service, which the agent reports to: alive while that
    /// service shares it (see `store::zookeeper::nodes`), not by its own calls here.
    remote: bool,
}

/// For each reported dataset, its configured primary; a dataset missing here is unknown.
pub type Primaries = BTreeMap<DatasetId, NodeUuid>;

/// What one state report says, once checked: the node's datasets, its problems (only those
/// of its own datasets) and its transfers.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub datasets: Vec<ReportedDataset>,
    pub problems: BTreeMap<DatasetId, String>,
    pub transfers: Vec<ReportedTransfer>,
}

pub struct ClusterState {
    nodes: BTreeMap<NodeUuid, NodeRecord>,
    /// The node that last reported each dataset mounted while being its primary.
    holders: BTreeMap<DatasetId, NodeUuid>,
    /// Every live node whose latest report names each dataset: what one dataset's state, or
    /// one node's pushes, need is found without reading every node's report.
    claimants: HashMap<DatasetId, BTreeSet<NodeUuid>>,
    reports: u64,
    eras: HashMap<Era, NodeUuid>,
    /// A node that makes no call for this long is dropped.
    expiry: Duration,
    /// Counts changes to what `/v1/state/*` shows, so answers can be cached.
    pub generation: u64,
    /// Counts changes to what the agents' views depend on besides the configuration: which
    /// nodes are alive, which datasets each lists, where each takes pushes. A report that only
    /// mounts or unmounts changes none of it.
    pub views: u64,
}

impl ClusterState {
    pub fn new(expiry: Duration) -> Self {
        Self {
            nodes: BTreeMap::new(),
            holders: BTreeMap::new(),
            claimants: HashMap::new(),
            reports: 0,
            eras: HashMap::new(),
            expiry,
            generation: 0,
            views: 0,
        }
    }

    /// An agent's hello, from `host`, taking pushes on `transfer_port` if it gives one. A new
    /// era (a reboot) drops what the node reported before.
    pub fn hello(
        &mut self,
        node: NodeUuid,
        era: Era,
        host: String,
        transfer_port: Option<u16>,
        now: Instant,
    ) {
        self.upsert(node, era, host, transfer_port, now).remote = false;
    }

    fn upsert(
        &mut self,
        node: NodeUuid,
        era: Era,
        host: String,
        transfer_port: Option<u16>,
        now: Instant,
    ) -> &mut NodeRecord {
        let mut new = false;
        let record = self.nodes.entry(node).or_insert_with(|| {
            new = true;
            NodeRecord {
                era,
                host: host.clone(),
                transfer_port,
                last_seen: now,
                datasets: Vec::new(),
                problems: BTreeMap::new(),
                transfers: Vec::new(),
                reported: 0,
                ignored: BTreeSet::new(),
                remote: false,
            }
        });
        // A new node changes the views if it takes pushes (below); what it holds comes later.
        let mut views_change = new && transfer_port.is_some();
        if record.era != era {
            self.eras.remove(&record.era);
            record.era = era;
            views_change |= record.transfer_port.is_some() && !record.datasets.is_empty();
            unclaim(&mut self.claimants, node, &std::mem::take(&mut record.datasets));
            record.problems.clear();
            record.transfers.clear();
        }
        let takes_pushes = record.transfer_port.is_some() || transfer_port.is_some();
        views_change |=
            takes_pushes && (record.host != host || record.transfer_port != transfer_port);
        record.host = host;
        record.transfer_port = transfer_port;
        record.last_seen = now;
        self.eras.insert(era, node);
        self.generation += 1;
        if views_change {
            self.views += 1;
        }
        record
    }

    /// A node as another control service shares it: its hello and its last report.
    pub fn mirror(
        &mut self,
        node: NodeUuid,
        shared: SharedNode,
        primaries: &Primaries,
        now: Instant,
    ) {
        let SharedNode { era, host, transfer_port, datasets, problems, transfers } = shared;
        self.upsert(node, era, host, transfer_port, now);
        // Checked against this service's configuration, as a report here would be.
        let problems = problems.into_iter().filter(|(id, _)| primaries.get(id) == Some(&node));
        let report = Report { datasets, problems: problems.collect(), transfers };
        let _ = self.report(&node, era, report, primaries, now);
        if let Some(record) = self.nodes.get_mut(&node) {
            record.remote = true;
        }
    }

    /// Drops a mirrored node that its service no longer shares; true if it was one.
    pub fn forget_mirrored(&mut self, node: &NodeUuid) -> bool {
        if !self.nodes.get(node).is_some_and(|record| record.remote) {
            return false;
        }
        if let Some(record) = self.nodes.remove(node) {
            unclaim(&mut self.claimants, *node, &record.datasets);
        }
        self.generation += 1;
        self.views += 1;
        true
    }

    /// The nodes mirrored from other services.
    pub fn mirrored(&self) -> Vec<NodeUuid> {
        self.nodes.iter().filter(|(_, r)| r.remote).map(|(node, _)| *node).collect()
    }

    /// What other services need of a node that reports here; `None` for a mirrored one.
    pub fn shared(&self, node: &NodeUuid) -> Option<SharedNode> {
        let record = self.nodes.get(node).filter(|record| !record.remote)?;
        Some(SharedNode {
            era: record.era,
            host: record.host.clone(),
            transfer_port: record.transfer_port,
            datasets: record.datasets.clone(),
            problems: record.problems.clone(),
            transfers: record.transfers.clone(),
        })
    }

    /// Notes that a node is alive; an unknown node must say hello first. True if the node
    /// was mirrored from another service until now: it reports here from now on.
    pub fn touch(&mut self, node: &NodeUuid, now: Instant) -> Result<bool, ApiError> {
        let record = self.nodes.get_mut(node).ok_or(ApiError::UnknownNode)?;
        record.last_seen = now;
        Ok(std::mem::replace(&mut record.remote, false))
    }

    /// Refuses a node that has not said hello in `era` (it must say hello again).
    pub fn check_era(&self, node: &NodeUuid, era: Era) -> Result<(), ApiError> {
        match self.nodes.get(node) {
            Some(record) if record.era == era => Ok(()),
            _ => Err(ApiError::UnknownNode),
        }
    }

    /// Replaces what a node reported: its datasets and transfers (those of datasets
    /// `primaries` knows; the first transfer of each) and its problems (already checked to be
    /// about its own datasets). A report from another era is refused: the agent must say hello
    /// again, so stale reports from before a reboot never count.
    pub fn report(
        &mut self,
        node: &NodeUuid,
        era: Era,
        report: Report,
        primaries: &Primaries,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.check_era(node, era)?;
        let Report { mut datasets, problems, mut transfers } = report;
        // Sorted, one per dataset: a lookup of one dataset in a node's report is a search.
        datasets.sort_by_key(|d| d.dataset_id);
        datasets.dedup_by_key(|d| d.dataset_id);
        transfers.retain(|t| primaries.contains_key(&t.dataset_id));
        transfers.sort_by_key(|t| t.dataset_id);
        transfers.dedup_by_key(|t| t.dataset_id);
        let mut ignored: BTreeSet<DatasetId> = BTreeSet::new();
        datasets.retain(|d| {
            let known = primaries.contains_key(&d.dataset_id);
            if !known {
                ignored.insert(d.dataset_id);
            }
            known
        });
        for mounted in datasets.iter().filter(|d| d.path.is_some()) {
            let id = mounted.dataset_id;
            if primaries.get(&id) == Some(node) {
                self.holders.insert(id, *node);
            } else if self.holders.get(&id) != Some(node) {
                ignored.insert(id);
            }
        }
        self.reports += 1;
        let reported = self.reports;
        let Some(record) = self.nodes.get_mut(node) else { return Err(ApiError::UnknownNode) };
        if record.ignored != ignored && !ignored.is_empty() {
            log::warn!(
                "node {node} ({}) reported datasets that are not its own or that the \
                 configuration does not know; they are not listed: {ignored:?}",
                crate::untrusted::Untrusted(&record.host)
            );
        }
        record.ignored = ignored;
        record.last_seen = now;
        record.remote = false;
        record.problems = problems;
        record.transfers = transfers;
        record.reported = reported;
        if record.datasets != datasets {
            // What a node on shared storage reports is no view's business (see `holdings`).
            if record.transfer_port.is_some() && ids_of(&record.datasets) != ids_of(&datasets) {
                self.views += 1;
            }
            unclaim(&mut self.claimants, *node, &record.datasets);
            for dataset in &datasets {
                self.claimants.entry(dataset.dataset_id).or_default().insert(*node);
            }
            record.datasets = datasets;
            self.generation += 1;
        }
        Ok(())
    }

    /// Drops nodes that have been quiet too long, and says which. A mirrored node is alive
    /// while the service it reports to shares it.
    pub fn sweep(&mut self, now: Instant) -> Vec<NodeUuid> {
        let expiry = self.expiry;
        let mut gone = Vec::new();
        let mut pushers_gone = false;
        let claimants = &mut self.claimants;
        self.nodes.retain(|uuid, record| {
            if record.remote {
                record.last_seen = now;
            }
            let alive = now.saturating_duration_since(record.last_seen) < expiry;
            if !alive {
                log::info!("node {uuid} ({}) stopped reporting; dropping its state", record.host);
                gone.push(*uuid);
                pushers_gone |= record.transfer_port.is_some();
                unclaim(claimants, *uuid, &record.datasets);
            }
            alive
        });
        if !gone.is_empty() {
            self.generation += 1;
        }
        if pushers_gone {
            self.views += 1;
        }
        gone
    }

    /// Every live node with the ids of the datasets its latest report lists (those of the
    /// configuration), for the agents' views.
    pub fn holdings(
        &self,
    ) -> impl Iterator<Item = (NodeUuid, impl Iterator<Item = DatasetId> + '_)> + '_ {
        // Only nodes that take pushes hold volumes on disks of their own: a node on shared
        // storage reports volumes every node can see, and pushes nothing.
        self.nodes
            .iter()
            .filter(|(_, record)| record.transfer_port.is_some())
            .map(|(uuid, record)| (*uuid, record.datasets.iter().map(|d| d.dataset_id)))
    }

    /// What one node's pushes depend on (see [`Self::holdings`]), found through the index:
    /// `node`'s own holdings, and who else holds each of `wanted` (the datasets whose primary
    /// it is). Costs what these hold, not what the cluster holds.
    pub fn holdings_for(
        &self,
        node: &NodeUuid,
        wanted: impl IntoIterator<Item = DatasetId>,
    ) -> Vec<(NodeUuid, Vec<DatasetId>)> {
        let Some(record) = self.nodes.get(node).filter(|r| r.transfer_port.is_some()) else {
            return Vec::new();
        };
        let mut holdings = vec![(*node, record.datasets.iter().map(|d| d.dataset_id).collect())];
        for id in wanted {
            let others = self
                .claimants
                .get(&id)
                .into_iter()
                .flatten()
                .filter(|holder| *holder != node && self.takes_pushes(holder));
            holdings.extend(others.map(|holder| (*holder, vec![id])));
        }
        holdings
    }

    /// Whether `node` is live and takes pushes (its volumes are on a disk of its own).
    pub fn takes_pushes(&self, node: &NodeUuid) -> bool {
        self.nodes.get(node).is_some_and(|record| record.transfer_port.is_some())
    }

    /// Where every live node but `node` that takes pushes takes them: `host:port`.
    pub fn peers(&self, node: &NodeUuid) -> BTreeMap<NodeUuid, String> {
        self.nodes
            .iter()
            .filter(|(uuid, _)| *uuid != node)
            .filter_map(|(uuid, record)| {
                Some((*uuid, host_address(&record.host, record.transfer_port?)))
            })
            .collect()
    }

    /// `/v1/state/transfers`: every live node's transfers, by dataset, then node.
    pub fn transfers(&self) -> Vec<DatasetTransfer> {
        let mut transfers: Vec<DatasetTransfer> = self
            .nodes
            .iter()
            .flat_map(|(uuid, record)| {
                record.transfers.iter().map(|t| DatasetTransfer {
                    dataset_id: t.dataset_id,
                    from: *uuid,
                    to: t.to,
                    phase: t.phase,
                    sent: t.sent,
                    estimate: t.estimate,
                    problem: t.problem.clone(),
                })
            })
            .collect();
        transfers.sort_by_key(|t| (t.dataset_id, t.from));
        transfers
    }

    /// `/v1/state/nodes`.
    pub fn nodes(&self) -> Vec<Node> {
        self.nodes
            .iter()
            .map(|(uuid, record)| Node { uuid: *uuid, host: record.host.clone() })
            .collect()
    }

    /// `/v1/state/nodes/by_era/<era>`. The mapping outlives the node's liveness, as in Flocker:
    /// a client asking "who am I" after boot must get an answer even if the agent is slow.
    pub fn node_by_era(&self, era: &Era) -> Option<NodeUuid> {
        self.eras.get(era).copied()
    }

    /// Every live node's problems, by dataset, then node. (Two nodes list one dataset only
    /// while it moves: the one it left reports again within a pass.)
    pub fn problems(&self) -> Vec<DatasetProblem> {
        let mut problems: Vec<DatasetProblem> = self
            .nodes
            .iter()
            .flat_map(|(uuid, record)| {
                record.problems.iter().map(|(dataset_id, problem)| DatasetProblem {
                    dataset_id: *dataset_id,
                    node_uuid: *uuid,
                    problem: problem.clone(),
                })
            })
            .collect();
        problems.sort_by_key(|p| (p.dataset_id, p.node_uuid));
        problems
    }

    /// What `/v1/state/datasets` lists of one dataset, found through the index; `primary`:
    /// its configured primary.
    pub fn dataset_state(&self, id: &DatasetId, primary: NodeUuid) -> Option<DatasetState> {
        let claims: Vec<Claim<'_>> = (self.claimants.get(id).into_iter().flatten())
            .filter_map(|node| {
                let record = self.nodes.get(node)?;
                let found = record.datasets.binary_search_by_key(id, |d| d.dataset_id).ok()?;
                let dataset = &record.datasets[found];
                Some(Claim { node: *node, reported: record.reported, dataset })
            })
            .collect();
        let holder = self.holders.get(id).copied();
        listed(&claims, primary, holder, self.nodes.contains_key(&primary))
    }

    /// `/v1/state/datasets`, each dataset once (see the module's rules): the mounted ones,
    /// then those mounted nowhere, each in dataset order. `primary_of` gives a dataset's
    /// configured primary. (Flocker could list one dataset twice while it moved.)
    pub fn dataset_states(
        &self,
        primary_of: impl Fn(&DatasetId) -> Option<NodeUuid>,
    ) -> Vec<DatasetState> {
        let mut claims: BTreeMap<DatasetId, Vec<Claim<'_>>> = BTreeMap::new();
        for (node, record) in &self.nodes {
            for dataset in &record.datasets {
                let claim = Claim { node: *node, reported: record.reported, dataset };
                claims.entry(dataset.dataset_id).or_default().push(claim);
            }
        }
        let (mut mounted, mut unmounted) = (Vec::new(), Vec::new());
        for (id, claims) in &claims {
            let Some(primary) = primary_of(id) else { continue };
            let holder = self.holders.get(id).copied();
            match listed(claims, primary, holder, self.nodes.contains_key(&primary)) {
                Some(state) if state.path.is_some() => mounted.push(state),
                Some(state) => unmounted.push(state),
                None => {}
            }
        }
        mounted.extend(unmounted);
        mounted
    }
}

/// Takes `node` off the claimants of `datasets`, which it no longer reports.
fn unclaim(
    claimants: &mut HashMap<DatasetId, BTreeSet<NodeUuid>>,
    node: NodeUuid,
    datasets: &[ReportedDataset],
) {
    for dataset in datasets {
        if let Some(nodes) = claimants.get_mut(&dataset.dataset_id) {
            nodes.remove(&node);
            if nodes.is_empty() {
                claimants.remove(&dataset.dataset_id);
            }
        }
    }
}

/// The ids a report lists, as a set.
fn ids_of(datasets: &[ReportedDataset]) -> BTreeSet<DatasetId> {
    datasets.iter().map(|d| d.dataset_id).collect()
}

/// One node's report of a dataset.
#[derive(Debug, Clone, Copy)]
struct Claim<'a> {
    node: NodeUuid,
    /// When the node reported, in report order.
    reported: u64,
    dataset: &'a ReportedDataset,
}

/// What `/v1/state/datasets` shows of one dataset, from every node's claim. Pure.
fn listed(
    claims: &[Claim<'_>],
    primary: NodeUuid,
    holder: Option<NodeUuid>,
    primary_reports: bool,
) -> Option<DatasetState> {
    let mounted_on =
        |node: NodeUuid| claims.iter().find(|c| c.node == node && c.dataset.path.is_some());
    if let Some(claim) = mounted_on(primary).or_else(|| holder.and_then(mounted_on)) {
        return Some(DatasetState {
            dataset_id: claim.dataset.dataset_id,
            primary: Some(claim.node),
            path: claim.dataset.path.clone(),
            maximum_size: claim.dataset.maximum_size,
        });
    }
    let unmounted = claims.iter().filter(|c| c.dataset.path.is_none());
    let seen = if primary_reports {
        unmounted.filter(|c| c.node == primary).max_by_key(|c| c.reported)
    } else {
        unmounted.max_by_key(|c| c.reported)
    }?;
    Some(DatasetState {
        dataset_id: seen.dataset.dataset_id,
        primary: None,
        path: None,
        maximum_size: seen.dataset.maximum_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPIRY: Duration = Duration::from_secs(120);

    fn mounted(id: DatasetId) -> ReportedDataset {
        ReportedDataset {
            dataset_id: id,
            path: Some(format!("/flocker/{id}")),
            maximum_size: Some(1 << 30),
        }
    }

    fn unmounted(id: DatasetId) -> ReportedDataset {
        ReportedDataset { dataset_id: id, path: None, maximum_size: Some(1 << 30) }
    }

    fn none() -> BTreeMap<DatasetId, String> {
        BTreeMap::new()
    }

    fn said(datasets: Vec<ReportedDataset>, problems: BTreeMap<DatasetId, String>) -> Report {
        Report { datasets, problems, transfers: Vec::new() }
    }

    /// The configuration's primaries: every dataset of `datasets` on `node`.
    fn on(node: NodeUuid, datasets: &[DatasetId]) -> Primaries {
        datasets.iter().map(|id| (*id, node)).collect()
    }

    #[test]
    fn a_node_appears_on_hello_and_leaves_after_going_quiet() {
        let start = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, era) = (NodeUuid::random(), Era::random());
        cluster.hello(node, era, "192.0.2.1".into(), None, start);
        assert_eq!(cluster.nodes(), [Node { uuid: node, host: "192.0.2.1".into() }]);
        assert!(cluster.sweep(start + Duration::from_secs(119)).is_empty());
        assert!(!cluster.sweep(start + Duration::from_secs(120)).is_empty());
        assert!(cluster.nodes().is_empty());
        assert_eq!(cluster.node_by_era(&era), Some(node), "the era still answers");
        assert_eq!(cluster.touch(&node, start), Err(ApiError::UnknownNode));
    }

    #[test]
    fn a_new_era_forgets_what_the_node_reported_before_and_refuses_old_reports() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, before, after) = (NodeUuid::random(), Era::random(), Era::random());
        let id = DatasetId::random();
        let primaries = on(node, &[id]);
        cluster.hello(node, before, "h".into(), None, now);
        cluster.report(&node, before, said(vec![mounted(id)], none()), &primaries, now).unwrap();
        cluster.hello(node, after, "h".into(), None, now);
        assert!(cluster.dataset_states(|id| primaries.get(id).copied()).is_empty());
        assert_eq!(cluster.node_by_era(&before), None);
        assert_eq!(cluster.node_by_era(&after), Some(node));
        let late = cluster.report(&node, before, said(vec![mounted(id)], none()), &primaries, now);
        assert_eq!(late, Err(ApiError::UnknownNode));
    }

    /// A cluster of `n` nodes that have said hello, and their eras.
    fn nodes(n: usize, now: Instant) -> (ClusterState, Vec<(NodeUuid, Era)>) {
        let mut cluster = ClusterState::new(EXPIRY);
        let nodes: Vec<(NodeUuid, Era)> =
            (0..n).map(|_| (NodeUuid::random(), Era::random())).collect();
        for (node, era) in &nodes {
            cluster.hello(*node, *era, "h".into(), Some(4525), now);
        }
        (cluster, nodes)
    }

    #[test]
    fn a_dataset_mounted_somewhere_is_not_also_listed_as_unmounted() {
        let now = Instant::now();
        let (mut cluster, nodes) = nodes(2, now);
        let ((a, era_a), (b, era_b)) = (nodes[0], nodes[1]);
        let (moving, idle) = (DatasetId::random(), DatasetId::random());
        let mut primaries = on(a, &[moving, idle]);
        cluster
            .report(
                &a,
                era_a,
                said(vec![mounted(moving), unmounted(idle)], none()),
                &primaries,
                now,
            )
            .unwrap();
        // The move to B: A still has it mounted, B sees it on the shared storage.
        primaries.insert(moving, b);
        cluster
            .report(
                &b,
                era_b,
                said(vec![unmounted(moving), unmounted(idle)], none()),
                &primaries,
                now,
            )
            .unwrap();
        let states = cluster.dataset_states(|id| primaries.get(id).copied());
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].primary, Some(a), "still where it is mounted while it moves");
        assert_eq!(states[0].path, Some(format!("/flocker/{moving}")));
        assert_eq!((states[1].dataset_id, states[1].primary, &states[1].path), (idle, None, &None));
    }

    #[test]
    fn an_unmounted_dataset_is_as_its_primary_last_saw_it() {
        // B detached the volume (A saw it, unattached, on the shared storage), then destroyed
        // it: A has no reason to look again, and its report must not keep it listed.
        let now = Instant::now();
        let (mut cluster, nodes) = nodes(2, now);
        let ((a, era_a), (b, era_b)) = (nodes[0], nodes[1]);
        let gone = DatasetId::random();
        let primaries = on(b, &[gone]);
        let primary_of = |id: &DatasetId| primaries.get(id).copied();
        cluster.report(&b, era_b, said(vec![unmounted(gone)], none()), &primaries, now).unwrap();
        cluster.report(&a, era_a, said(vec![unmounted(gone)], none()), &primaries, now).unwrap();
        assert_eq!(cluster.dataset_states(primary_of).len(), 1);
        let generation = cluster.generation;
        cluster.report(&b, era_b, said(vec![], none()), &primaries, now).unwrap();
        assert!(cluster.dataset_states(primary_of).is_empty());
        assert!(cluster.generation > generation, "cached answers must be dropped");
    }

    #[test]
    fn one_nodes_report_never_erases_what_anothers_said() {
        let now = Instant::now();
        let (mut cluster, nodes) = nodes(3, now);
        let ((a, era_a), (b, era_b), (rogue, era_r)) = (nodes[0], nodes[1], nodes[2]);
        let (on_a, on_b) = (DatasetId::random(), DatasetId::random());
        let mut primaries = on(a, &[on_a]);
        primaries.insert(on_b, b);
        let primary_of = |id: &DatasetId| primaries.get(id).copied();
        cluster.report(&a, era_a, said(vec![unmounted(on_a)], none()), &primaries, now).unwrap();
        cluster.report(&b, era_b, said(vec![unmounted(on_b)], none()), &primaries, now).unwrap();
        cluster.report(&rogue, era_r, said(vec![], none()), &primaries, now).unwrap();
        let listed: Vec<DatasetId> =
            cluster.dataset_states(primary_of).iter().map(|s| s.dataset_id).collect();
        let mut expected = vec![on_a, on_b];
        expected.sort();
        assert_eq!(listed, expected, "the last, empty report erased nothing");
    }

    #[test]
    fn a_node_claiming_anothers_dataset_is_not_listed_and_nothing_is_listed_twice() {
        let now = Instant::now();
        let (mut cluster, nodes) = nodes(2, now);
        let ((a, era_a), (rogue, era_r)) = (nodes[0], nodes[1]);
        let (id, invented) = (DatasetId::random(), DatasetId::random());
        let primaries = on(a, &[id]);
        let primary_of = |id: &DatasetId| primaries.get(id).copied();
        cluster.report(&a, era_a, said(vec![mounted(id)], none()), &primaries, now).unwrap();
        let claim = ReportedDataset { path: Some("/evil".into()), ..mounted(id) };
        cluster
            .report(&rogue, era_r, said(vec![claim, mounted(invented)], none()), &primaries, now)
            .unwrap();
        let states = cluster.dataset_states(primary_of);
        assert_eq!(states.len(), 1, "{states:?}");
        assert_eq!(
            (states[0].primary, states[0].path.clone()),
            (Some(a), Some(format!("/flocker/{id}")))
        );
        assert_eq!(cluster.nodes[&rogue].ignored, [id, invented].into_iter().collect());
        // Even while the primary has it unmounted, the rogue's claim does not count.
        cluster.report(&a, era_a, said(vec![unmounted(id)], none()), &primaries, now).unwrap();
        let states = cluster.dataset_states(primary_of);
        assert_eq!((states.len(), states[0].primary, &states[0].path), (1, None, &None));
    }

    #[test]
    fn an_identical_report_does_not_change_the_generation() {
        let now = Instant::now();
        let (mut cluster, nodes) = nodes(1, now);
        let (node, era) = nodes[0];
        let id = DatasetId::random();
        let primaries = on(node, &[id]);
        cluster.report(&node, era, said(vec![mounted(id)], none()), &primaries, now).unwrap();
        let generation = cluster.generation;
        cluster.report(&node, era, said(vec![mounted(id)], none()), &primaries, now).unwrap();
        assert_eq!(cluster.generation, generation);
    }

    #[test]
    fn problems_are_replaced_by_each_report_and_forgotten_with_the_era_or_the_node() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (a, b, era) = (NodeUuid::random(), NodeUuid::random(), Era::random());
        let (first, second) = (DatasetId::random(), DatasetId::random());
        cluster.hello(a, era, "a".into(), None, now);
        cluster.hello(b, Era::random(), "b".into(), None, now);
        let problems = BTreeMap::from([(second, "2".to_owned()), (first, "1".to_owned())]);
        cluster.report(&a, era, said(vec![], problems), &Primaries::new(), now).unwrap();
        let listed: Vec<(DatasetId, NodeUuid)> =
            cluster.problems().iter().map(|p| (p.dataset_id, p.node_uuid)).collect();
        let mut expected = vec![(first, a), (second, a)];
        expected.sort();
        assert_eq!(listed, expected, "sorted by dataset");
        cluster
            .report(
                &a,
                era,
                said(vec![], BTreeMap::from([(first, "1".into())])),
                &Primaries::new(),
                now,
            )
            .unwrap();
        assert_eq!(cluster.problems().len(), 1, "the next report replaces them");
        cluster.hello(a, Era::random(), "a".into(), None, now);
        assert!(cluster.problems().is_empty(), "a reboot forgets them");
        let era = cluster.nodes[&a].era;
        cluster
            .report(
                &a,
                era,
                said(vec![], BTreeMap::from([(first, "1".into())])),
                &Primaries::new(),
                now,
            )
            .unwrap();
        cluster.touch(&b, now + EXPIRY).unwrap();
        cluster.sweep(now + EXPIRY);
        assert!(cluster.problems().is_empty(), "a quiet node's problems leave with it");
    }

    fn shared(era: Era, datasets: Vec<ReportedDataset>) -> SharedNode {
        SharedNode {
            era,
            host: "10.0.0.9".into(),
            transfer_port: None,
            datasets,
            problems: BTreeMap::new(),
            transfers: Vec::new(),
        }
    }

    #[test]
    fn a_mirrored_node_lives_while_it_is_shared_and_leaves_when_it_is_not() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, era, id) = (NodeUuid::random(), Era::random(), DatasetId::random());
        cluster.mirror(node, shared(era, vec![mounted(id)]), &on(node, &[id]), now);
        assert_eq!(cluster.node_by_era(&era), Some(node));
        assert_eq!(cluster.dataset_states(|_| Some(node))[0].path, Some(format!("/flocker/{id}")));
        assert!(cluster.shared(&node).is_none(), "another service's, not ours to share");
        assert!(cluster.sweep(now + EXPIRY * 3).is_empty(), "alive while shared");
        assert!(cluster.forget_mirrored(&node));
        assert!(cluster.nodes().is_empty());
    }

    #[test]
    fn a_node_that_calls_here_is_ours_again_and_a_local_one_is_never_forgotten_as_mirrored() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, era) = (NodeUuid::random(), Era::random());
        cluster.mirror(node, shared(era, vec![]), &Primaries::new(), now);
        cluster.check_era(&node, era).unwrap();
        assert!(cluster.touch(&node, now).unwrap(), "the agent came here: it reports here now");
        assert!(cluster.shared(&node).is_some());
        assert!(!cluster.forget_mirrored(&node), "a node reporting here stays");
        assert!(!cluster.touch(&node, now).unwrap());
        assert_eq!(cluster.sweep(now + EXPIRY), vec![node], "ours expires as any node does");
    }

    #[test]
    fn a_mirrored_report_is_held_to_this_services_configuration() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, other, era) = (NodeUuid::random(), NodeUuid::random(), Era::random());
        let (its, not_its) = (DatasetId::random(), DatasetId::random());
        let mut record = shared(era, vec![mounted(its), mounted(not_its)]);
        record.problems = BTreeMap::from([(not_its, "not its to report".to_owned())]);
        let primaries = Primaries::from([(its, node), (not_its, other)]);
        cluster.mirror(node, record, &primaries, now);
        let listed: Vec<DatasetId> = cluster
            .dataset_states(|id| primaries.get(id).copied())
            .iter()
            .map(|s| s.dataset_id)
            .collect();
        assert_eq!(listed, vec![its], "another node's dataset is not listed as this one's");
        assert!(cluster.problems().is_empty(), "nor are its problems kept");
    }

    fn transfer(id: DatasetId, to: NodeUuid) -> ReportedTransfer {
        ReportedTransfer {
            dataset_id: id,
            to,
            phase: flocker_api::agent_protocol::TransferPhase::PreCopy,
            sent: 1,
            estimate: None,
            problem: None,
        }
    }

    #[test]
    fn peers_are_the_other_live_nodes_that_take_pushes_and_a_hello_without_a_port_clears_it() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (a, b, c) = (NodeUuid::random(), NodeUuid::random(), NodeUuid::random());
        let era_b = Era::random();
        cluster.hello(a, Era::random(), "192.0.2.1".into(), Some(7000), now);
        cluster.hello(b, era_b, "2001:db8::2".into(), Some(7001), now);
        cluster.hello(c, Era::random(), "192.0.2.3".into(), None, now);
        let expected = BTreeMap::from([(b, "[2001:db8::2]:7001".to_owned())]);
        assert_eq!(cluster.peers(&a), expected, "not itself, nor a node without a port");
        assert_eq!(cluster.peers(&c).len(), 2);
        let views = cluster.views;
        cluster.hello(b, era_b, "2001:db8::2".into(), None, now);
        assert!(cluster.views > views, "the views depend on where nodes take pushes");
        assert!(cluster.peers(&a).is_empty());
        let views = cluster.views;
        cluster.hello(c, Era::random(), "192.0.2.4".into(), None, now);
        cluster.hello(NodeUuid::random(), Era::random(), "192.0.2.5".into(), None, now);
        assert_eq!(cluster.views, views, "nothing any view shows changed");
        cluster.hello(NodeUuid::random(), Era::random(), "192.0.2.6".into(), Some(7002), now);
        assert!(cluster.views > views, "a new node taking pushes is a peer");
    }

    #[test]
    fn a_node_on_shared_storage_holds_nothing_for_pushes_and_wakes_no_view() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, era, id) = (NodeUuid::random(), Era::random(), DatasetId::random());
        cluster.hello(node, era, "h".into(), None, now);
        let views = cluster.views;
        let primaries = on(NodeUuid::random(), &[id]);
        cluster.report(&node, era, said(vec![unmounted(id)], none()), &primaries, now).unwrap();
        assert_eq!(cluster.views, views);
        assert_eq!(cluster.holdings().count(), 0);
        assert!(!cluster.takes_pushes(&node));
        cluster.sweep(now + EXPIRY);
        assert_eq!(cluster.views, views, "a node on shared storage leaving changes no view");
    }

    #[test]
    fn the_views_change_with_what_nodes_hold_and_which_nodes_live_not_with_mounts() {
        let now = Instant::now();
        let (mut cluster, nodes) = nodes(2, now);
        let ((a, era_a), (b, _)) = (nodes[0], nodes[1]);
        let id = DatasetId::random();
        let primaries = on(b, &[id]);
        let views = cluster.views;
        cluster.report(&a, era_a, said(vec![unmounted(id)], none()), &primaries, now).unwrap();
        assert!(cluster.views > views, "a node holds a dataset it did not");
        let views = cluster.views;
        cluster.report(&a, era_a, said(vec![mounted(id)], none()), &primaries, now).unwrap();
        assert_eq!(cluster.views, views, "mounting it changes no view");
        let holdings: Vec<(NodeUuid, Vec<DatasetId>)> =
            cluster.holdings().map(|(node, ids)| (node, ids.collect())).collect();
        assert!(holdings.contains(&(a, vec![id])) && holdings.contains(&(b, vec![])));
        cluster.touch(&b, now + EXPIRY).unwrap();
        cluster.sweep(now + EXPIRY);
        assert!(cluster.views > views, "a node that leaves holds nothing any more");
        assert_eq!(cluster.holdings().count(), 1);
    }

    #[test]
    fn transfers_are_kept_for_known_datasets_one_each_until_the_next_report_or_era() {
        let now = Instant::now();
        let (mut cluster, nodes) = nodes(2, now);
        let ((a, era_a), (b, _)) = (nodes[0], nodes[1]);
        let (first, second, stranger) =
            (DatasetId::random(), DatasetId::random(), DatasetId::random());
        let primaries = on(b, &[first, second]);
        let mut duplicate = transfer(first, b);
        duplicate.sent = 2;
        let report = Report {
            datasets: vec![unmounted(first), unmounted(second)],
            problems: none(),
            transfers: vec![
                transfer(second, b),
                transfer(stranger, b),
                transfer(first, b),
                duplicate,
            ],
        };
        cluster.report(&a, era_a, report, &primaries, now).unwrap();
        let transfers = cluster.transfers();
        let listed: Vec<(DatasetId, NodeUuid, u64)> =
            transfers.iter().map(|t| (t.dataset_id, t.from, t.sent)).collect();
        let mut expected = vec![(first, a, 1), (second, a, 1)];
        expected.sort();
        assert_eq!(listed, expected, "by dataset, the first of each, none of unknown datasets");
        assert_eq!(cluster.shared(&a).unwrap().transfers.len(), 2, "shared with other services");
        cluster.report(&a, era_a, said(vec![unmounted(first)], none()), &primaries, now).unwrap();
        assert!(cluster.transfers().is_empty(), "a report without them ends them");
        let report = Report { transfers: vec![transfer(first, b)], ..Report::default() };
        cluster.report(&a, era_a, report, &primaries, now).unwrap();
        cluster.hello(a, Era::random(), "h".into(), None, now);
        assert!(cluster.transfers().is_empty(), "a reboot forgets them");
    }

    #[test]
    fn a_mirrored_node_brings_its_port_and_transfers() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, to, era, id) =
            (NodeUuid::random(), NodeUuid::random(), Era::random(), DatasetId::random());
        let mut record = shared(era, vec![unmounted(id)]);
        record.transfer_port = Some(7000);
        record.transfers = vec![transfer(id, to), transfer(DatasetId::random(), to)];
        cluster.mirror(node, record, &on(to, &[id]), now);
        assert_eq!(cluster.peers(&to), BTreeMap::from([(node, "10.0.0.9:7000".to_owned())]));
        let transfers = cluster.transfers();
        assert_eq!(transfers.len(), 1, "held to this service's configuration: {transfers:?}");
        assert_eq!((transfers[0].from, transfers[0].to), (node, to));
    }

    /// What the index finds of one dataset or one node is what reading every report finds,
    /// after any mix of hellos, new eras, reports, a node forgotten and nodes going quiet.
    #[test]
    fn the_lookups_through_the_index_agree_with_reading_every_report() {
        let start = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let nodes: Vec<NodeUuid> = (0..5).map(|_| NodeUuid::random()).collect();
        let ids: Vec<DatasetId> = (0..12).map(|_| DatasetId::random()).collect();
        let primaries: Primaries =
            ids.iter().enumerate().map(|(i, id)| (*id, nodes[i % nodes.len()])).collect();
        let mut state: u64 = 3;
        let mut next = |below: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % below as u64) as usize
        };
        let mut eras: BTreeMap<NodeUuid, Era> = BTreeMap::new();
        let (mut found_states, mut found_held) = (0, 0);
        for step in 0..600 {
            let now = start + Duration::from_secs(step);
            let node = nodes[next(nodes.len())];
            match next(8) {
                0 => {
                    let era = match eras.get(&node) {
                        Some(era) if next(3) > 0 => *era,
                        _ => Era::random(),
                    };
                    eras.insert(node, era);
                    let port = (next(2) == 0).then_some(4525);
                    cluster.hello(node, era, "h".into(), port, now);
                }
                1 => {
                    cluster.forget_mirrored(&node);
                }
                2 => {
                    cluster.sweep(now + Duration::from_secs(next(200) as u64));
                }
                _ => {
                    let Some(era) = eras.get(&node).copied() else { continue };
                    let mut reported = Vec::new();
                    for _ in 0..next(6) {
                        let id = ids[next(ids.len())];
                        reported.push(if next(2) == 0 { mounted(id) } else { unmounted(id) });
                    }
                    let _ = cluster.report(&node, era, said(reported, none()), &primaries, now);
                }
            }
            let all = cluster.dataset_states(|id| primaries.get(id).copied());
            for id in &ids {
                let listed = all.iter().find(|s| s.dataset_id == *id).cloned();
                found_states += usize::from(listed.is_some());
                assert_eq!(cluster.dataset_state(id, primaries[id]), listed, "step {step}");
            }
            let every: Vec<(NodeUuid, BTreeSet<DatasetId>)> =
                cluster.holdings().map(|(holder, held)| (holder, held.collect())).collect();
            for node in &nodes {
                let wanted: BTreeSet<DatasetId> =
                    ids.iter().filter(|id| primaries[id] == *node).copied().collect();
                // Only a node that takes pushes has any (the service asks for no others').
                let mut expected: BTreeSet<(NodeUuid, DatasetId)> = BTreeSet::new();
                for (holder, held) in every.iter().filter(|_| cluster.takes_pushes(node)) {
                    let relevant = held.iter().filter(|id| holder == node || wanted.contains(id));
                    expected.extend(relevant.map(|id| (*holder, *id)));
                }
                let found: BTreeSet<(NodeUuid, DatasetId)> = cluster
                    .holdings_for(node, wanted.iter().copied())
                    .into_iter()
                    .flat_map(|(holder, held)| held.into_iter().map(move |id| (holder, id)))
                    .collect();
                found_held += found.len();
                assert_eq!(found, expected, "step {step}, node {node}");
            }
        }
        assert!(found_states > 100 && found_held > 100, "{found_states}, {found_held}: too few");
    }
}
