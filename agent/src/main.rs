//! `flocker-dataset-agent --agent-config /etc/flocker/agent.yml`: flags, logging, exit code.
//! SIGTERM simply ends it: every step it takes is crash-safe, and a restart finds the node as it
//! was left.

use std::net::SocketAddr;
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

    /// Serve Prometheus metrics over plain HTTP at `http://ADDR:PORT/metrics` (port 0: any
    /// free port, logged), instead of agent.yml's `agent.metrics_address`. Off unless given.
    /// Anyone who can reach the address can read them: keep it on 127.0.0.1 unless a firewall
    /// keeps others out.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_address: Option<SocketAddr>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let options = Options::parse();
    let result = AgentConfig::load(&options.agent_config)
        .map(|config| AgentConfig {
            metrics_address: options.metrics_address.or(config.metrics_address),
            ..config
        })
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
