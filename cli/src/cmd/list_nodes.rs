//! `flockerctl list-nodes` (alias `status`): the nodes whose agents report, with their addresses.

use clap::Args;
use flocker_cli::ops::table;
use flocker_cli::ops::view::short;

use super::connection::ConnectionArgs;
use super::lookup::{self, print_json};

#[derive(Args)]
pub struct ListNodesArgs {
    /// Show whole UUIDs
    #[arg(short, long)]
    long: bool,
    /// Print JSON, for scripts
    #[arg(long)]
    json: bool,
}

pub fn run(connection: &ConnectionArgs, args: ListNodesArgs) -> anyhow::Result<()> {
    let nodes = lookup::nodes(&connection.connect()?)?;
    if args.json {
        return print_json(&nodes);
    }
    let rows: Vec<Vec<String>> =
        nodes.iter().map(|n| vec![short(&n.uuid.to_string(), args.long), n.host.clone()]).collect();
    print!("{}", table::render(&["SERVER", "ADDRESS"], &rows));
    Ok(())
}
