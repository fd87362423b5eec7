//! `flocker-dataset-agent --agent-config /etc/flocker/agent.yml`: flags, logging, exit code.
//! SIGTERM simply ends it: every step it takes is crash-safe, and a restart finds the node as it
//! was left.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flocker_dataset_agent::config::AgentConfig;

/// Converges this node's volumes to what the control service wants.
#[derive(Parser)]
#[command(name = "flocker-dataset-agent", version, about)]
struct Options {
    /// agent.yml; cluster.crt, node.crt and node.key are read from the same directory.
    #[arg(long, default_value = "/etc/flocker/agent.yml")]
    agent_config: PathBuf,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let options = Options::parse();
    let result = AgentConfig::load(&options.agent_config)
        .map_err(anyhow::Error::from)
        .and_then(flocker_dataset_agent::run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flocker-dataset-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}
