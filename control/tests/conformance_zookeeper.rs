//! The conformance cases of the Flocker v1 API reference (section 13) against two
//! `flocker-control` services sharing one ZooKeeper store, each REST request going to the next
//! service in turn (the cases: `support/conformance_cases.rs`). Every case must answer as one
//! service does: tags, 412s and read-your-writes hold across the two.
//!
//! Each case has a store of its own (`zk://…/flocker-<uuid>`) in a 3-server ensemble that the
//! cases running at the same time share (`ZooKeeperEnsemble::shared`): starting an ensemble
//! per case would cost more than a second of both cores each time.
//!
//! The agents of the cases call one service's agent port, as a real agent sticks to one; the
//! other service mirrors what they said through ZooKeeper (eventually consistent), so a case
//! reading `/v1/state/*` after an agent's call polls for up to
//! [`RunningPair::SOFT_STATE_DELAY`] until both services show it.

#[path = "support/conformance_cases.rs"]
mod cases;

use std::net::SocketAddr;
use std::time::Duration;

use flocker_api::RawResponse;
use flocker_testkit::{ClusterCertificates, RunningPair};

fn start() -> impl cases::Control {
    RunningPair::start(env!("CARGO_BIN_EXE_flocker-control").as_ref(), &[])
}

impl cases::Control for RunningPair {
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse {
        RunningPair::send(self, method, path, headers, body)
    }

    fn tag(&self) -> String {
        RunningPair::tag(self)
    }

    fn certificates(&self) -> &ClusterCertificates {
        &self.certificates
    }

    fn agent_address(&self) -> SocketAddr {
        self.processes[0].agent
    }

    fn rest_addresses(&self) -> Vec<SocketAddr> {
        self.processes.iter().map(|process| process.rest).collect()
    }

    fn soft_state_delay(&self) -> Duration {
        RunningPair::SOFT_STATE_DELAY
    }
}
