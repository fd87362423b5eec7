//! A control service with fresh certificates and a client, ready for a test.

use std::path::Path;

use flocker_api::{Client, RawResponse};

use crate::{ClusterCertificates, ControlProcess};

/// Certificates, a running `flocker-control`, and a client presenting `user-alice`.
pub struct RunningControl {
    pub process: ControlProcess,
    pub client: Client,
    /// Dropped last: the process's files live in it.
    pub certificates: ClusterCertificates,
}

impl RunningControl {
    pub fn start(binary: &Path) -> Self {
        Self::start_with(binary, &[])
    }

    /// With extra `flocker-control` options.
    pub fn start_with(binary: &Path, extra: &[&str]) -> Self {
        let certificates = ClusterCertificates::new();
        let data = certificates.root().join("data");
        let process = ControlProcess::start(binary, &certificates, &data, extra)
            .unwrap_or_else(|error| panic!("{error}"));
        let client = certificates.client(process.rest, "alice");
        Self { process, client, certificates }
    }

    /// One request on the REST port; the answer whatever its status.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse {
        self.client.send(method, path, headers, body.map(str::as_bytes)).unwrap_or_else(|error| {
            panic!("{method} {path}: {}\n{}", chain(&error), self.process.log())
        })
    }

    /// The current `X-Configuration-Tag`.
    pub fn tag(&self) -> String {
        let response = self.send("GET", "/v1/configuration/datasets", &[], None);
        response.header("x-configuration-tag").unwrap_or_default().to_owned()
    }
}

/// An error and every cause under it, for a failure message.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text += &format!(": {inner}");
        cause = inner.source();
    }
    text
}
