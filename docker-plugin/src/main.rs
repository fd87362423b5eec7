//! `flocker-docker-plugin`: flags, logging, start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use flocker_docker_plugin::driver::Driver;
use flocker_isolator_core::control::ControlService;
use flocker_isolator_core::params::Parameters;
use serde_json::json;

/// Serves Docker's volume plugin protocol for this node of a Flocker cluster.
#[derive(Parser)]
#[command(name = "flocker-docker-plugin", version, about)]
struct Options {
    /// The control service's host, or its instances' hosts separated by commas; by default the
    /// `control-service` hostname of --agent-config, as Flocker's plugin read it.
    #[arg(long)]
    control_service: Option<String>,
    #[arg(long, default_value = "/etc/flocker/agent.yml")]
    agent_config: PathBuf,
    /// The control service's REST port.
    #[arg(long, default_value_t = 4523)]
    rest_api_port: u16,
    /// Holds cluster.crt, plugin.crt and plugin.key (the API user `user-plugin`), and node.crt,
    /// whose CN names this node.
    #[arg(long, default_value = "/etc/flocker")]
    certificates_directory: PathBuf,
    /// The socket Docker finds the plugin by.
    #[arg(long, default_value = "/run/docker/plugins/flocker.sock")]
    socket: PathBuf,
    /// Where the record of this node's mounts is kept (persistent).
    #[arg(long, default_value = "/var/lib/flocker/docker-plugin")]
    state_dir: PathBuf,
    /// How long a mount waits for the volume to be mounted here, in seconds (a volume still
    /// arriving from another node's disk waits as long as it keeps coming).
    #[arg(long, default_value_t = 120)]
    mount_timeout: u64,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match run(Options::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flocker-docker-plugin: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> anyhow::Result<()> {
    let hosts = match &options.control_service {
        Some(hosts) => hosts.clone(),
        None => control_hosts(&options.agent_config)?,
    };
    let parameters = Parameters::parse(
        &json!({
            "control_service_host": hosts,
            "control_service_port": options.rest_api_port.to_string(),
            "certificates_directory": options.certificates_directory,
            "state_dir": options.state_dir,
            "mount_timeout_seconds": options.mount_timeout.to_string(),
        })
        .to_string(),
    )?;
    let control = ControlService::new(&parameters)?;
    // This node's UUID: from node.crt, or by era once the agent said hello (give it time).
    let node = control.node(Instant::now() + Duration::from_secs(600))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&options.state_dir)
        .with_context(|| format!("cannot create {}", options.state_dir.display()))?;
    let driver = Driver::new(
        control,
        node,
        &options.state_dir,
        parameters.mount_timeout,
        parameters.default_maximum_size,
    )
    .map_err(anyhow::Error::msg)?;
    log::info!("node {node}, control service {hosts}:{}", options.rest_api_port);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(flocker_docker_plugin::server::serve(&options.socket, Arc::new(driver)))
}

/// `control-service.hostname` of agent.yml: one host, a list, or hosts separated by commas.
fn control_hosts(agent_config: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(agent_config).with_context(|| {
        format!("cannot read {} (or give --control-service)", agent_config.display())
    })?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML", agent_config.display()))?;
    let hostname = &yaml["control-service"]["hostname"];
    match hostname {
        serde_yaml_ng::Value::String(host) => Ok(host.clone()),
        serde_yaml_ng::Value::Sequence(hosts) => {
            Ok(hosts.iter().filter_map(|h| h.as_str()).collect::<Vec<_>>().join(","))
        }
        _ => anyhow::bail!("{} has no control-service hostname", agent_config.display()),
    }
}
