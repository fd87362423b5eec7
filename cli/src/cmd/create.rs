//! `flockerctl create`: a new dataset on a node, waited for until it is mounted there.

use std::time::Instant;

use anyhow::bail;
use clap::Args;
use flocker_api::CreateDataset;
use flocker_cli::ops::view::node_label;
use flocker_cli::ops::{metadata, size};

use super::connection::ConnectionArgs;
use super::lookup;
use super::wait::{self, WaitArgs};

#[derive(Args)]
pub struct CreateArgs {
    /// The node to create it on: a prefix of its UUID, or its address
    #[arg(short, long)]
    node: String,
    /// Metadata pairs, separated by commas: name=orders-db,team=shop
    #[arg(short, long, value_name = "KEY=VALUE,...")]
    metadata: Option<String>,
    /// Maximum size in binary units (10G, 512M, 1.5T) [default: the control service's]
    #[arg(short, long)]
    size: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

pub fn run(connection: &ConnectionArgs, args: CreateArgs) -> anyhow::Result<()> {
    let metadata = metadata::parse(args.metadata.as_deref().unwrap_or_default())?;
    let maximum_size = args.size.as_deref().map(size::parse).transpose()?;
    let connection = connection.connect()?;
    let nodes = lookup::nodes(&connection)?;
    let node = lookup::node(&nodes, &args.node)?;
    if let Some(name) = metadata.get("name") {
        // A task finds its volume by name: two live datasets with one name would be a coin toss.
        let (datasets, _) = connection.call(|c| c.list_datasets())?;
        if let Some(existing) =
            datasets.iter().find(|d| !d.deleted && d.metadata.get("name") == Some(name))
        {
            bail!(
                "a dataset called {name} exists already ({}); choose another name",
                existing.dataset_id
            );
        }
    }
    let request = CreateDataset { primary: node.uuid, dataset_id: None, maximum_size, metadata };
    let started = Instant::now();
    let dataset = connection.call(|c| c.create_dataset(&request, None))?;
    let id = dataset.dataset_id;
    println!("created dataset {id} on node {}", node_label(&node.uuid, &nodes));
    wait::until_mounted(&connection, &id, &node.uuid, &nodes, args.wait, started)
}
