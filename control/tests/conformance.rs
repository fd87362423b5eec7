//! The conformance cases of the Flocker v1 API reference (section 13) against one
//! `flocker-control` on its journal store (the cases: `support/conformance_cases.rs`).

#[path = "support/conformance_cases.rs"]
mod cases;

use std::net::SocketAddr;
use std::time::Duration;

use flocker_api::RawResponse;
use flocker_testkit::{ClusterCertificates, RunningControl};

fn start() -> impl cases::Control {
    RunningControl::start(env!("CARGO_BIN_EXE_flocker-control").as_ref())
}

impl cases::Control for RunningControl {
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse {
        RunningControl::send(self, method, path, headers, body)
    }

    fn tag(&self) -> String {
        RunningControl::tag(self)
    }

    fn certificates(&self) -> &ClusterCertificates {
        &self.certificates
    }

    fn agent_address(&self) -> SocketAddr {
        self.process.agent
    }

    fn rest_addresses(&self) -> Vec<SocketAddr> {
        vec![self.process.rest]
    }

    /// One service shows what an agent said at once.
    fn soft_state_delay(&self) -> Duration {
        Duration::ZERO
    }
}
