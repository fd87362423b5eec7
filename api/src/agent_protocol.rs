//! The agent API (port 4524): how `flocker-dataset-agent` and the control service talk.
//! JSON over HTTPS, the agent presenting its `node-<uuid>` certificate; the node is always the
//! one the certificate names. `control/AGENT_API.md` describes the exchange.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError};
use crate::ids::{DatasetId, Era, NodeUuid};
use crate::types::Dataset;

/// `POST /v1/agent/hello`
pub const HELLO_PATH: &str = "/v1/agent/hello";
/// `GET /v1/agent/configuration?etag=<etag>&wait=<seconds>`
pub const CONFIGURATION_PATH: &str = "/v1/agent/configuration";
/// `PUT /v1/agent/state`
pub const STATE_PATH: &str = "/v1/agent/state";
/// `POST /v1/agent/blockdevice-ownership`
pub const BLOCKDEVICE_OWNERSHIP_PATH: &str = "/v1/agent/blockdevice-ownership";

/// The first call of an agent, and again after a reboot or when told it is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The node's kernel boot id: a new era drops whatever the node reported before.
    pub era: Era,
    /// The agent's backend (`loopback`, `directory`, …), for operators.
    #[serde(default)]
    pub backend: Option<String>,
    /// The agent's version, for operators.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// The port where this node takes the volumes other nodes push to it (btrfs): on the
    /// address its connection comes from. None: it takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_port: Option<u16>,
}

/// The answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The node, as its certificate names it.
    pub node_uuid: NodeUuid,
    /// A node that makes no call for this long leaves `/v1/state/nodes`.
    pub node_expiry_seconds: f64,
    /// The longest a configuration poll waits.
    pub longest_poll_seconds: f64,
}

/// What one node should have: its datasets, the leases it holds, their block devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfiguration {
    /// Changes whenever anything below changes; send it back to wait for the next change.
    pub etag: String,
    /// Every dataset whose primary is this node, tombstones included.
    pub datasets: Vec<Dataset>,
    /// The datasets leased to this node that are not wanted here (moved away or deleted):
    /// never unmount, detach or destroy them here.
    pub leases: Vec<DatasetId>,
    /// The block device recorded for each of those datasets, where one was.
    #[serde(default)]
    pub blockdevice_ids: BTreeMap<DatasetId, String>,
    /// Those of the datasets whose volume some agent has reported: if this node cannot find
    /// one, it must not make a new, empty one in its place.
    #[serde(default)]
    pub had_volume: BTreeSet<DatasetId>,
    /// Datasets this node reported holding on its own disk whose primary is another live, not
    /// deleted: push each to the node named. Absent in answers of older services: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pushes: BTreeMap<DatasetId, NodeUuid>,
    /// Datasets whose primary is this node that other nodes reported holding: they arrive by a
    /// push, and only from those nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arriving: BTreeMap<DatasetId, BTreeSet<NodeUuid>>,
    /// Datasets this node reported holding that are deleted (tombstones whose primary is
    /// another node): nobody wants their volume any more.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub discard: BTreeSet<DatasetId>,
    /// Where every other live node that takes pushes takes them: `host:port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peers: BTreeMap<NodeUuid, String>,
}

/// `PUT /v1/agent/state`: everything the node has, replacing its previous report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReport {
    /// The era the agent said hello with.
    pub era: Era,
    pub datasets: Vec<ReportedDataset>,
    /// Why the agent leaves some of its datasets as they are, as of its last pass. Left out
    /// when there is none, so older services, which do not know the key, read the report as
    /// before; absent in reports of older agents: read it as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ReportedProblem>,
    /// The pushes under way from this node (an extension, left out when there is none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<ReportedTransfer>,
}

/// A push of a dataset's volume from this node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedTransfer {
    pub dataset_id: DatasetId,
    pub to: NodeUuid,
    pub phase: TransferPhase,
    /// Bytes of the current send so far.
    pub sent: u64,
    /// What the current send is expected to carry, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<u64>,
    /// Why the last attempt failed, in words for people (the rules of [`ReportedProblem`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The two phases of a push (Flocker's 2-phase push).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferPhase {
    /// The volume is still in use here; most of its bytes are being copied.
    PreCopy,
    /// The volume is unmounted here; the last difference is being copied and handed off.
    Handoff,
}

impl std::fmt::Display for TransferPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PreCopy => "pre-copy",
            Self::Handoff => "handoff",
        })
    }
}

/// One dataset present on a node (or in its backend): mounted at `path`, or not mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedDataset {
    pub dataset_id: DatasetId,
    /// Where it is mounted on this node, only once it really is a mount point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// The longest problem text a report may carry, in bytes of UTF-8.
pub const MAXIMUM_PROBLEM_BYTES: usize = 1024;

/// Why the agent will not bring one of the datasets configured for its node to where the
/// configuration wants it (it refuses to make, format or mount its volume), in words for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedProblem {
    pub dataset_id: DatasetId,
    /// One line of at most [`MAXIMUM_PROBLEM_BYTES`], without control characters: the service
    /// refuses a report breaking that (see [`ReportedProblem::check`]).
    pub problem: String,
}

impl ReportedProblem {
    /// A problem that keeps the rules whatever `text` holds: control characters become spaces,
    /// and a text too long is cut at a character boundary, ending in `…`.
    pub fn new(dataset_id: DatasetId, text: &str) -> Self {
        let mut problem: String =
            text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if problem.len() > MAXIMUM_PROBLEM_BYTES {
            let ellipsis = '…';
            let mut end = MAXIMUM_PROBLEM_BYTES - ellipsis.len_utf8();
            while !problem.is_char_boundary(end) {
                end -= 1;
            }
            problem.truncate(end);
            problem.push(ellipsis);
        }
        Self { dataset_id, problem }
    }

    /// Why a service must refuse this problem, if it must: a text longer than
    /// [`MAXIMUM_PROBLEM_BYTES`], or holding a control character (a line break, an escape
    /// sequence that would rewrite an operator's terminal).
    pub fn check(&self) -> Result<(), String> {
        let id = self.dataset_id;
        if self.problem.len() > MAXIMUM_PROBLEM_BYTES {
            Err(format!("problem of dataset {id}: longer than {MAXIMUM_PROBLEM_BYTES} bytes"))
        } else if self.problem.chars().any(char::is_control) {
            Err(format!("problem of dataset {id}: holds a control character"))
        } else {
            Ok(())
        }
    }
}

/// `POST /v1/agent/blockdevice-ownership`: the block device an agent made for a dataset,
/// recorded once and for good (409 if another was recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDeviceOwnership {
    pub dataset_id: DatasetId,
    pub blockdevice_id: String,
}

/// The agent API as an agent calls it: a [`Client`] presenting `node.crt` on port 4524.
#[derive(Debug, Clone)]
pub struct AgentClient {
    client: Client,
}

impl AgentClient {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// `host:port` of the control-service instance that answered last.
    pub fn current_address(&self) -> String {
        self.client.current_address()
    }

    /// `POST /v1/agent/hello`.
    pub fn hello(&self, hello: &Hello) -> Result<Welcome, ClientError> {
        self.client.call_json("POST", HELLO_PATH, Some(hello), &[200], None)
    }

    /// `GET /v1/agent/configuration`: at once if `etag` is not current, else when the node's
    /// configuration changes or after `wait`. 409: say hello again.
    pub fn configuration(
        &self,
        etag: Option<&str>,
        wait: Duration,
    ) -> Result<AgentConfiguration, ClientError> {
        let path = match etag {
            Some(etag) => format!("{CONFIGURATION_PATH}?etag={etag}&wait={}", wait.as_secs_f64()),
            None => CONFIGURATION_PATH.to_owned(),
        };
        // The call waits on purpose: give it that long, and the usual time on top.
        let timeout = wait + Duration::from_secs(30);
        self.client.call_json("GET", &path, None::<&()>, &[200], Some(timeout))
    }

    /// `PUT /v1/agent/state`. 409: say hello again.
    pub fn report(&self, report: &StateReport) -> Result<(), ClientError> {
        self.client.send_json("PUT", STATE_PATH, Some(report), &[204], None).map(drop)
    }

    /// `POST /v1/agent/blockdevice-ownership`. 409: another device was recorded.
    pub fn record_blockdevice(&self, record: &BlockDeviceOwnership) -> Result<(), ClientError> {
        self.client
            .call_json::<_, BlockDeviceOwnership>(
                "POST",
                BLOCKDEVICE_OWNERSHIP_PATH,
                Some(record),
                &[200],
                None,
            )
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_made_from_any_text_keeps_the_rules_the_service_checks() {
        let id = DatasetId::random();
        let escape = ReportedProblem::new(id, "line one\nline two \u{1b}[2J\u{9b}");
        assert_eq!(escape.problem, "line one line two  [2J ");
        assert_eq!(escape.check(), Ok(()));
        // Multi-byte characters across the limit are not split.
        let long = ReportedProblem::new(id, &"é".repeat(MAXIMUM_PROBLEM_BYTES));
        assert!(long.problem.len() <= MAXIMUM_PROBLEM_BYTES && long.problem.ends_with('…'));
        assert_eq!(long.check(), Ok(()));
        let fits = "x".repeat(MAXIMUM_PROBLEM_BYTES);
        assert_eq!(ReportedProblem::new(id, &fits).problem, fits, "a text that fits is kept");
    }

    #[test]
    fn the_service_refuses_long_problems_and_control_characters() {
        let id = DatasetId::random();
        let raw = |problem: &str| ReportedProblem { dataset_id: id, problem: problem.to_owned() };
        assert!(raw(&"x".repeat(MAXIMUM_PROBLEM_BYTES + 1)).check().is_err());
        assert!(raw("two\nlines").check().is_err());
        assert!(raw("tab\there").check().is_err());
        assert!(raw("\u{7f}").check().is_err());
        assert_eq!(raw("is root_path shared?").check(), Ok(()));
    }

    #[test]
    fn a_report_without_problems_reads_and_writes_as_before() {
        let era = Era::random();
        let old = serde_json::json!({"era": era, "datasets": []});
        let report: StateReport = serde_json::from_value(old.clone()).unwrap();
        assert!(report.problems.is_empty());
        assert_eq!(serde_json::to_value(&report).unwrap(), old);
    }
}
