//! A large cluster on one machine, for benchmarks: nodes whose agents say hello and report
//! their datasets mounted over the real agent API (mutual TLS, node certificates), without
//! volumes behind them. The control service cannot tell them from real agents.

use flocker_api::agent_protocol::{HELLO_PATH, STATE_PATH};
use flocker_api::{Client, CreateDataset, DatasetId, Era, NodeUuid};
use serde_json::json;

use crate::{ClusterCertificates, ControlProcess};

/// One phantom node: its UUID, era, and a client with its node certificate.
pub struct Phantom {
    pub node: NodeUuid,
    pub era: Era,
    pub agent: Client,
}

/// `nodes` phantom nodes say hello; `nodes × per_node` datasets named `<prefix>-<i>` (1 GiB)
/// are created on them by 4 clients at once; each phantom reports its datasets mounted.
pub fn phantom_nodes(
    certificates: &ClusterCertificates,
    control: &ControlProcess,
    client: &Client,
    (nodes, per_node): (usize, usize),
    prefix: &str,
) -> Vec<Phantom> {
    let phantoms: Vec<Phantom> = (0..nodes).map(|_| say_hello(certificates, control)).collect();
    let uuids: Vec<NodeUuid> = phantoms.iter().map(|p| p.node).collect();
    let creators: Vec<_> = (0..4)
        .map(|part| {
            let (client, uuids, prefix) = (client.clone(), uuids.clone(), prefix.to_owned());
            std::thread::spawn(move || {
                let mut created = Vec::new();
                for i in (part..nodes * per_node).step_by(4) {
                    let node = uuids[i % nodes];
                    let request = named_dataset(node, &format!("{prefix}-{i}"));
                    let dataset = client.create_dataset(&request, None).expect("create");
                    created.push((node, dataset.dataset_id));
                }
                created
            })
        })
        .collect();
    let created: Vec<(NodeUuid, DatasetId)> =
        creators.into_iter().flat_map(|c| c.join().expect("creator")).collect();
    for phantom in &phantoms {
        let datasets: Vec<_> = (created.iter().filter(|(node, _)| *node == phantom.node))
            .map(|(_, id)| {
                json!({"dataset_id": id, "path": format!("/flocker/{id}"), "maximum_size": 1u64 << 30})
            })
            .collect();
        let report = json!({"era": phantom.era, "datasets": datasets}).to_string();
        let answer =
            phantom.agent.send("PUT", STATE_PATH, &[], Some(report.as_bytes())).expect("report");
        assert_eq!(answer.status, 204);
    }
    phantoms
}

/// A 1 GiB dataset on `primary` named `name`.
pub fn named_dataset(primary: NodeUuid, name: &str) -> CreateDataset {
    CreateDataset {
        primary,
        dataset_id: None,
        maximum_size: Some(1 << 30),
        metadata: [("name".to_owned(), name.to_owned())].into(),
    }
}

fn say_hello(certificates: &ClusterCertificates, control: &ControlProcess) -> Phantom {
    let node = certificates.node();
    let agent = certificates.client_with(control.agent, &node.certificate, &node.key);
    let era = Era::random();
    let hello = json!({"era": era}).to_string();
    let answer = agent.send("POST", HELLO_PATH, &[], Some(hello.as_bytes())).expect("hello");
    assert_eq!(answer.status, 200);
    Phantom { node: node.uuid, era, agent }
}
