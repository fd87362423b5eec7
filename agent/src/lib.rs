//! `flocker-dataset-agent`: makes one node hold the volumes the control service wants it to.
//!
//! - [`config`] reads `agent.yml`;
//! - [`link`] talks to the control service's agent API;
//! - [`discover`] finds what the node has (backend volumes, loop devices, mounts);
//! - [`calculate`] decides the next step for each dataset (pure);
//! - [`act`] carries it out on a [`backend`] (loopback, directory or btrfs, running
//!   [`command`]s), on one of a few [`steps`] workers, several datasets at once;
//! - [`pacing`] says when a dataset may take its next step and when a report may go;
//! - [`converge`] loops over all of that;
//! - [`metrics`] counts its steps, passes, reports, polls and pushes, for Prometheus.

pub mod act;
pub mod backend;
pub mod calculate;
pub mod command;
pub mod config;
pub mod converge;
pub mod discover;
pub mod link;
pub mod metrics;
pub mod pacing;
pub mod peer;
pub mod steps;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flocker_api::agent_protocol::{AgentClient, Hello};
use flocker_api::{Client, Era, certificates};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::backend::Backend;
use crate::backend::btrfs::Btrfs;
use crate::backend::directory::Directory;
use crate::backend::loopback::Loopback;
use crate::config::{AgentConfig, BackendConfig};
use crate::converge::{Converger, Mailbox, poll_forever};
use crate::link::{Backoff, Link};
use crate::peer::client::PeerClient;
use crate::transfer::incoming::Incoming;
use crate::transfer::outgoing::Outgoing;

/// Runs the agent; returns only if it cannot start.
pub fn run(config: AgentConfig) -> anyhow::Result<()> {
    if let Some(address) = config.metrics_address {
        serve_metrics(address)?;
    }
    let node_certificate = config.directory().join("node.crt");
    let node = certificates::node_uuid_of_file(&node_certificate)?;
    let client = Client::new(&config.client_config())?;
    let era = match config.era {
        Some(era) => era,
        None => boot_id()?,
    };
    let mailbox = Arc::new(Mailbox::default());
    let (backend, transfers) = backend(&config, &node.to_string(), &mailbox)?;
    log::info!(
        "node {node}, era {era}: {} backend in {}, mounting under {}, control service {}",
        backend.name(),
        config.backend.root_path().display(),
        config.mount_root.display(),
        config.client_config().address(),
    );
    let hello = Hello {
        era,
        backend: Some(backend.name().to_owned()),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        transfer_port: transfers.as_ref().map(|t| t.port),
    };
    let link = Link::new(AgentClient::new(client), hello);
    let welcome = say_hello_until_answered(&link, config.max_backoff);
    let poll = config.poll.min(Duration::from_secs_f64(welcome.longest_poll_seconds.max(1.0)));
    std::thread::Builder::new()
        .name("configuration-poll".into())
        .spawn({
            let (link, mailbox, longest) = (link.clone(), mailbox.clone(), config.max_backoff);
            move || poll_forever(link, mailbox, poll, longest)
        })
        .context("cannot start the configuration poll")?;
    Converger {
        backend,
        mount_root: config.mount_root,
        link,
        era,
        mailbox,
        longest_pause: config.max_backoff,
        heartbeat: Duration::from_secs_f64((welcome.node_expiry_seconds / 3.0).max(1.0)),
        transfers,
    }
    .run()
}

/// Serves [`metrics::global`] on `address` from now on, on a thread of its own.
fn serve_metrics(address: SocketAddr) -> anyhow::Result<()> {
    let listener = flocker_metrics::bind(address)
        .with_context(|| format!("cannot listen on {address} for metrics (metrics_address)"))?;
    flocker_metrics::serve_in_thread(listener, Arc::new(|| metrics::global().render()))
        .context("cannot start serving the metrics")
}

/// The pushes of a btrfs node: its two sides, and the port it takes them on.
pub struct Transfers {
    pub outgoing: Arc<Outgoing>,
    pub incoming: Arc<Incoming>,
    pub port: u16,
}

fn backend(
    config: &AgentConfig,
    node: &str,
    mailbox: &Arc<Mailbox>,
) -> anyhow::Result<(Box<dyn Backend>, Option<Transfers>)> {
    let instance = config.backend.compute_instance_id().unwrap_or(node);
    Ok(match &config.backend {
        BackendConfig::Loopback { root_path, .. } => {
            (Box::new(Loopback::new(root_path, instance)?), None)
        }
        BackendConfig::Directory { root_path, mount_mode, .. } => {
            (Box::new(Directory::new(root_path, instance, *mount_mode)?), None)
        }
        BackendConfig::Btrfs { pool, source, transfer_port } => {
            let btrfs = Btrfs::new(pool, source)?;
            let pool = transfer::Pool::new(btrfs.pool());
            let incoming = Arc::new(Incoming::new(pool.clone(), mailbox.clone()));
            // Every address, IPv6 and IPv4; IPv4 alone where IPv6 is off.
            let any = |ip: IpAddr| SocketAddr::new(ip, *transfer_port);
            let receiver: Arc<dyn peer::server::Receiver> = incoming.clone();
            let port = peer::server::start(
                any(Ipv6Addr::UNSPECIFIED.into()),
                config.directory(),
                receiver.clone(),
            )
            .or_else(|_| {
                peer::server::start(any(Ipv4Addr::UNSPECIFIED.into()), config.directory(), receiver)
            })?;
            log::info!("taking pushes of volumes from other nodes on port {port}");
            let peers = PeerClient::new(config.directory())?;
            let outgoing = Arc::new(Outgoing::new(pool, peers, mailbox.clone()));
            (Box::new(btrfs), Some(Transfers { outgoing, incoming, port }))
        }
    })
}

/// The kernel's boot id: a new era on every boot.
fn boot_id() -> anyhow::Result<Era> {
    let text = flocker_host::boot_id()
        .with_context(|| format!("cannot read {}", flocker_host::BOOT_ID))?;
    Ok(text.parse()?)
}

fn say_hello_until_answered(
    link: &Link,
    longest: Duration,
) -> flocker_api::agent_protocol::Welcome {
    let mut backoff = Backoff::new(Duration::from_millis(100), longest);
    loop {
        match link.hello() {
            Ok(welcome) => return welcome,
            Err(error) => {
                log::warn!("{:#}; retrying", anyhow::Error::new(error));
                std::thread::sleep(backoff.pause());
            }
        }
    }
}
