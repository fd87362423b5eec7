//! `flockerctl`: the operator's tool of the Flocker control plane.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The operator's tool of a Flocker cluster: certificates, nodes, datasets, leases, and a demo
/// of the whole system on this machine.
#[derive(Parser)]
#[command(name = "flockerctl", version)]
struct Cli {
    #[command(flatten)]
    connection: cmd::connection::ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the nodes of the cluster, with their UUIDs and addresses
    #[command(visible_alias = "status")]
    ListNodes(cmd::list_nodes::ListNodesArgs),
    /// List the datasets: id, size, metadata, status and node
    #[command(visible_alias = "ls")]
    List(cmd::list::ListArgs),
    /// Create a dataset on a node, and wait until it is mounted there
    Create(cmd::create::CreateArgs),
    /// Move a dataset to another node, and wait until it is mounted there
    Move(cmd::move_dataset::MoveArgs),
    /// Delete a dataset, and wait until its volume is gone
    Destroy(cmd::destroy::DestroyArgs),
    /// List, acquire or release leases (release frees a volume whose node died)
    Leases(cmd::leases::LeasesArgs),
    /// Show the version of flockerctl and of the control service
    Version,
    /// Run the whole system on this machine: a control service, two dataset agents, and the
    /// isolator library driven as a Mesos agent would drive it
    Demo(cmd::demo::DemoArgs),
    /// Cluster certificate authority (compatible with flocker-ca)
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let connection = cli.connection;
    let result = match cli.command {
        Command::ListNodes(args) => cmd::list_nodes::run(&connection, args),
        Command::List(args) => cmd::list::run(&connection, args),
        Command::Create(args) => cmd::create::run(&connection, args),
        Command::Move(args) => cmd::move_dataset::run(&connection, args),
        Command::Destroy(args) => cmd::destroy::run(&connection, args),
        Command::Leases(args) => cmd::leases::run(&connection, args),
        Command::Version => cmd::version::run(&connection),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Ca(command) => cmd::ca::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flockerctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
