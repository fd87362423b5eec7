//! The agent's side of the agent API: hello, the configuration long-poll, state reports. A
//! call answered 409 (the service restarted, or forgot this node) says hello again and retries.
//!
//! With several control-service instances the client moves on from one that does not answer
//! (see `flocker_api::client`), the long-poll included: the service answers a poll by itself
//! once its wait is over, so a poll that times out on our side (the wait and 30 s more) met an
//! instance that hung or whose machine died, and the poll, a GET, goes on to the next instance.
//! An instance that does not know the node answers 409, and the node says hello to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flocker_api::ClientError;
use flocker_api::agent_protocol::{
    AgentClient, AgentConfiguration, BlockDeviceOwnership, Hello, StateReport, Welcome,
};

#[derive(Debug, Clone)]
pub struct Link {
    client: AgentClient,
    hello: Hello,
    /// Successful hellos so far: a new one means the service may have forgotten the node's
    /// state, which must then be reported again.
    hellos: Arc<AtomicU64>,
}

impl Link {
    pub fn new(client: AgentClient, hello: Hello) -> Self {
        Self { client, hello, hellos: Arc::default() }
    }

    pub fn hello(&self) -> Result<Welcome, ClientError> {
        let welcome = self.client.hello(&self.hello)?;
        self.hellos.fetch_add(1, Ordering::SeqCst);
        Ok(welcome)
    }

    /// How many hellos succeeded so far.
    pub fn hellos(&self) -> u64 {
        self.hellos.load(Ordering::SeqCst)
    }

    /// The control-service instance that answered last (`host:port`).
    pub fn instance(&self) -> String {
        self.client.current_address()
    }

    pub fn configuration(
        &self,
        etag: Option<&str>,
        wait: Duration,
    ) -> Result<AgentConfiguration, ClientError> {
        self.again_after_hello(|| self.client.configuration(etag, wait))
    }

    pub fn report(&self, report: &StateReport) -> Result<(), ClientError> {
        self.again_after_hello(|| self.client.report(report))
    }

    pub fn record_blockdevice(&self, record: &BlockDeviceOwnership) -> Result<(), ClientError> {
        self.client.record_blockdevice(record)
    }

    fn again_after_hello<T>(
        &self,
        call: impl Fn() -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        match call() {
            Err(error) if error.status() == Some(409) => {
                log::info!("the control service does not know this node now; saying hello again");
                self.hello()?;
                call()
            }
            other => other,
        }
    }
}

/// Pauses that grow from `first` up to `longest`, for retries that must never loop hot.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    longest: Duration,
    next: Duration,
    growth: f64,
}

impl Backoff {
    /// Each pause twice the one before.
    pub fn new(first: Duration, longest: Duration) -> Self {
        Self::growing(first, longest, 2.0)
    }

    /// Each pause `growth` times the one before.
    pub fn growing(first: Duration, longest: Duration, growth: f64) -> Self {
        Self { first, longest, next: first, growth }
    }

    /// The pause to take now; the next one is longer.
    pub fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = self.next.mul_f64(self.growth).min(self.longest);
        pause
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_limit_and_starts_over_on_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let pauses: Vec<u128> = (0..5).map(|_| backoff.pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.pause(), Duration::from_millis(100));
    }

    #[test]
    fn a_gentle_backoff_grows_by_its_factor() {
        let mut backoff =
            Backoff::growing(Duration::from_millis(8), Duration::from_millis(15), 1.25);
        let pauses: Vec<u128> = (0..4).map(|_| backoff.pause().as_millis()).collect();
        assert_eq!(pauses, [8, 10, 12, 15]);
    }
}
