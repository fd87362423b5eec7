//! `flocker-dataset-agent`: makes one node hold the volumes the control service wants it to.
//!
//! - [`config`] reads `agent.yml`;
//! - [`link`] talks to the control service's agent API;
//! - [`discover`] finds what the node has (backend volumes, loop devices, mounts);
//! - [`calculate`] decides the next step for each dataset (pure);
//! - [`act`] carries it out on a [`backend`] (loopback, directory or btrfs, running
//!   [`command`]s);
//! - [`converge`] loops over all of that.

pub mod act;
pub mod backend;
pub mod calculate;
pub mod command;
pub mod config;
pub mod converge;
pub mod discover;
pub mod link;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flocker_api::agent_protocol::{AgentClient, Hello};
use flocker_api::{Client, Era, certificates};

use crate::backend::Backend;
use crate::backend::btrfs::Btrfs;
use crate::backend::directory::Directory;
use crate::backend::loopback::Loopback;
use crate::config::{AgentConfig, BackendConfig};
use crate::converge::{Converger, Mailbox, poll_forever};
use crate::link::{Backoff, Link};

/// Runs the agent; returns only if it cannot start.
pub fn run(config: AgentConfig) -> anyhow::Result<()> {
    let node_certificate = config.directory().join("node.crt");
    let node = certificates::node_uuid_of_file(&node_certificate)?;
    let client = Client::new(&config.client_config())?;
    let era = match config.era {
        Some(era) => era,
        None => boot_id()?,
    };
    let backend = backend(&config.backend, &node.to_string())?;
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
        transfer_port: None,
    };
    let link = Link::new(AgentClient::new(client), hello);
    let welcome = say_hello_until_answered(&link, config.max_backoff);
    let mailbox = Arc::new(Mailbox::default());
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
    }
    .run()
}

fn backend(config: &BackendConfig, node: &str) -> anyhow::Result<Box<dyn Backend>> {
    let instance = config.compute_instance_id().unwrap_or(node);
    Ok(match config {
        BackendConfig::Loopback { root_path, .. } => Box::new(Loopback::new(root_path, instance)?),
        BackendConfig::Directory { root_path, mount_mode, .. } => {
            Box::new(Directory::new(root_path, instance, *mount_mode)?)
        }
        BackendConfig::Btrfs { pool, source } => Box::new(Btrfs::new(pool, source)?),
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
