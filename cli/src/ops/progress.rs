//! How far a change has come, from what the agents report: the old `flockerctl` said "poll
//! manually to see it show up"; ours waits, and says at each moment where the volume is.

use flocker_api::{DatasetId, DatasetState, NodeUuid};

/// What a command waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// The dataset mounted on this node (after a create or a move).
    MountedOn(NodeUuid),
    /// The dataset's volume destroyed (after a delete).
    Gone,
}

/// Where the dataset is on the way to its goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The goal is reached; the mount path, if there is one.
    Done { path: Option<String> },
    /// No agent reports it yet (being created, or between nodes).
    NotReported,
    /// Reported on another node than the goal's (a move that has not started or finished).
    OnOtherNode(NodeUuid),
    /// On the goal's node but not mounted yet.
    NotMounted,
    /// Still reported, on this node (or none), though it should be gone.
    StillPresent(Option<NodeUuid>),
}

impl Stage {
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done { .. })
    }

    /// Words for a progress line or a timeout: `name` gives a node's name for people.
    pub fn describe(&self, name: impl Fn(&NodeUuid) -> String) -> String {
        match self {
            Self::Done { path: Some(path) } => format!("mounted at {path}"),
            Self::Done { path: None } => "done".to_owned(),
            Self::NotReported => "not reported by any agent yet".to_owned(),
            Self::OnOtherNode(node) => format!("still on node {}", name(node)),
            Self::NotMounted => "attached, not mounted yet".to_owned(),
            Self::StillPresent(Some(node)) => format!("still present on node {}", name(node)),
            Self::StillPresent(None) => "still present, on no node".to_owned(),
        }
    }
}

/// The stage `dataset` is at, toward `goal`, given the agents' reports.
pub fn stage(goal: Goal, dataset: &DatasetId, states: &[DatasetState]) -> Stage {
    let state = states.iter().find(|s| &s.dataset_id == dataset);
    match (goal, state) {
        (Goal::Gone, None) => Stage::Done { path: None },
        (Goal::Gone, Some(state)) => Stage::StillPresent(state.primary),
        (Goal::MountedOn(_), None) => Stage::NotReported,
        (Goal::MountedOn(node), Some(state)) => match (state.primary, &state.path) {
            (Some(primary), Some(path)) if primary == node => {
                Stage::Done { path: Some(path.clone()) }
            }
            (Some(primary), None) if primary == node => Stage::NotMounted,
            (Some(other), _) => Stage::OnOtherNode(other),
            (None, _) => Stage::NotReported,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(primary: Option<NodeUuid>, path: Option<&str>) -> (DatasetId, Vec<DatasetState>) {
        let id = DatasetId::random();
        let state = serde_json::from_value(serde_json::json!({
            "dataset_id": id, "primary": primary, "path": path,
        }))
        .unwrap();
        (id, vec![state])
    }

    #[test]
    fn a_move_is_done_only_when_mounted_on_the_destination() {
        let (a, b) = (NodeUuid::random(), NodeUuid::random());
        let (id, on_a) = state(Some(a), Some("/flocker/x"));
        assert_eq!(stage(Goal::MountedOn(b), &id, &on_a), Stage::OnOtherNode(a));
        let (id, attached_b) = state(Some(b), None);
        assert_eq!(stage(Goal::MountedOn(b), &id, &attached_b), Stage::NotMounted);
        let (id, mounted_b) = state(Some(b), Some("/flocker/x"));
        assert_eq!(
            stage(Goal::MountedOn(b), &id, &mounted_b),
            Stage::Done { path: Some("/flocker/x".into()) }
        );
        assert_eq!(stage(Goal::MountedOn(b), &DatasetId::random(), &mounted_b), Stage::NotReported);
    }

    #[test]
    fn a_delete_is_done_when_no_agent_reports_the_dataset() {
        let a = NodeUuid::random();
        let (id, on_a) = state(Some(a), Some("/flocker/x"));
        assert_eq!(stage(Goal::Gone, &id, &on_a), Stage::StillPresent(Some(a)));
        assert!(stage(Goal::Gone, &id, &[]).is_done());
    }

    #[test]
    fn stages_read_as_sentences() {
        let a = NodeUuid::random();
        let name = |_: &NodeUuid| "A (10.0.0.1)".to_owned();
        assert_eq!(Stage::OnOtherNode(a).describe(name), "still on node A (10.0.0.1)");
        assert_eq!(Stage::NotMounted.describe(name), "attached, not mounted yet");
    }
}
