//! `flockerctl leases`: who holds which dataset. A lease keeps a dataset on its node (a task
//! uses it there); releasing one by hand is how a volume whose node died is freed.

use anyhow::bail;
use clap::{Args, Subcommand};
use flocker_api::{AcquireLease, Dataset, Lease, Node};
use flocker_cli::ops::prefix::{self, Candidate, Kind};
use flocker_cli::ops::table;
use flocker_cli::ops::view::{node_cell, node_label, short};
use serde::Serialize;

use super::connection::{Connection, ConnectionArgs};
use super::lookup::{self, print_json};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LeasesArgs {
    #[command(subcommand)]
    command: Option<LeasesCommand>,
    #[command(flatten)]
    list: ListLeasesArgs,
}

#[derive(Subcommand)]
enum LeasesCommand {
    /// List the leases (the default)
    List(ListLeasesArgs),
    /// Hold a dataset on a node, so that it is neither moved nor destroyed
    Acquire {
        #[command(flatten)]
        dataset: DatasetArg,
        /// The node to hold it on: a prefix of its UUID, or its address [default: its node]
        #[arg(short, long)]
        node: Option<String>,
        /// Let the lease lapse after this many seconds [default: never]
        #[arg(long, value_name = "SECONDS")]
        expires: Option<f64>,
    },
    /// Release a dataset's lease: it may then be moved or destroyed, even if a task still uses it
    Release {
        #[command(flatten)]
        dataset: DatasetArg,
    },
}

/// The dataset, given alone or as `--dataset` like the other commands take it (the isolator's
/// messages suggest `flockerctl leases release --dataset <id>`).
#[derive(Args)]
struct DatasetArg {
    /// The dataset: a prefix of its id, or its name
    #[arg(value_name = "DATASET", required_unless_present = "dataset")]
    positional: Option<String>,
    /// The same, as an option
    #[arg(short, long, value_name = "DATASET", conflicts_with = "positional")]
    dataset: Option<String>,
}

impl DatasetArg {
    fn get(&self) -> &str {
        self.dataset.as_deref().or(self.positional.as_deref()).unwrap_or_default()
    }
}

#[derive(Args)]
struct ListLeasesArgs {
    /// Show whole UUIDs
    #[arg(short, long)]
    long: bool,
    /// Print JSON, for scripts
    #[arg(long)]
    json: bool,
}

pub fn run(connection: &ConnectionArgs, args: LeasesArgs) -> anyhow::Result<()> {
    let connection = connection.connect()?;
    match args.command {
        None => list(&connection, &args.list),
        Some(LeasesCommand::List(list_args)) => list(&connection, &list_args),
        Some(LeasesCommand::Acquire { dataset, node, expires }) => {
            acquire(&connection, dataset.get(), node.as_deref(), expires)
        }
        Some(LeasesCommand::Release { dataset }) => release(&connection, dataset.get()),
    }
}

/// One lease, as listed.
#[derive(Serialize)]
struct LeaseRow<'a> {
    #[serde(flatten)]
    lease: &'a Lease,
    name: Option<&'a str>,
    host: Option<&'a str>,
}

fn list(connection: &Connection, args: &ListLeasesArgs) -> anyhow::Result<()> {
    let leases = connection.call(|c| c.list_leases())?;
    let (datasets, _) = connection.call(|c| c.list_datasets())?;
    let nodes = lookup::nodes(connection)?;
    let rows: Vec<LeaseRow> = leases
        .iter()
        .map(|lease| LeaseRow {
            lease,
            name: name_of(&datasets, lease),
            host: nodes.iter().find(|n| n.uuid == lease.node_uuid).map(|n| n.host.as_str()),
        })
        .collect();
    if args.json {
        return print_json(&rows);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                short(&row.lease.dataset_id.to_string(), args.long),
                row.name.unwrap_or("-").to_owned(),
                node_cell(&row.lease.node_uuid, row.host, args.long),
                expiry(row.lease.expires),
            ]
        })
        .collect();
    print!("{}", table::render(&["DATASET", "NAME", "NODE", "EXPIRES"], &cells));
    Ok(())
}

fn name_of<'a>(datasets: &'a [Dataset], lease: &Lease) -> Option<&'a str> {
    let dataset = datasets.iter().find(|d| d.dataset_id == lease.dataset_id)?;
    dataset.metadata.get("name").map(String::as_str)
}

fn expiry(expires: Option<f64>) -> String {
    expires.map_or("never".to_owned(), |seconds| format!("in {seconds:.0} s"))
}

fn acquire(
    connection: &Connection,
    dataset: &str,
    node: Option<&str>,
    expires: Option<f64>,
) -> anyhow::Result<()> {
    let dataset = lookup::dataset(connection, dataset)?;
    let nodes = lookup::nodes(connection)?;
    let node = match node {
        Some(prefix) => lookup::node(&nodes, prefix)?.uuid,
        None => dataset.primary,
    };
    let request = AcquireLease { dataset_id: dataset.dataset_id, node_uuid: node, expires };
    match connection.client().acquire_lease(&request) {
        Ok((lease, _)) => {
            let lapses =
                lease.expires.map_or("never lapses".to_owned(), |s| format!("lapses in {s:.0} s"));
            println!(
                "node {} holds dataset {}; the lease {lapses}",
                node_label(&node, &nodes),
                lease.dataset_id
            );
            Ok(())
        }
        Err(error) if error.status() == Some(409) => {
            let holder = holder(connection, &dataset, &nodes)?;
            bail!("dataset {} is leased to node {holder} already", dataset.dataset_id)
        }
        Err(error) => bail!(connection.explain(&error)),
    }
}

fn holder(connection: &Connection, dataset: &Dataset, nodes: &[Node]) -> anyhow::Result<String> {
    let leases = connection.call(|c| c.list_leases())?;
    let lease = leases.iter().find(|l| l.dataset_id == dataset.dataset_id);
    Ok(lease.map_or("another node".to_owned(), |l| node_label(&l.node_uuid, nodes)))
}

/// Releases the lease on the dataset `prefix` means, among the leased ones (deleted datasets
/// included: their volumes wait for exactly this).
fn release(connection: &Connection, prefix: &str) -> anyhow::Result<()> {
    let leases = connection.call(|c| c.list_leases())?;
    let (datasets, _) = connection.call(|c| c.list_datasets())?;
    let candidates: Vec<Candidate<&Lease>> = leases
        .iter()
        .map(|lease| Candidate {
            id: lease.dataset_id.to_string(),
            name: name_of(&datasets, lease).map(str::to_owned),
            value: lease,
        })
        .collect();
    let lease = prefix::resolve(Kind::Dataset, prefix, &candidates).map_err(|e| match e {
        prefix::PrefixError::Unknown { prefix, .. } => {
            anyhow::anyhow!("no lease is held on a dataset with an id starting with '{prefix}' or called that; `flockerctl leases` shows them")
        }
        other => other.into(),
    })?;
    let nodes = lookup::nodes(connection)?;
    connection.call(|c| c.release_lease(&lease.dataset_id))?;
    println!(
        "released node {}'s lease on dataset {}: it may now be moved or destroyed, \
         even if a task there still uses it",
        node_label(&lease.node_uuid, &nodes),
        lease.dataset_id
    );
    Ok(())
}
