//! `flocker-control`: a control service that any Flocker v1 client can use unchanged.
//!
//! - [`model`] holds the desired configuration and decides every change (pure);
//! - [`store`] keeps it crash-safely under `--data-path`, or in ZooKeeper (`--store zk://…`),
//!   which [`follow`] watches for what other control services write;
//! - [`cluster`] holds what the agents report (in memory);
//! - [`service`] puts them together behind one lock;
//! - [`http`] serves the REST API (port 4523) and the agent API (port 4524) over [`serve`],
//!   with the mutual TLS of [`tls`];
//! - [`metrics`] counts requests, store writes and errors, served by `--metrics-address`.

pub mod cluster;
pub mod error;
pub mod follow;
pub mod http;
pub mod index;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod options;
pub mod serve;
pub mod service;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod undo;
pub mod untrusted;

#[cfg(test)]
mod testing;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::http::{App, BodyLimits, SharedApp, agent_router, rest_router};
use crate::metrics::Metrics;
use crate::options::Options;
use crate::serve::{ConnectionLimits, serve};
use crate::service::{ControlService, Sharing};
use crate::store::zookeeper::nodes::SharedNodes;
use crate::store::zookeeper::{Connection, Settings, ZooKeeperStore};
use crate::store::{FileStore, Store, Stored, TimedStore};
use crate::tls::{NODE_PREFIX, ServiceCertificates, USER_PREFIX};

/// A REST request body larger than this is refused: the largest valid one is a few kB.
const REST_BODY_LIMIT: usize = 64 * 1024;
/// An agent's state report lists every dataset on its node.
const AGENT_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// No agent poll waits longer than this, and never longer than half the node expiry.
const LONGEST_POLL: Duration = Duration::from_secs(60);

/// Runs the service until SIGTERM or SIGINT. It prints one line to stdout once both ports
/// listen: `flocker-control: REST API on <addr>, agent API on <addr>`.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let files = ServiceCertificates::in_directory(&options.certificates_directory);
    let rest_tls = tls::server_config(&files, USER_PREFIX, options.tls_library)?;
    let agent_tls = tls::server_config(&files, NODE_PREFIX, options.tls_library)?;

    let opening = options.clone();
    // The ZooKeeper store blocks on a runtime of its own: open it off this one's threads.
    let (store, stored, connection) = tokio::task::spawn_blocking(move || open_store(&opening))
        .await
        .context("opening the store failed")??;
    let node_expiry = Duration::from_secs_f64(options.node_expiry);
    let body_timeout = Duration::from_secs_f64(options.request_timeout);
    let metrics = Arc::new(Metrics::new());
    let store = Box::new(TimedStore::new(store, metrics.clone()));
    let mut service = ControlService::new(store, stored, node_expiry).with_limits(options.limits());
    if let Some(connection) = &connection {
        service = service.sharing(Sharing {
            health: connection.health.clone(),
            nodes: Arc::new(SharedNodes::new(connection.clone())),
        });
    }
    let app = Arc::new(App {
        service,
        rest_body: BodyLimits { max_bytes: REST_BODY_LIMIT, timeout: body_timeout },
        agent_body: BodyLimits { max_bytes: AGENT_BODY_LIMIT, timeout: body_timeout },
        node_expiry,
        longest_poll: LONGEST_POLL.min(node_expiry / 2),
        metrics,
    });

    if let Some(connection) = connection {
        follow::spawn(app.clone(), connection);
    }
    let rest = listen(options.port).await?;
    let agent = listen(options.agent_port).await?;
    if let Some(address) = options.metrics_address {
        serve_metrics(address, app.clone())?;
    }
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "flocker-control: REST API on {}, agent API on {}",
        rest.local_addr()?,
        agent.local_addr()?
    )?;
    stdout.flush()?;

    let limits = ConnectionLimits {
        request_timeout: body_timeout,
        handshake_timeout: Duration::from_secs_f64(options.handshake_timeout),
        max_handshakes: options.max_handshakes.into(),
        max_handshakes_per_address: options.max_handshakes_per_address.into(),
        max_connections: options.max_connections,
    };
    tokio::select! {
        () = serve(rest, rest_tls, rest_router(app.clone()), limits) => {}
        () = serve(agent, agent_tls, agent_router(app.clone()), limits) => {}
        () = sweep_every_second(app.clone()) => {}
        signal = shutdown_signal() => log::info!("stopping on {}", signal?),
    }
    // Writes already handed to the blocking pool finish before the runtime goes away.
    Ok(())
}

/// The store the options name, loaded; and the ZooKeeper connection, if it is shared.
type Opened = (Box<dyn Store>, Stored, Option<Arc<Connection>>);

fn open_store(options: &Options) -> anyhow::Result<Opened> {
    if let Some(url) = &options.store {
        let settings = options.zookeeper_settings().map_err(anyhow::Error::msg)?;
        let mut store = ZooKeeperStore::open(url.clone(), settings)?;
        if let Some(changes) = options.store_compact_every {
            store = store.compact_every(changes);
        }
        let stored = store.load()?;
        log_loaded(&stored, &url.to_string());
        let connection = store.connection().clone();
        return Ok((Box::new(store), stored, Some(connection)));
    }
    let mut store = FileStore::open(&options.data_path)?.accept_data_loss(options.accept_data_loss);
    let stored = store.load()?;
    log_loaded(&stored, &options.data_path.display().to_string());
    Ok((Box::new(store), stored, None))
}

fn log_loaded(stored: &Stored, place: &str) {
    log::info!(
        "loaded {} datasets and {} leases (generation {}) from {place}",
        stored.configuration.datasets.len(),
        stored.configuration.leases.len(),
        stored.generation,
    );
}

/// `flocker-control migrate`: prints what it copied.
pub fn migrate(
    from: &migrate::Location,
    to: &migrate::Location,
    settings: &Settings,
) -> anyhow::Result<()> {
    let stored = migrate::migrate(from, to, settings)?;
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "copied {} datasets, {} leases and {} block devices (generation {}) from {} to {}",
        stored.configuration.datasets.len(),
        stored.configuration.leases.len(),
        stored.configuration.blockdevice_ownership.len(),
        stored.generation,
        migrate::describe(from),
        migrate::describe(to)
    )?;
    Ok(())
}

async fn listen(address: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    crate::serve::listen(address).with_context(|| format!("cannot listen on {address}"))
}

/// Serves the metrics on `address` (`--metrics-address`) from now on; the sizes of the
/// configuration and the cluster are counted at each scrape.
fn serve_metrics(address: std::net::SocketAddr, app: SharedApp) -> anyhow::Result<()> {
    let listener = flocker_metrics::bind(address)
        .with_context(|| format!("cannot listen on {address} for metrics (--metrics-address)"))?;
    let render = Arc::new(move || app.metrics.render(app.service.tally()));
    tokio::spawn(flocker_metrics::serve(listener, render));
    Ok(())
}

/// Expires leases and quiet nodes about once a second.
async fn sweep_every_second(app: Arc<App>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let app = app.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || app.service.sweep()).await {
            log::error!("the sweep failed: {error}");
        }
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}
