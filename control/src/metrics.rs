//! The control service's Prometheus metrics, in one registry that `--metrics-address` serves
//! (see `flocker-metrics`). Always counted, served only when asked: a count is an atomic add.
//!
//! Every label value comes from a fixed set — route templates (axum's `MatchedPath`, never the
//! path a client sent), method names, the statuses and [`ApiError`](crate::error::ApiError)
//! kinds the service answers — so no client can make the number of series grow.

use std::fmt;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::AnsweredError;

/// Request latencies, in seconds: a read takes a millisecond, a write an fsync, and an agent's
/// configuration poll waits up to a minute for a change.
const REQUEST_BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Store writes, in seconds: an fsync on a local disk, or a ZooKeeper round trip.
const STORE_BUCKETS: [f64; 13] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Changes one group sync made durable (see `store::group`).
const GROUP_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The route label of a request that matched no route (a 404 from the fallback).
pub const UNMATCHED: &str = "unmatched";

/// Which of the two ports a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The v1 REST API (4523).
    Rest,
    /// The agent API (4524).
    Agent,
}

impl Api {
    fn label(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::Agent => "agent",
        }
    }
}

/// How a store write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreWrite {
    Ok,
    /// A shared store: another control service wrote first; decided again.
    Conflict,
    Failed,
}

/// What the configuration and the cluster state hold, counted when the metrics are scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Datasets that are not deleted.
    pub datasets: usize,
    pub leases: usize,
    /// Nodes whose agents call (those `/v1/state/nodes` lists).
    pub nodes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    api: &'static str,
    method: &'static str,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    api: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RouteLabels>,
    errors: Family<ErrorLabels, Counter>,
    store_writes: Histograms<OutcomeLabels>,
    store_syncs: Histograms<OutcomeLabels>,
    store_sync_changes: Histogram,
    polls_waiting: Gauge,
    datasets: Gauge,
    leases: Gauge,
    nodes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::with_prefix("flocker_control"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS)),
            errors: Family::default(),
            store_writes: Family::new_with_constructor(|| Histogram::new(STORE_BUCKETS)),
            store_syncs: Family::new_with_constructor(|| Histogram::new(STORE_BUCKETS)),
            store_sync_changes: Histogram::new(GROUP_BUCKETS),
            polls_waiting: Gauge::default(),
            datasets: Gauge::default(),
            leases: Gauge::default(),
            nodes: Gauge::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Self {
        let registry = &mut self.registry;
        registry.register(
            "requests",
            "Requests answered, by API (rest, agent), method, route template and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to its answer, by API, method and route template",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        registry.register(
            "errors",
            "Error answers, by API and kind (the ApiError variant)",
            self.errors.clone(),
        );
        registry.register_with_unit(
            "store_write_duration",
            "Time to give one change to the store, by outcome (ok, conflict, failed): with \
             the journal, to write it (store_sync_duration makes it durable); with ZooKeeper, \
             the transaction",
            Unit::Seconds,
            self.store_writes.clone(),
        );
        registry.register_with_unit(
            "store_sync_duration",
            "Time of each fdatasync of the journal, which makes a group of changes durable, by \
             outcome (ok, failed)",
            Unit::Seconds,
            self.store_syncs.clone(),
        );
        registry.register(
            "store_sync_changes",
            "Changes each successful fdatasync of the journal made durable (group commit)",
            self.store_sync_changes.clone(),
        );
        registry.register(
            "agent_polls_waiting",
            "Agents' configuration long-polls waiting for a change now",
            self.polls_waiting.clone(),
        );
        registry.register(
            "datasets",
            "Datasets in the configuration, not deleted",
            self.datasets.clone(),
        );
        registry.register("leases", "Leases in the configuration", self.leases.clone());
        registry.register("nodes", "Nodes whose agents call", self.nodes.clone());
        self
    }

    /// One answered request. `route`: the template it matched, if any.
    pub fn request(
        &self,
        api: Api,
        method: &Method,
        route: Option<&str>,
        status: u16,
        error: Option<&'static str>,
        took: Duration,
    ) {
        let (api, method) = (api.label(), method_label(method));
        let route = route.unwrap_or(UNMATCHED).to_owned();
        let labels = RouteLabels { api, method, route };
        self.request_duration.get_or_create(&labels).observe(took.as_secs_f64());
        let RouteLabels { route, .. } = labels;
        self.requests.get_or_create(&RequestLabels { api, method, route, status }).inc();
        if let Some(kind) = error {
            self.errors.get_or_create(&ErrorLabels { api, kind }).inc();
        }
    }

    /// One store write and how long it took.
    pub fn store_write(&self, outcome: StoreWrite, took: Duration) {
        let outcome = match outcome {
            StoreWrite::Ok => "ok",
            StoreWrite::Conflict => "conflict",
            StoreWrite::Failed => "failed",
        };
        self.store_writes.get_or_create(&OutcomeLabels { outcome }).observe(took.as_secs_f64());
    }

    /// One sync of the journal: how long it took, how many changes it made durable.
    pub fn store_sync(&self, took: Duration, changes: u64, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.store_syncs.get_or_create(&OutcomeLabels { outcome }).observe(took.as_secs_f64());
        if ok {
            self.store_sync_changes.observe(changes as f64);
        }
    }

    /// Counts an agent's poll as waiting until the guard is dropped.
    pub fn poll_waiting(&self) -> PollWaiting {
        self.polls_waiting.inc();
        PollWaiting(self.polls_waiting.clone())
    }

    /// The metrics as they are now, with `tally` as the sizes of the configuration and cluster.
    pub fn render(&self, tally: Tally) -> Result<String, fmt::Error> {
        let gauge = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
        self.datasets.set(gauge(tally.datasets));
        self.leases.set(gauge(tally.leases));
        self.nodes.set(gauge(tally.nodes));
        flocker_metrics::encode(&self.registry)
    }
}

/// A poll counted as waiting; counted no more once dropped, however the poll ends.
pub struct PollWaiting(Gauge);

impl Drop for PollWaiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the request middleware needs: the metrics, and which API it records.
#[derive(Clone)]
pub struct Recorder {
    pub metrics: std::sync::Arc<Metrics>,
    pub api: Api,
}

/// Middleware (added with `Router::layer`, so it sees the matched route, the fallback's 404s
/// and the 500s of panics): records each request once it is answered.
pub async fn record_request(
    State(recorder): State<Recorder>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    let error = response.extensions().get::<AnsweredError>().map(|answered| answered.0);
    let status = response.status().as_u16();
    recorder.metrics.request(
        recorder.api,
        &method,
        route.as_deref(),
        status,
        error,
        started.elapsed(),
    );
    response
}

/// The method's name if it is a standard one: a client may send any token as a method.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [&str; 9] =
        ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];
    STANDARD.into_iter().find(|name| *name == method.as_str()).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_of_the_clients_own_making_is_counted_as_other() {
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let made_up = Method::from_bytes(b"FROB-8d1c2f").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }

    #[test]
    fn a_request_is_counted_with_its_route_template_and_timed_and_its_error_counted() {
        let metrics = Metrics::new();
        let route = Some("/v1/configuration/datasets/{dataset_id}");
        let took = Duration::from_millis(3);
        metrics.request(Api::Rest, &Method::DELETE, route, 404, Some("dataset_not_found"), took);
        metrics.request(Api::Agent, &Method::GET, None, 404, Some("no_route"), took);
        let text = metrics.render(Tally { datasets: 2, leases: 1, nodes: 3 }).unwrap();
        for line in [
            "flocker_control_requests_total{api=\"rest\",method=\"DELETE\",route=\"/v1/configuration/datasets/{dataset_id}\",status=\"404\"} 1",
            "flocker_control_request_duration_seconds_count{api=\"rest\",method=\"DELETE\",route=\"/v1/configuration/datasets/{dataset_id}\"} 1",
            "flocker_control_request_duration_seconds_bucket{le=\"0.005\",api=\"rest\",method=\"DELETE\",route=\"/v1/configuration/datasets/{dataset_id}\"} 1",
            "flocker_control_request_duration_seconds_bucket{le=\"0.0025\",api=\"rest\",method=\"DELETE\",route=\"/v1/configuration/datasets/{dataset_id}\"} 0",
            "flocker_control_errors_total{api=\"rest\",kind=\"dataset_not_found\"} 1",
            "flocker_control_requests_total{api=\"agent\",method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            "flocker_control_errors_total{api=\"agent\",kind=\"no_route\"} 1",
            "flocker_control_datasets 2",
            "flocker_control_leases 1",
            "flocker_control_nodes 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
    }

    #[test]
    fn a_poll_counts_as_waiting_until_its_guard_is_dropped() {
        let metrics = Metrics::new();
        let waiting = |metrics: &Metrics| {
            let text = metrics.render(Tally::default()).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("flocker_control_agent_polls_waiting "))
                .map(str::to_owned)
        };
        let first = metrics.poll_waiting();
        let second = metrics.poll_waiting();
        assert_eq!(waiting(&metrics).as_deref(), Some("2"));
        drop(first);
        drop(second);
        assert_eq!(waiting(&metrics).as_deref(), Some("0"));
    }
}
