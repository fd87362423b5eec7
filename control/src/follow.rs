//! Follows a shared store (ZooKeeper): takes in the configuration changes other control
//! services write, and mirrors the agents they share, as soon as ZooKeeper reports them.
//!
//! Watches are set before anything is read, so no change falls between the read and the
//! watch. After the connection is lost, everything is read again (events may have been
//! missed meanwhile); after the session expires, a new one is made and this service's own
//! agents are published again. While the ensemble cannot be reached, the view is marked
//! unconfirmed, and the HTTP layer says how old it is.

use std::sync::Arc;
use std::time::Duration;

use flocker_api::NodeUuid;
use zookeeper_client as zk;

use crate::http::App;
use crate::service::ControlService;
use crate::store::zookeeper::nodes;
use crate::store::zookeeper::{Connection, layout};

/// How long to wait before trying again after the ensemble could not be reached.
const RETRY: Duration = Duration::from_millis(500);

/// Follows the store on a thread of its own, for the life of the process.
pub fn spawn(app: Arc<App>, connection: Arc<Connection>) {
    let thread = std::thread::Builder::new().name("follow-store".into());
    let spawned = thread.spawn(move || {
        loop {
            follow_one_session(&app.service, &connection);
            std::thread::sleep(RETRY);
        }
    });
    if let Err(error) = spawned {
        log::error!("cannot start the thread that follows the store: {error}");
    }
}

/// Follows the store while one session lasts.
fn follow_one_session(service: &ControlService, connection: &Connection) {
    let client = match connection.connected() {
        Ok(client) => client,
        Err(failure) => {
            connection.health.unconfirmed();
            log::debug!("cannot follow the store: {failure:?}");
            return;
        }
    };
    let watches = connection.block_on(async {
        let head = client.watch(layout::HEAD, zk::AddWatchMode::Persistent).await?;
        let nodes = client.watch(layout::NODES, zk::AddWatchMode::PersistentRecursive).await?;
        Ok::<_, zk::Error>((head, nodes))
    });
    let (mut head, mut shared) = match watches {
        Ok(watches) => watches,
        Err(error) => {
            log::warn!("cannot watch the store: {error}");
            return;
        }
    };
    let mut states = client.state_watcher();
    if !read_everything(service, connection, &client) {
        return;
    }
    loop {
        let event = connection.block_on(async {
            tokio::select! {
                _ = head.changed() => Event::Head,
                event = shared.changed() => Event::Node(event),
                state = states.changed() => Event::Session(state),
            }
        });
        match event {
            Event::Head => service.follow_store(),
            Event::Node(event) => follow_node(service, connection, &client, &event),
            Event::Session(zk::SessionState::SyncConnected) => {
                log::info!("reconnected to the configuration store");
                if !read_everything(service, connection, &client) {
                    return;
                }
            }
            Event::Session(
                zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly,
            ) => {
                log::warn!(
                    "lost the connection to the configuration store; answering from the last view"
                );
                connection.health.unconfirmed();
            }
            Event::Session(state) => {
                log::warn!("the configuration store's session ended ({state:?})");
                connection.health.unconfirmed();
                return;
            }
        }
    }
}

enum Event {
    Head,
    Node(zk::WatchedEvent),
    Session(zk::SessionState),
}

/// Catches up with the configuration and mirrors every shared node; false if the store could
/// not be read.
fn read_everything(service: &ControlService, connection: &Connection, client: &zk::Client) -> bool {
    let ours = connection.session_id();
    match connection.block_on(nodes::read_all(client)) {
        Ok(all) => {
            let theirs = all
                .into_iter()
                .filter(|(_, _, owner)| *owner != ours)
                .map(|(node, record, _)| (node, record))
                .collect();
            service.follow_store();
            service.mirror_all(theirs);
            service.republish_shared();
            connection.health.confirmed();
            true
        }
        Err(error) => {
            log::warn!("cannot read the agents other control services share: {error}");
            connection.health.unconfirmed();
            false
        }
    }
}

/// One shared node changed: mirror it again, or drop it.
fn follow_node(
    service: &ControlService,
    connection: &Connection,
    client: &zk::Client,
    event: &zk::WatchedEvent,
) {
    let Some(name) = event.path.strip_prefix(layout::NODES).and_then(|p| p.strip_prefix('/'))
    else {
        return;
    };
    let Ok(node) = name.parse::<NodeUuid>() else { return };
    match event.event_type {
        zk::EventType::NodeDeleted => service.mirror_node(node, None),
        zk::EventType::NodeCreated | zk::EventType::NodeDataChanged => {
            match connection.block_on(nodes::read_one(client, name)) {
                Ok(Some((_, record, owner))) if owner != connection.session_id() => {
                    service.mirror_node(node, Some(record));
                }
                Ok(Some(_)) => {} // our own
                Ok(None) => service.mirror_node(node, None),
                Err(error) => log::debug!("cannot read node {node}'s shared state: {error}"),
            }
        }
        _ => {}
    }
}
