//! `flockerctl`: the command-line tool of the Flocker control plane.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command-line tool of the Flocker control plane.
#[derive(Parser)]
#[command(name = "flockerctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cluster certificate authority (compatible with flocker-ca)
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
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
