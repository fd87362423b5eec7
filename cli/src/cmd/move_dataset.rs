//! `flockerctl move`: a dataset to another node, waited for until it is mounted there.

use std::time::Instant;

use anyhow::bail;
use clap::Args;
use flocker_cli::ops::view::{node_label, short};

use super::connection::{Connection, ConnectionArgs};
use super::lookup;
use super::wait::{self, WaitArgs};

#[derive(Args)]
pub struct MoveArgs {
    /// The dataset: a prefix of its id, or its name
    #[arg(short, long)]
    dataset: String,
    /// The node to move it to: a prefix of its UUID, or its address
    #[arg(short = 't', long)]
    destination: String,
    #[command(flatten)]
    wait: WaitArgs,
}

pub fn run(connection: &ConnectionArgs, args: MoveArgs) -> anyhow::Result<()> {
    let connection = connection.connect()?;
    let nodes = lookup::nodes(&connection)?;
    let dataset = lookup::dataset(&connection, &args.dataset)?;
    let destination = lookup::node(&nodes, &args.destination)?;
    let (id, to) = (dataset.dataset_id, node_label(&destination.uuid, &nodes));
    refuse_if_leased_elsewhere(&connection, &dataset, &destination.uuid, &nodes)?;
    let started = Instant::now();
    if dataset.primary == destination.uuid {
        println!("dataset {id} is on node {to} already");
    } else {
        connection.call(|c| c.move_dataset(&id, &destination.uuid, None))?;
        println!(
            "moving dataset {id} from node {} to node {to}",
            node_label(&dataset.primary, &nodes)
        );
    }
    wait::until_mounted(&connection, &id, &destination.uuid, &nodes, args.wait, started)
}

/// A lease held by another node pins the dataset there (a task uses it): the agents would never
/// move it, and the wait would only time out.
fn refuse_if_leased_elsewhere(
    connection: &Connection,
    dataset: &flocker_api::Dataset,
    destination: &flocker_api::NodeUuid,
    nodes: &[flocker_api::Node],
) -> anyhow::Result<()> {
    let leases = connection.call(|c| c.list_leases())?;
    match leases.iter().find(|l| l.dataset_id == dataset.dataset_id) {
        Some(lease) if &lease.node_uuid != destination => bail!(
            "dataset {id} is in use on node {holder}: its lease keeps it there; stop the task using it, \
             or if that node is gone, run `flockerctl leases release {short_id}` first",
            id = dataset.dataset_id,
            holder = node_label(&lease.node_uuid, nodes),
            short_id = short(&dataset.dataset_id.to_string(), false),
        ),
        _ => Ok(()),
    }
}
