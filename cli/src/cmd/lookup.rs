//! Finding what an operator named: a dataset or a node, by id prefix or by name.

use flocker_api::{Dataset, Node};
use flocker_cli::ops::prefix::{self, Candidate, Kind};

use super::connection::Connection;

/// The live (not deleted) dataset `prefix` means: an id prefix, or its `name` metadata.
pub fn dataset(connection: &Connection, prefix: &str) -> anyhow::Result<Dataset> {
    let (datasets, _) = connection.call(|c| c.list_datasets())?;
    let candidates: Vec<Candidate<Dataset>> = datasets
        .into_iter()
        .filter(|d| !d.deleted)
        .map(|d| Candidate {
            id: d.dataset_id.to_string(),
            name: d.metadata.get("name").cloned(),
            value: d,
        })
        .collect();
    Ok(prefix::resolve(Kind::Dataset, prefix, &candidates)?)
}

/// The nodes whose agents report to the control service.
pub fn nodes(connection: &Connection) -> anyhow::Result<Vec<Node>> {
    let mut nodes = connection.call(|c| c.list_nodes())?;
    nodes.sort_by(|a, b| (&a.host, a.uuid).cmp(&(&b.host, b.uuid)));
    Ok(nodes)
}

/// The node `prefix` means among `nodes`: a UUID prefix, or its address.
pub fn node(nodes: &[Node], prefix: &str) -> anyhow::Result<Node> {
    let candidates: Vec<Candidate<Node>> = nodes
        .iter()
        .map(|n| Candidate { id: n.uuid.to_string(), name: Some(n.host.clone()), value: n.clone() })
        .collect();
    Ok(prefix::resolve(Kind::Node, prefix, &candidates)?)
}

/// Prints `value` as pretty JSON on stdout, for `--json`.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
