//! Two control services sharing one configuration in ZooKeeper (`--store zk://…`), with a
//! client of each, ready for a test; and a 3-server ensemble shared by the tests of one process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use flocker_api::{Client, ClientError, RawResponse};

use crate::running::chain;
use crate::{ClusterCertificates, ControlProcess, ZooKeeperEnsemble};

/// The ensemble [`RunningPair::start`] uses, while any test of this process holds it.
static SHARED_ENSEMBLE: Mutex<Weak<ZooKeeperEnsemble>> = Mutex::new(Weak::new());

impl ZooKeeperEnsemble {
    /// A 3-server ensemble shared by the tests of this process that run at the same time, each
    /// under a root path of its own: starting one takes more than a second of both cores. It is
    /// stopped when the last holder drops it (statics are never dropped: a process-wide one
    /// would outlive the tests), and started again by the next test that asks. Tests that kill
    /// servers start an ensemble of their own.
    pub fn shared() -> Arc<Self> {
        let mut shared = SHARED_ENSEMBLE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ensemble) = shared.upgrade() {
            return ensemble;
        }
        let ensemble = Arc::new(Self::start(3));
        *shared = Arc::downgrade(&ensemble);
        ensemble
    }

    /// `zk://<every server>/flocker-<uuid>`: a store no other test uses.
    pub fn fresh_store_url(&self) -> String {
        format!("zk://{}/flocker-{}", self.connect_string(), uuid::Uuid::new_v4().simple())
    }
}

/// Certificates, two `flocker-control` services on one ZooKeeper store, and a client of each
/// presenting `user-alice`. [`RunningPair::send`] alternates between the services.
pub struct RunningPair {
    /// Dropped (killed) first.
    pub processes: Vec<ControlProcess>,
    pub clients: Vec<Client>,
    /// The `--store` both were given.
    pub store: String,
    /// Picks the service of the next [`RunningPair::send`].
    next: AtomicUsize,
    binary: PathBuf,
    extra: Vec<String>,
    /// The shared ensemble, if the pair runs on it; dropped after the services.
    _ensemble: Option<Arc<ZooKeeperEnsemble>>,
    /// Dropped last: the processes' files live in it.
    pub certificates: ClusterCertificates,
}

impl RunningPair {
    /// Two services on a store of their own in the [shared](ZooKeeperEnsemble::shared)
    /// ensemble, with extra `flocker-control` options.
    pub fn start(binary: &Path, extra: &[&str]) -> Self {
        let ensemble = ZooKeeperEnsemble::shared();
        let store = ensemble.fresh_store_url();
        let mut pair = Self::start_on(binary, &store, extra);
        pair._ensemble = Some(ensemble);
        pair
    }

    /// Two services on `store` (`zk://…`), which the caller keeps running.
    pub fn start_on(binary: &Path, store: &str, extra: &[&str]) -> Self {
        let certificates = ClusterCertificates::new();
        let mut pair = Self {
            processes: Vec::new(),
            clients: Vec::new(),
            store: store.to_owned(),
            next: AtomicUsize::new(0),
            binary: binary.to_owned(),
            extra: extra.iter().map(|&e| e.to_owned()).collect(),
            _ensemble: None,
            certificates,
        };
        for name in ["a", "b"] {
            let process = pair.start_another(name).unwrap_or_else(|error| panic!("{error}"));
            pair.clients.push(pair.certificates.client(process.rest, "alice"));
            pair.processes.push(process);
        }
        pair
    }

    /// One more service on the same store and options, its files under `name` (the caller
    /// owns it; `a` and `b` are the pair's).
    pub fn start_another(&self, name: &str) -> Result<ControlProcess, String> {
        let data = self.certificates.root().join(name);
        let mut arguments: Vec<&str> = vec!["--store", &self.store];
        arguments.extend(self.extra.iter().map(String::as_str));
        ControlProcess::start(&self.binary, &self.certificates, &data, &arguments)
    }

    /// Starts service `i` again (after a [`ControlProcess::kill`]), on its files, its ports
    /// and the same options, so that its client still reaches it.
    pub fn restart(&mut self, i: usize) {
        let old = &self.processes[i];
        let ports = (old.rest, old.agent);
        let data = old.data_path.clone();
        let mut arguments: Vec<&str> = vec!["--store", &self.store];
        arguments.extend(self.extra.iter().map(String::as_str));
        let process =
            ControlProcess::start_on(&self.binary, &self.certificates, &data, ports, &arguments)
                .unwrap_or_else(|error| panic!("{error}\n{}", self.logs()));
        self.processes[i] = process;
    }

    /// One request on a REST port, the services taken in turn; the answer whatever its status.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.processes.len();
        self.send_to(i, method, path, headers, body)
    }

    /// One request on service `i`'s REST port; panics with the logs if it gets no answer.
    pub fn send_to(
        &self,
        i: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse {
        self.try_send_to(i, method, path, headers, body).unwrap_or_else(|error| {
            panic!("{method} {path} on service {i}: {}\n{}", chain(&error), self.logs())
        })
    }

    /// One request on service `i`'s REST port, which may be down.
    pub fn try_send_to(
        &self,
        i: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        self.clients[i].send(method, path, headers, body.map(str::as_bytes))
    }

    /// The current `X-Configuration-Tag`, from the next service in turn.
    pub fn tag(&self) -> String {
        let response = self.send("GET", "/v1/configuration/datasets", &[], None);
        response.header("x-configuration-tag").unwrap_or_default().to_owned()
    }

    /// Every service's log, for a failure message.
    pub fn logs(&self) -> String {
        let logs: Vec<String> = (self.processes.iter().enumerate())
            .map(|(i, process)| format!("--- service {i}'s log:\n{}", process.log()))
            .collect();
        logs.join("\n")
    }

    /// How long a state another service shares may take to show here: the agents' soft state
    /// is mirrored from ZooKeeper's watches (see `control/src/follow.rs`), within milliseconds
    /// normally; this bounds it generously.
    pub const SOFT_STATE_DELAY: Duration = Duration::from_secs(2);
}

impl Drop for RunningPair {
    /// A test that fails shows what the services logged (the test harness prints a failing
    /// test's output).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
