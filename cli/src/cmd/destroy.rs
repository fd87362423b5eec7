//! `flockerctl destroy`: deletes a dataset, and waits until its volume is gone.

use std::time::Instant;

use anyhow::bail;
use clap::Args;
use flocker_cli::ops::progress::Goal;
use flocker_cli::ops::view::{node_label, short};

use super::connection::ConnectionArgs;
use super::lookup;
use super::wait::{self, WaitArgs};

#[derive(Args)]
pub struct DestroyArgs {
    /// The dataset: a prefix of its id, or its name
    #[arg(short, long)]
    dataset: String,
    #[command(flatten)]
    wait: WaitArgs,
}

pub fn run(connection: &ConnectionArgs, args: DestroyArgs) -> anyhow::Result<()> {
    let connection = connection.connect()?;
    let nodes = lookup::nodes(&connection)?;
    let dataset = lookup::dataset(&connection, &args.dataset)?;
    let id = dataset.dataset_id;
    let leases = connection.call(|c| c.list_leases())?;
    if let Some(lease) = leases.iter().find(|l| l.dataset_id == id) {
        // Deleting it would leave a volume that vanishes the moment the task lets go of it.
        bail!(
            "dataset {id} is in use on node {holder} (leased); stop the task using it, \
             or if that node is gone, run `flockerctl leases release {short_id}` first",
            holder = node_label(&lease.node_uuid, &nodes),
            short_id = short(&id.to_string(), false),
        );
    }
    let started = Instant::now();
    connection.call(|c| c.delete_dataset(&id, None))?;
    println!("deleted dataset {id} (on node {})", node_label(&dataset.primary, &nodes));
    if args.wait.no_wait {
        println!(
            "not waiting: its volume is destroyed by node {}'s agent",
            node_label(&dataset.primary, &nodes)
        );
        return Ok(());
    }
    wait::until(&connection, &id, Goal::Gone, &nodes, args.wait)?;
    println!("its volume is gone after {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
