//! The cluster's actual state, as the agents report it: which nodes are alive, their eras, and
//! what each has. Kept in memory only and rebuilt from reports after a restart, as Flocker did.
//! Pure: the time is an argument, so liveness rules are unit tests.
//!
//! Each node's problems (why its agent leaves some of its datasets as they are) are kept the
//! same way: replaced by each report, forgotten with the node's era or when it goes quiet.
//!
//! Datasets that no node mounts live on storage the nodes share (as in Flocker, whose
//! "non-manifest datasets" worked the same way), so the newest report says what is there: an
//! older report from a node that has not needed to look again since must not keep a destroyed
//! volume listed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::ReportedDataset;
use flocker_api::{DatasetId, DatasetProblem, DatasetState, Era, Node, NodeUuid};

use crate::error::ApiError;

struct NodeRecord {
    era: Era,
    host: String,
    last_seen: Instant,
    datasets: Vec<ReportedDataset>,
    /// Problems of the node's own datasets, one each, as its last report said.
    problems: BTreeMap<DatasetId, String>,
}

pub struct ClusterState {
    nodes: BTreeMap<NodeUuid, NodeRecord>,
    /// The datasets the newest report saw but did not mount, with their sizes.
    unmounted: BTreeMap<DatasetId, Option<u64>>,
    eras: HashMap<Era, NodeUuid>,
    /// A node that makes no call for this long is dropped.
    expiry: Duration,
    /// Counts changes to what `/v1/state/*` shows, so answers can be cached.
    pub generation: u64,
}

impl ClusterState {
    pub fn new(expiry: Duration) -> Self {
        Self {
            nodes: BTreeMap::new(),
            unmounted: BTreeMap::new(),
            eras: HashMap::new(),
            expiry,
            generation: 0,
        }
    }

    /// An agent's hello. A new era (a reboot) drops what the node reported before.
    pub fn hello(&mut self, node: NodeUuid, era: Era, host: String, now: Instant) {
        let record = self.nodes.entry(node).or_insert_with(|| NodeRecord {
            era,
            host: host.clone(),
            last_seen: now,
            datasets: Vec::new(),
            problems: BTreeMap::new(),
        });
        if record.era != era {
            self.eras.remove(&record.era);
            record.era = era;
            record.datasets.clear();
            record.problems.clear();
        }
        record.host = host;
        record.last_seen = now;
        self.eras.insert(era, node);
        self.generation += 1;
    }

    /// Notes that a node is alive; an unknown node must say hello first.
    pub fn touch(&mut self, node: &NodeUuid, now: Instant) -> Result<(), ApiError> {
        let record = self.nodes.get_mut(node).ok_or(ApiError::UnknownNode)?;
        record.last_seen = now;
        Ok(())
    }

    /// Refuses a node that has not said hello in `era` (it must say hello again).
    pub fn check_era(&self, node: &NodeUuid, era: Era) -> Result<(), ApiError> {
        match self.nodes.get(node) {
            Some(record) if record.era == era => Ok(()),
            _ => Err(ApiError::UnknownNode),
        }
    }

    /// Replaces what a node reported: its datasets and its problems (already checked to be
    /// about its own datasets). A report from another era is refused: the agent must say hello
    /// again, so stale reports from before a reboot never count.
    pub fn report(
        &mut self,
        node: &NodeUuid,
        era: Era,
        datasets: Vec<ReportedDataset>,
        problems: BTreeMap<DatasetId, String>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let record =
            self.nodes.get_mut(node).filter(|r| r.era == era).ok_or(ApiError::UnknownNode)?;
        record.last_seen = now;
        record.problems = problems;
        let unmounted: BTreeMap<DatasetId, Option<u64>> = datasets
            .iter()
            .filter(|d| d.path.is_none())
            .map(|d| (d.dataset_id, d.maximum_size))
            .collect();
        if record.datasets != datasets {
            record.datasets = datasets;
            self.generation += 1;
        }
        if self.unmounted != unmounted {
            self.unmounted = unmounted;
            self.generation += 1;
        }
        Ok(())
    }

    /// Drops nodes that have been quiet too long; true if any went.
    pub fn sweep(&mut self, now: Instant) -> bool {
        let expiry = self.expiry;
        let before = self.nodes.len();
        self.nodes.retain(|uuid, record| {
            let alive = now.saturating_duration_since(record.last_seen) < expiry;
            if !alive {
                log::info!("node {uuid} ({}) stopped reporting; dropping its state", record.host);
            }
            alive
        });
        let changed = self.nodes.len() != before;
        if changed {
            self.generation += 1;
        }
        changed
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

    /// `/v1/state/datasets`: every mounted dataset with its node and path, then every dataset
    /// the newest report saw but no node mounts, once each. (Flocker could list one dataset twice while it
    /// moved; clients filter anyway, and this never does.)
    pub fn dataset_states(&self) -> Vec<DatasetState> {
        let mut states = Vec::new();
        let mut mounted = BTreeSet::new();
        for (uuid, record) in &self.nodes {
            for dataset in record.datasets.iter().filter(|d| d.path.is_some()) {
                mounted.insert(dataset.dataset_id);
                states.push(DatasetState {
                    dataset_id: dataset.dataset_id,
                    primary: Some(*uuid),
                    path: dataset.path.clone(),
                    maximum_size: dataset.maximum_size,
                });
            }
        }
        let unmounted = self.unmounted.iter().filter(|(id, _)| !mounted.contains(*id));
        states.extend(unmounted.map(|(dataset_id, maximum_size)| DatasetState {
            dataset_id: *dataset_id,
            primary: None,
            path: None,
            maximum_size: *maximum_size,
        }));
        states
    }
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

    #[test]
    fn a_node_appears_on_hello_and_leaves_after_going_quiet() {
        let start = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, era) = (NodeUuid::random(), Era::random());
        cluster.hello(node, era, "192.0.2.1".into(), start);
        assert_eq!(cluster.nodes(), [Node { uuid: node, host: "192.0.2.1".into() }]);
        assert!(!cluster.sweep(start + Duration::from_secs(119)));
        assert!(cluster.sweep(start + Duration::from_secs(120)));
        assert!(cluster.nodes().is_empty());
        assert_eq!(cluster.node_by_era(&era), Some(node), "the era still answers");
        assert_eq!(cluster.touch(&node, start), Err(ApiError::UnknownNode));
    }

    #[test]
    fn a_new_era_forgets_what_the_node_reported_before_and_refuses_old_reports() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, before, after) = (NodeUuid::random(), Era::random(), Era::random());
        cluster.hello(node, before, "h".into(), now);
        cluster.report(&node, before, vec![mounted(DatasetId::random())], none(), now).unwrap();
        cluster.hello(node, after, "h".into(), now);
        assert!(cluster.dataset_states().is_empty());
        assert_eq!(cluster.node_by_era(&before), None);
        assert_eq!(cluster.node_by_era(&after), Some(node));
        let late = cluster.report(&node, before, vec![mounted(DatasetId::random())], none(), now);
        assert_eq!(late, Err(ApiError::UnknownNode));
    }

    #[test]
    fn a_dataset_mounted_somewhere_is_not_also_listed_as_unmounted() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (a, b) = (NodeUuid::random(), NodeUuid::random());
        let (moving, idle) = (DatasetId::random(), DatasetId::random());
        for node in [a, b] {
            cluster.hello(node, Era::random(), "h".into(), now);
        }
        let era_of = |c: &ClusterState, n: &NodeUuid| c.nodes[n].era;
        cluster
            .report(&a, era_of(&cluster, &a), vec![mounted(moving), unmounted(idle)], none(), now)
            .unwrap();
        cluster
            .report(&b, era_of(&cluster, &b), vec![unmounted(moving), unmounted(idle)], none(), now)
            .unwrap();
        let states = cluster.dataset_states();
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].primary, Some(a));
        assert_eq!(states[0].path, Some(format!("/flocker/{moving}")));
        assert_eq!((states[1].dataset_id, states[1].primary, &states[1].path), (idle, None, &None));
    }

    #[test]
    fn an_unmounted_dataset_is_as_the_newest_report_saw_it() {
        // B detached the volume (A saw it, unattached, on the shared storage), then destroyed
        // it: A has no reason to look again, and its report must not keep it listed.
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (a, b, gone) = (NodeUuid::random(), NodeUuid::random(), DatasetId::random());
        let (era_a, era_b) = (Era::random(), Era::random());
        cluster.hello(a, era_a, "a".into(), now);
        cluster.hello(b, era_b, "b".into(), now);
        cluster.report(&b, era_b, vec![unmounted(gone)], none(), now).unwrap();
        cluster.report(&a, era_a, vec![unmounted(gone)], none(), now).unwrap();
        assert_eq!(cluster.dataset_states().len(), 1);
        let generation = cluster.generation;
        cluster.report(&b, era_b, vec![], none(), now).unwrap();
        assert!(cluster.dataset_states().is_empty());
        assert!(cluster.generation > generation, "cached answers must be dropped");
    }

    #[test]
    fn an_identical_report_does_not_change_the_generation() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (node, era) = (NodeUuid::random(), Era::random());
        cluster.hello(node, era, "h".into(), now);
        let report = vec![mounted(DatasetId::random())];
        cluster.report(&node, era, report.clone(), none(), now).unwrap();
        let generation = cluster.generation;
        cluster.report(&node, era, report, none(), now).unwrap();
        assert_eq!(cluster.generation, generation);
    }

    #[test]
    fn problems_are_replaced_by_each_report_and_forgotten_with_the_era_or_the_node() {
        let now = Instant::now();
        let mut cluster = ClusterState::new(EXPIRY);
        let (a, b, era) = (NodeUuid::random(), NodeUuid::random(), Era::random());
        let (first, second) = (DatasetId::random(), DatasetId::random());
        cluster.hello(a, era, "a".into(), now);
        cluster.hello(b, Era::random(), "b".into(), now);
        let problems = BTreeMap::from([(second, "2".to_owned()), (first, "1".to_owned())]);
        cluster.report(&a, era, vec![], problems, now).unwrap();
        let listed: Vec<(DatasetId, NodeUuid)> =
            cluster.problems().iter().map(|p| (p.dataset_id, p.node_uuid)).collect();
        let mut expected = vec![(first, a), (second, a)];
        expected.sort();
        assert_eq!(listed, expected, "sorted by dataset");
        cluster.report(&a, era, vec![], BTreeMap::from([(first, "1".into())]), now).unwrap();
        assert_eq!(cluster.problems().len(), 1, "the next report replaces them");
        cluster.hello(a, Era::random(), "a".into(), now);
        assert!(cluster.problems().is_empty(), "a reboot forgets them");
        let era = cluster.nodes[&a].era;
        cluster.report(&a, era, vec![], BTreeMap::from([(first, "1".into())]), now).unwrap();
        cluster.touch(&b, now + EXPIRY).unwrap();
        cluster.sweep(now + EXPIRY);
        assert!(cluster.problems().is_empty(), "a quiet node's problems leave with it");
    }
}
