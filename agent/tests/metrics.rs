//! The agent's Prometheus metrics, scraped from real agents of a real cluster: the steps a
//! volume takes from its creation to its destruction on real loop devices (root), a step that
//! fails, reports and polls; served from `agent.yml` or `--metrics-address`, off unless asked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flocker_api::DatasetId;
use flocker_testkit::metrics::{Scrape, listening_addresses, plain_request};
use flocker_testkit::{BackendKind, LocalCluster, require_root};

const STEPS: &str = "flocker_agent_steps_total";
const STEP_DURATION_COUNT: &str = "flocker_agent_step_duration_seconds_count";

/// Scrapes `metrics` until `ready` holds of a scrape, for at most 60 s; that scrape.
fn scrape_until(
    cluster: &LocalCluster,
    metrics: SocketAddr,
    what: &str,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scrape = Scrape::of(metrics).unwrap_or_else(|e| panic!("{e}"));
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}\n{}",
            scrape.text,
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn steps(scrape: &Scrape, step: &str, outcome: &str) -> f64 {
    scrape.value(STEPS, &[("step", step), ("outcome", outcome)]).unwrap_or(0.0)
}

#[test]
fn each_step_of_a_volume_from_create_to_destroy_is_counted_and_timed_a_failed_one_too() {
    require_root();
    let mut cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let metrics = cluster.agents[0].serve_metrics().unwrap_or_else(|e| panic!("{e}"));

    // Something in the way of the mount point: the mount fails until it is gone.
    let id = DatasetId::random();
    let in_the_way = cluster.agents[0].mount_point(&id.to_string());
    std::fs::create_dir_all(&cluster.agents[0].mount_root).unwrap();
    std::fs::write(&in_the_way, b"not a directory").unwrap();
    cluster.create_dataset_with_id(0, Some(id)).unwrap();
    scrape_until(&cluster, metrics, "a failed mount", |s| steps(s, "mount", "failed") >= 1.0);
    std::fs::remove_file(&in_the_way).unwrap();
    cluster.wait_mounted(&id, 0);

    cluster.client.delete_dataset(&id, None).unwrap();
    let scrape = scrape_until(&cluster, metrics, "the volume's destruction", |s| {
        steps(s, "destroy", "ok") >= 1.0
    });
    // The loopback backend makes its volume files formatted: no format step.
    assert_eq!(scrape.value(STEP_DURATION_COUNT, &[("step", "format")]), None);
    for step in ["create", "attach", "mount", "unmount", "detach", "destroy"] {
        assert_eq!(steps(&scrape, step, "ok"), 1.0, "{step}:\n{}", scrape.text);
        let failed = steps(&scrape, step, "failed");
        let timed = scrape.expect(STEP_DURATION_COUNT, &[("step", step)]);
        assert_eq!(timed, 1.0 + failed, "{step}: every step is timed, failed or not");
        if step != "mount" {
            assert_eq!(failed, 0.0, "{step}:\n{}", scrape.text);
        }
    }
    let mount_failures = steps(&scrape, "mount", "failed");
    assert!(mount_failures >= 1.0, "{}", scrape.text);
    let buckets = "flocker_agent_step_duration_seconds_bucket";
    let all_mounts = scrape.expect(buckets, &[("step", "mount"), ("le", "+Inf")]);
    assert_eq!(all_mounts, 1.0 + mount_failures);
    assert!(scrape.expect("flocker_agent_step_duration_seconds_sum", &[("step", "create")]) > 0.0);
    let names: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.name == STEPS)
        .map(|s| s.labels["step"].as_str())
        .collect();
    assert!(names.iter().all(|n| !n.contains('-')), "no dataset id is a label: {names:?}");

    // The create, the failed mounts, the mount, the delete: each reported once it happened.
    let reports = "flocker_agent_state_reports_total";
    assert!(scrape.expect(reports, &[("outcome", "sent")]) >= 3.0, "{}", scrape.text);
    assert_eq!(scrape.value(reports, &[("outcome", "refused")]), None, "{}", scrape.text);
    let polls = "flocker_agent_configuration_polls_total";
    assert!(scrape.expect(polls, &[("outcome", "new")]) >= 2.0, "{}", scrape.text);
    let passes = scrape.expect("flocker_agent_convergence_passes_total", &[]);
    assert!(passes >= 6.0 + mount_failures, "{passes} passes:\n{}", scrape.text);
    assert_eq!(scrape.expect("flocker_agent_discovery_failures_total", &[]), 0.0);
}

#[test]
fn agent_metrics_are_off_unless_asked_for() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let agent = &cluster.agents[0];
    let pid = agent.pid().expect("the agent runs");
    // It has said hello, so it is past where it would have started serving them.
    assert_eq!(listening_addresses(pid), Vec::<SocketAddr>::new());
    assert!(!agent.log().contains(flocker_metrics::SERVING), "{}", agent.log());
}

#[test]
fn the_flag_wins_over_agent_yml_and_the_port_serves_only_get_metrics() {
    let mut cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let from_yaml = cluster.agents[0].serve_metrics().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_yaml.ip().to_string(), "127.0.0.1");
    let agent = &mut cluster.agents[0];
    agent.extra_args = vec!["--metrics-address".into(), "127.0.0.2:0".into()];
    let metrics = agent.restart_for_metrics().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metrics.ip().to_string(), "127.0.0.2");
    let pid = agent.pid().expect("the agent runs");
    assert_eq!(listening_addresses(pid), vec![metrics]);

    let scrape = scrape_until(&cluster, metrics, "a report and a configuration", |s| {
        s.value("flocker_agent_state_reports_total", &[("outcome", "sent")]).is_some()
            && s.value("flocker_agent_configuration_polls_total", &[("outcome", "new")]).is_some()
    });
    assert!(scrape.expect("flocker_agent_convergence_passes_total", &[]) >= 1.0);
    assert_eq!(scrape.value(STEPS, &[("step", "create"), ("outcome", "ok")]), None);
    for path in ["/", "/v1/agent/state", "/metrics/x"] {
        assert_eq!(plain_request(metrics, "GET", path).unwrap().status, 404, "{path}");
    }
    assert_eq!(plain_request(metrics, "PUT", "/metrics").unwrap().status, 405);
}
