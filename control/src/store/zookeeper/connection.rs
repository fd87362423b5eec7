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

use super::url::StoreUrl;
use crate::store::{StoreError, ViewHealth};

/// How long a session survives without reaching the ensemble: long enough for one server to
/// restart, short enough that a dead service's agents show as gone from other services soon.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Connection {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    url: StoreUrl,
    client: Mutex<zk::Client>,
    /// Counts sessions: 1 for the first.
    session: AtomicU64,
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
    pub fn open(url: StoreUrl, timeout: Duration) -> Result<Arc<Self>, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zookeeper")
            .enable_all()
            .build()
            .map_err(|e| unavailable(&url, format!("cannot start its runtime: {e}")))?;
        let client = runtime.block_on(connect(&url, timeout))?;
        let connection = Arc::new(Self {
            runtime: Some(runtime),
            url,
            client: Mutex::new(client),
            session: AtomicU64::new(1),
            timeout,
            health: Arc::new(ViewHealth::default()),
        });
        Ok(connection)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the connection")
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

    /// Runs `operation` on a connected session, at most `timeout`.
    pub fn call<T, F>(&self, operation: impl FnOnce(zk::Client) -> F) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, zk::Error>>,
    {
        let client = self.connected()?;
        let timeout = self.timeout;
        // The timer is made inside the runtime: the follower, compaction and `migrate` call
        // from threads outside any runtime, where making one panics.
        let outcome = self
            .runtime()
            .block_on(async move { tokio::time::timeout(timeout, operation(client)).await });
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(error)),
            Err(_) => Err(Failure::Unanswered(format!("no answer in {:?}", self.timeout))),
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
            _ => self.renew(),
        }
    }

    async fn reconnected(&self, client: zk::Client) -> Result<zk::Client, Failure> {
        let mut states = client.state_watcher();
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
        let client = connect(&self.url, self.timeout)
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
async fn connect(url: &StoreUrl, timeout: Duration) -> Result<zk::Client, StoreError> {
    let connecting = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(timeout.min(SESSION_TIMEOUT))
        .connect(&url.servers);
    let client = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| unavailable(url, format!("no server answered in {timeout:?}")))?
        .map_err(|e| unavailable(url, e.to_string()))?;
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    tokio::time::timeout(timeout, client.mkdir(&url.root, &options))
        .await
        .map_err(|_| unavailable(url, format!("cannot make {} in {timeout:?}", url.root)))?
        .map_err(|e| unavailable(url, format!("cannot make {}: {e}", url.root)))?;
    client.chroot(url.root.clone()).map_err(|_| unavailable(url, "a bad root path".into()))
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
