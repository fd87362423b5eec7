//! One ZooKeeper session for the control service, behind blocking calls with deadlines.
//!
//! The service's store calls run on tokio's blocking pool under the configuration's lock, as
//! the file store's fsyncs do; so this keeps a small runtime of its own, where the client's
//! session task lives, and each call blocks on it with a deadline. A session that expired (a
//! partition longer than its timeout) is replaced by a new one on the next call; the thread
//! that follows the store sees the new session and sets its watches and ephemeral nodes again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use zookeeper_client as zk;

use super::access::{Access, Credentials};
use super::url::StoreUrl;
use crate::store::{StoreError, ViewHealth};

/// How to reach the ensemble.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The longest any one call waits.
    pub timeout: Duration,
    /// Authenticate, and make every znode ours alone (see `access`).
    pub credentials: Option<Credentials>,
}

/// How long a session survives without reaching the ensemble: long enough for one server to
/// restart, short enough that a dead service's agents show as gone from other services soon.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a read waits: a healthy ensemble answers in milliseconds, and a read that cannot
/// be confirmed is answered from the last view.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Connection {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    url: StoreUrl,
    client: Mutex<zk::Client>,
    /// Counts sessions: 1 for the first.
    session: AtomicU64,
    settings: Settings,
    /// The longest any one call waits.
    timeout: Duration,
    pub health: Arc<ViewHealth>,
}

/// Why a call failed, and whether what it asked may still happen.
#[derive(Debug)]
pub enum Failure {
    /// ZooKeeper answered: the operation was refused, and changed nothing.
    Refused(zk::Error),
    /// The ensemble could not be reached: nothing was sent.
    Unreachable(String),
    /// Sent, but no answer came in time (or the connection broke): it may still take effect.
    Unanswered(String),
}

impl Connection {
    /// Connects (waiting at most `timeout`) and makes the root znode if it is missing.
    pub fn open(url: StoreUrl, settings: Settings) -> Result<Arc<Self>, StoreError> {
        let timeout = settings.timeout;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zookeeper")
            .enable_all()
            .build()
            .map_err(|e| unavailable(&url, format!("cannot start its runtime: {e}")))?;
        let client = runtime.block_on(connect(&url, &settings))?;
        if settings.credentials.is_none() {
            log::warn!(
                "the configuration in {url} is open to anything that reaches ZooKeeper (Mesos \
                 tasks can): give --store-credentials to make it this cluster's control \
                 services' alone"
            );
        }
        let connection = Arc::new(Self {
            runtime: Some(runtime),
            url,
            client: Mutex::new(client),
            session: AtomicU64::new(1),
            settings,
            timeout,
            health: Arc::new(ViewHealth::default()),
        });
        Ok(connection)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the connection")
    }

    /// The ACL of every znode this store makes.
    pub fn access(&self) -> Access {
        access_of(&self.settings)
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// Which session the calls use now (it changes after an expiry).
    pub fn session_number(&self) -> u64 {
        self.session.load(Ordering::Acquire)
    }

    /// The current session's id, as ZooKeeper names the owner of an ephemeral znode.
    pub fn session_id(&self) -> i64 {
        self.lock().session_id().0
    }

    /// Runs `operation` on a connected session, at most `timeout`; waits that long for a
    /// session that lost its server to find another. For changes.
    pub fn call<T, F>(&self, operation: impl FnOnce(zk::Client) -> F) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, zk::Error>>,
    {
        let client = self.connected()?;
        self.run(self.timeout, operation(client))
    }

    /// Runs `operation` at once, or fails at once while the session has no server: for reads,
    /// which answer from the last view rather than wait (see `crate::service`), and for the
    /// agents' soft state, which is published again once the session is back.
    pub fn call_at_once<T, F>(&self, operation: impl FnOnce(zk::Client) -> F) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, zk::Error>>,
    {
        let client = self.lock().clone();
        match client.state() {
            zk::SessionState::SyncConnected => {
                self.run(self.timeout.min(READ_TIMEOUT), operation(client))
            }
            zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                Err(Failure::Unreachable(format!(
                    "no ZooKeeper server of {} answers",
                    self.url.servers
                )))
            }
            _ => {
                let client = self.connected()?;
                self.run(self.timeout.min(READ_TIMEOUT), operation(client))
            }
        }
    }

    fn run<T>(
        &self,
        deadline: Duration,
        operation: impl Future<Output = Result<T, zk::Error>>,
    ) -> Result<T, Failure> {
        // The deadline is made inside the runtime: it needs that runtime's timer.
        let outcome =
            self.runtime().block_on(async { tokio::time::timeout(deadline, operation).await });
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(error)),
            Err(_) => Err(Failure::Unanswered(format!("no answer in {deadline:?}"))),
        }
    }

    /// Runs a future on this connection's runtime (for the thread that follows the store).
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime().block_on(future)
    }

    /// A client whose session is connected: waits up to `timeout` for a session that lost
    /// its server to find another, and replaces a session that expired.
    pub fn connected(&self) -> Result<zk::Client, Failure> {
        let client = self.lock().clone();
        match client.state() {
            zk::SessionState::SyncConnected => Ok(client),
            zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                self.runtime().block_on(self.reconnected(client))
            }
            state => {
                log::info!("the ZooKeeper session is {state:?}; making a new one");
                self.renew()
            }
        }
    }

    async fn reconnected(&self, client: zk::Client) -> Result<zk::Client, Failure> {
        let mut states = client.state_watcher();
        if states.state() == zk::SessionState::SyncConnected {
            return Ok(client); // it came back before the watcher was made
        }
        let wait = async {
            loop {
                match states.changed().await {
                    zk::SessionState::SyncConnected => return true,
                    zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {}
                    _ => return false,
                }
            }
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(true) => Ok(client),
            Ok(false) => self.runtime_renew().await,
            Err(_) => Err(Failure::Unreachable(format!(
                "no ZooKeeper server of {} answered in {:?}",
                self.url.servers, self.timeout
            ))),
        }
    }

    fn renew(&self) -> Result<zk::Client, Failure> {
        self.runtime().block_on(self.runtime_renew())
    }

    /// A new session in place of one that expired or closed.
    async fn runtime_renew(&self) -> Result<zk::Client, Failure> {
        let client = connect(&self.url, &self.settings)
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let mut current = self.lock();
        if !matches!(current.state(), zk::SessionState::SyncConnected) {
            log::warn!("the ZooKeeper session expired; a new one begins");
            *current = client.clone();
            self.session.fetch_add(1, Ordering::AcqRel);
            return Ok(client);
        }
        Ok(current.clone()) // another call renewed it first
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, zk::Client> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store's error for a failed call that was to change something.
    pub fn write_error(&self, failure: Failure) -> StoreError {
        match failure {
            Failure::Refused(error) => unavailable(&self.url, error.to_string()),
            Failure::Unreachable(reason) => unavailable(&self.url, reason),
            Failure::Unanswered(reason) => {
                StoreError::Unconfirmed { store: self.url.to_string(), reason }
            }
        }
    }

    /// The store's error for a failed call that only read.
    pub fn read_error(&self, failure: Failure) -> StoreError {
        match failure {
            Failure::Refused(error) => unavailable(&self.url, error.to_string()),
            Failure::Unreachable(reason) | Failure::Unanswered(reason) => {
                unavailable(&self.url, reason)
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The last holder may be a task of the service's runtime, where blocking is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A session on the ensemble, rooted at the URL's path (made if missing).
async fn connect(url: &StoreUrl, settings: &Settings) -> Result<zk::Client, StoreError> {
    let timeout = settings.timeout;
    let mut connector = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(timeout.min(SESSION_TIMEOUT));
    if let Some(credentials) = &settings.credentials {
        connector = connector.with_auth("digest", credentials.as_bytes());
    }
    let connecting = connector.connect(&url.servers);
    let client = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| unavailable(url, format!("no server answered in {timeout:?}")))?
        .map_err(|e| unavailable(url, e.to_string()))?;
    let options = access_of(settings).options(zk::CreateMode::Persistent);
    tokio::time::timeout(timeout, client.mkdir(&url.root, &options))
        .await
        .map_err(|_| unavailable(url, format!("cannot make {} in {timeout:?}", url.root)))?
        .map_err(|e| unavailable(url, format!("cannot make {}: {e}", url.root)))?;
    let client =
        client.chroot(url.root.clone()).map_err(|_| unavailable(url, "a bad root path".into()))?;
    // A new session may land on a server behind the one the last session used: let it catch
    // up with the leader before this service reads anything through it.
    tokio::time::timeout(timeout, client.sync("/"))
        .await
        .map_err(|_| unavailable(url, format!("no sync in {timeout:?}")))?
        .map_err(|e| unavailable(url, format!("cannot sync: {e}")))?;
    Ok(client)
}

fn access_of(settings: &Settings) -> Access {
    if settings.credentials.is_some() { Access::Creator } else { Access::Open }
}

fn classify(error: zk::Error) -> Failure {
    match error {
        // Sent, and then the connection or the session went: ZooKeeper may still apply it.
        zk::Error::ConnectionLoss
        | zk::Error::Timeout
        | zk::Error::SessionExpired
        | zk::Error::ClientClosed => Failure::Unanswered(error.to_string()),
        zk::Error::NoHosts => Failure::Unreachable(error.to_string()),
        refused => Failure::Refused(refused),
    }
}

fn unavailable(url: &StoreUrl, reason: String) -> StoreError {
    StoreError::Unavailable { store: url.to_string(), reason }
}
