//! `flockerctl list` (alias `ls`): one row per dataset, with its status and node, and under the
//! table, why an agent leaves a dataset as it is and how far a push between nodes has come.

use clap::Args;
use flocker_cli::ops::table;
use flocker_cli::ops::view::{DATASET_HEADERS, dataset_cells, dataset_rows, problem_lines};

use super::connection::ConnectionArgs;
use super::lookup::{self, print_json};

#[derive(Args)]
pub struct ListArgs {
    /// Include deleted datasets
    #[arg(short, long)]
    deleted: bool,
    /// Show whole UUIDs
    #[arg(short, long)]
    long: bool,
    /// Show sizes like 10.0G instead of bytes
    #[arg(short = 'H', long)]
    human: bool,
    /// Print JSON, for scripts (every field, whole UUIDs, sizes in bytes)
    #[arg(long)]
    json: bool,
}

pub fn run(connection: &ConnectionArgs, args: ListArgs) -> anyhow::Result<()> {
    let connection = connection.connect()?;
    let (datasets, _) = connection.call(|c| c.list_datasets())?;
    let states = connection.call(|c| c.dataset_states())?;
    // A Flocker 1.x service has no problems to show (None): list as it always did.
    let problems = connection.call(|c| c.dataset_problems())?.unwrap_or_default();
    // Nor pushes between nodes (None), nor has a service of ours older than them.
    let transfers = connection.call(|c| c.dataset_transfers())?.unwrap_or_default();
    let leases = connection.call(|c| c.list_leases())?;
    let nodes = lookup::nodes(&connection)?;
    let rows =
        dataset_rows(&datasets, &states, &problems, &transfers, &nodes, &leases, args.deleted);
    if args.json {
        return print_json(&rows);
    }
    let cells: Vec<Vec<String>> =
        rows.iter().map(|r| dataset_cells(r, args.long, args.human)).collect();
    print!("{}", table::render(&DATASET_HEADERS, &cells));
    let problems = problem_lines(&rows, args.long);
    if !problems.is_empty() {
        print!("\n{problems}");
    }
    Ok(())
}
