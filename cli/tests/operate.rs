//! `flockerctl`'s operator commands, run as the real binary against a real control service and
//! real dataset agents (loopback volumes where the data path matters, so as root, as CI runs).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flocker_api::client::TlsLibrary;
use flocker_api::{AcquireLease, Client, ClientConfig, DatasetId};
use flocker_testkit::{BackendKind, ClusterCertificates, LocalCluster, Storage, closed_address};
use serde_json::Value;

const FLOCKERCTL: &str = env!("CARGO_BIN_EXE_flockerctl");

// ---------------------------------------------------------------- helpers

/// `flockerctl` as an operator of `cluster` runs it: the API user `ops`'s certificate in a
/// directory given by `--certs-path`, the control service by `--control-service`/`--control-port`.
fn flockerctl(cluster: &LocalCluster, args: &[&str]) -> Output {
    cluster.certificates.user("ops");
    let port = cluster.control.rest.port().to_string();
    let certs = cluster.certificates.authority();
    let mut command = bare();
    command.args(["--certs-path", &certs.to_string_lossy(), "--user", "ops"]);
    command.args(["--control-service", "127.0.0.1", "--control-port", &port]);
    run(command.args(args))
}

/// `flockerctl` with none of the variables that could stand in for its options.
fn bare() -> Command {
    let mut command = Command::new(FLOCKERCTL);
    for variable in [
        "FLOCKER_CERTS_PATH",
        "FLOCKER_USER",
        "FLOCKER_CONTROL_SERVICE",
        "FLOCKER_CONTROL_PORT",
        "RUST_LOG",
    ] {
        command.env_remove(variable);
    }
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("cannot run flockerctl")
}

/// Runs it and requires success; its stdout.
fn succeed(cluster: &LocalCluster, args: &[&str]) -> String {
    let output = flockerctl(cluster, args);
    assert!(
        output.status.success(),
        "flockerctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one line a failure prints (without "flockerctl: ").
fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "it succeeded: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("flockerctl: ")).collect();
    assert_eq!(lines.len(), 1, "not one error line:\n{stderr}");
    lines[0].trim_start_matches("flockerctl: ").to_owned()
}

fn fail(cluster: &LocalCluster, args: &[&str]) -> String {
    one_line_error(&flockerctl(cluster, args))
}

fn json(cluster: &LocalCluster, args: &[&str]) -> Value {
    let text = succeed(cluster, args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}):\n{text}"))
}

/// The listed dataset with this `name`.
fn listed<'a>(list: &'a Value, name: &str) -> &'a Value {
    let rows = list.as_array().expect("a JSON array");
    rows.iter()
        .find(|row| row["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

fn prefix(uuid: impl ToString) -> String {
    uuid.to_string()[..8].to_owned()
}

// ---------------------------------------------------------------- the life of a dataset

#[test]
fn create_list_move_list_destroy_each_waits_until_it_is_real() {
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &[]);
    let (a, b) = (cluster.node(0), cluster.node(1));

    let created = succeed(
        &cluster,
        &["create", "--node", &prefix(a), "-m", "name=orders,team=shop", "-s", "64M"],
    );
    assert!(created.contains("mounted on node"), "{created}");
    let list = json(&cluster, &["list", "--json"]);
    let row = listed(&list, "orders");
    assert_eq!(row["status"], "mounted");
    assert_eq!(row["primary"], a.to_string());
    assert_eq!(row["maximum_size"], 64 << 20);
    assert_eq!(row["metadata"]["team"], "shop");
    let id: DatasetId = row["dataset_id"].as_str().expect("id").parse().expect("uuid");
    let path = row["path"].as_str().expect("a mount path").to_owned();
    std::fs::write(Path::new(&path).join("orders.db"), "42 orders").expect("write to the volume");
    assert_eq!(
        cluster.mounted_path(&id, 0).as_deref(),
        Some(Path::new(&path)),
        "the agent's own report"
    );

    let table = succeed(&cluster, &["list", "--human"]);
    let line = table.lines().find(|l| l.starts_with(&prefix(id))).expect("a row for it");
    for cell in ["64.0M", "name=orders,team=shop", "mounted", &prefix(a), "127.0.0.1"] {
        assert!(line.contains(cell), "{cell} missing from {line:?}");
    }

    let moved = succeed(&cluster, &["move", "--dataset", "orders", "--destination", &prefix(b)]);
    assert!(moved.contains("mounted on node"), "{moved}");
    let row = listed(&json(&cluster, &["list", "--json"]), "orders").clone();
    assert_eq!(
        (row["status"].as_str(), row["primary"].as_str()),
        (Some("mounted"), Some(&*b.to_string()))
    );
    let moved_path = cluster.mounted_path(&id, 1).expect("mounted on node B");
    assert_eq!(
        std::fs::read_to_string(moved_path.join("orders.db")).expect("read on B"),
        "42 orders"
    );

    let destroyed = succeed(&cluster, &["destroy", "--dataset", &prefix(id)]);
    assert!(destroyed.contains("gone"), "{destroyed}");
    assert!(cluster.states(&id).is_empty(), "an agent still reports it");
    assert!(!cluster.volume_path(&id, Some(1)).exists(), "the volume file is still there");
    assert_eq!(json(&cluster, &["list", "--json"]), serde_json::json!([]));
    assert_eq!(
        listed(&json(&cluster, &["ls", "--deleted", "--json"]), "orders")["status"],
        "deleted"
    );
}

#[test]
fn list_nodes_shows_every_node_with_its_address() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 2, &[]);
    let nodes = json(&cluster, &["list-nodes", "--json"]);
    let mut uuids: Vec<&str> =
        nodes.as_array().expect("array").iter().filter_map(|n| n["uuid"].as_str()).collect();
    uuids.sort_unstable();
    let mut expected = vec![cluster.node(0).to_string(), cluster.node(1).to_string()];
    expected.sort_unstable();
    assert_eq!(uuids, expected);
    let table = succeed(&cluster, &["status", "--long"]);
    assert!(table.starts_with("SERVER"), "{table}");
    for uuid in &expected {
        assert!(
            table.lines().any(|l| l.starts_with(uuid.as_str()) && l.ends_with("127.0.0.1")),
            "{table}"
        );
    }
}

#[test]
fn no_wait_returns_before_the_volume_exists() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let out = succeed(
        &cluster,
        &["create", "--node", &prefix(cluster.node(0)), "-m", "name=quick", "--no-wait"],
    );
    assert!(out.contains("not waiting"), "{out}");
    assert!(!out.contains("mounted on node"), "{out}");
}

// ---------------------------------------------------------------- leases

#[test]
fn a_lease_blocks_move_and_destroy_until_it_is_released() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 2, &[]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    succeed(&cluster, &["create", "--node", &prefix(a), "-m", "name=held"]);
    let acquired = succeed(&cluster, &["leases", "acquire", "held"]);
    assert!(acquired.contains("never lapses"), "{acquired}");

    let leases = json(&cluster, &["leases", "--json"]);
    assert_eq!(leases[0]["node_uuid"], a.to_string());
    assert_eq!(leases[0]["name"], "held");
    let table = succeed(&cluster, &["leases", "list"]);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("held") && l.contains("never")),
        "{table}"
    );

    let refusal = fail(&cluster, &["move", "-d", "held", "-t", &prefix(b)]);
    assert!(refusal.contains(&format!("in use on node {}", prefix(a))), "{refusal}");
    assert!(refusal.contains("flockerctl leases release"), "{refusal}");
    let refusal = fail(&cluster, &["destroy", "-d", "held"]);
    assert!(refusal.contains("leases release"), "{refusal}");
    assert_eq!(
        listed(&json(&cluster, &["list", "--json"]), "held")["primary"],
        a.to_string(),
        "nothing changed"
    );

    let taken = fail(&cluster, &["leases", "acquire", "held", "--node", &prefix(b)]);
    assert!(taken.contains(&format!("leased to node {}", prefix(a))), "{taken}");

    // The way the isolator's refusal spells it: `leases release --dataset <id>`.
    let id = listed(&json(&cluster, &["list", "--json"]), "held")["dataset_id"]
        .as_str()
        .map(str::to_owned);
    let released = succeed(&cluster, &["leases", "release", "--dataset", &id.expect("id")]);
    assert!(released.contains("released"), "{released}");
    assert_eq!(json(&cluster, &["leases", "--json"]), serde_json::json!([]));
    succeed(&cluster, &["move", "-d", "held", "-t", &prefix(b)]);
    assert_eq!(listed(&json(&cluster, &["list", "--json"]), "held")["status"], "mounted");
}

#[test]
fn a_lease_can_lapse() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    succeed(&cluster, &["create", "--node", &prefix(cluster.node(0)), "-m", "name=brief"]);
    let out = succeed(&cluster, &["leases", "acquire", "brief", "--expires", "60"]);
    assert!(out.contains("lapses in 60 s"), "{out}");
    let expires = json(&cluster, &["leases", "--json"])[0]["expires"].as_f64().expect("expires");
    assert!(expires > 0.0 && expires <= 60.0, "{expires}");
    assert!(succeed(&cluster, &["leases", "release", "brief"]).contains("released"));
    let none = fail(&cluster, &["leases", "release", "brief"]);
    assert!(none.contains("no lease is held"), "{none}");
}

// ---------------------------------------------------------------- errors: one line, nothing changed

#[test]
fn unknown_and_ambiguous_prefixes_say_what_to_do() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    for id in ["abc00000-0000-4000-8000-000000000001", "abc00000-0000-4000-8000-000000000002"] {
        cluster.create_dataset_with_id(0, Some(id.parse().expect("uuid"))).expect("create");
    }
    let ambiguous = fail(&cluster, &["destroy", "--dataset", "abc"]);
    assert!(ambiguous.contains("'abc' could be any of 2 datasets"), "{ambiguous}");
    let unknown =
        fail(&cluster, &["move", "--dataset", "fff", "--destination", &prefix(cluster.node(0))]);
    assert!(unknown.contains("`flockerctl list` shows them"), "{unknown}");
    let no_node = fail(&cluster, &["create", "--node", "zzz"]);
    assert!(no_node.contains("no node") && no_node.contains("list-nodes"), "{no_node}");
    assert_eq!(
        json(&cluster, &["list", "--json"]).as_array().map(Vec::len),
        Some(2),
        "nothing changed"
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let node = prefix(cluster.node(0));
    let decimal = fail(&cluster, &["create", "--node", &node, "--size", "10GB"]);
    assert!(decimal.contains("10GiB"), "{decimal}");
    let pair = fail(&cluster, &["create", "--node", &node, "--metadata", "name"]);
    assert!(pair.contains("key=value"), "{pair}");
    succeed(&cluster, &["create", "--node", &node, "-m", "name=taken"]);
    let twice = fail(&cluster, &["create", "--node", &node, "-m", "name=taken"]);
    assert!(twice.contains("a dataset called taken exists already"), "{twice}");
    let small = fail(&cluster, &["create", "--node", &node, "--size", "1M"]);
    assert!(small.contains("400"), "{small}");
    assert_eq!(
        json(&cluster, &["list", "--json"]).as_array().map(Vec::len),
        Some(1),
        "nothing changed"
    );
}

#[test]
fn a_wait_that_times_out_names_the_state_it_was_stuck_in() {
    let mut cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    cluster.agents[0].kill();
    let started = Instant::now();
    let stuck = fail(&cluster, &["create", "--node", &prefix(cluster.node(0)), "--timeout", "1"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(stuck.starts_with("timed out after 1 s: dataset"), "{stuck}");
    assert!(stuck.contains("not reported by any agent yet"), "{stuck}");
    assert!(stuck.contains("is flocker-dataset-agent running on node"), "{stuck}");
}

#[test]
fn connection_failures_say_what_to_check() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port().to_string()
    };
    let refused = fail(&cluster, &["list", "--control-port", &closed]);
    assert!(
        refused.contains("nothing answers at 127.0.0.1:")
            && refused.contains("flocker-control running"),
        "{refused}"
    );

    let missing = fail(&cluster, &["list", "--user", "nobody"]);
    assert!(
        missing.contains("nobody.crt") && missing.contains("create-api-certificate nobody"),
        "{missing}"
    );

    // Another cluster's user: the service refuses it. Our cluster.crt with their user is the
    // same thing seen from the other side: we do not trust their service.
    let other = ClusterCertificates::new();
    other.user("ops");
    let port = cluster.control.rest.port().to_string();
    let theirs = |certs: &Path| {
        let mut command = bare();
        command.args(["--certs-path", &certs.to_string_lossy(), "--user", "ops", "list"]);
        one_line_error(&run(command.args([
            "--control-service",
            "127.0.0.1",
            "--control-port",
            &port,
        ])))
    };
    let untrusted = theirs(&other.authority());
    assert!(
        untrusted.contains("not signed by") && untrusted.contains("cluster.crt"),
        "{untrusted}"
    );
    let mixed = tempfile::tempdir().expect("tempdir");
    std::fs::copy(cluster.certificates.cluster_certificate(), mixed.path().join("cluster.crt"))
        .expect("copy");
    for file in ["ops.crt", "ops.key"] {
        std::fs::copy(other.authority().join(file), mixed.path().join(file)).expect("copy");
    }
    let refused_certificate = theirs(mixed.path());
    assert!(refused_certificate.contains("refused our certificate"), "{refused_certificate}");
}

#[test]
fn environment_variables_and_agent_yml_stand_in_for_the_options() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    cluster.certificates.user("ops");
    let certs = cluster.certificates.authority();
    let port = cluster.control.rest.port().to_string();
    let by_environment = run(bare()
        .arg("list-nodes")
        .env("FLOCKER_CERTS_PATH", &certs)
        .env("FLOCKER_USER", "ops")
        .env("FLOCKER_CONTROL_SERVICE", "127.0.0.1")
        .env("FLOCKER_CONTROL_PORT", &port));
    assert!(by_environment.status.success(), "{}", String::from_utf8_lossy(&by_environment.stderr));
    assert!(String::from_utf8_lossy(&by_environment.stdout).contains(&prefix(cluster.node(0))));

    // On an agent node, agent.yml beside the certificates says where the control service is.
    std::fs::write(
        certs.join("agent.yml"),
        "version: 1\ncontrol-service: {hostname: 127.0.0.1, port: 4524}\n",
    )
    .expect("agent.yml");
    let by_agent_yml = run(bare()
        .args(["list-nodes", "--user", "ops", "--control-port", &port])
        .env("FLOCKER_CERTS_PATH", &certs));
    assert!(by_agent_yml.status.success(), "{}", String::from_utf8_lossy(&by_agent_yml.stderr));
    std::fs::remove_file(certs.join("agent.yml")).expect("rm agent.yml");
    let nowhere = one_line_error(&run(bare()
        .args(["list", "--user", "ops"])
        .env("FLOCKER_CERTS_PATH", &certs)));
    assert!(nowhere.contains("--control-service") && nowhere.contains("agent.yml"), "{nowhere}");
}

#[test]
fn version_names_both_sides() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let out = succeed(&cluster, &["version"]);
    assert!(out.contains(&format!("flockerctl {}", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains("control service 1.15.0+flocker-rs."), "{out}");
}

#[test]
fn leases_held_by_the_api_are_listed_with_their_node() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    let dataset = cluster.create_dataset(0);
    let lease =
        AcquireLease { dataset_id: dataset.dataset_id, node_uuid: cluster.node(0), expires: None };
    cluster.client.acquire_lease(&lease).expect("lease");
    let table = succeed(&cluster, &["leases", "--long"]);
    let line = table.lines().nth(1).expect("a row");
    assert!(line.starts_with(&dataset.dataset_id.to_string()), "{table}");
    assert!(line.contains(&format!("{} (127.0.0.1)", cluster.node(0))), "{table}");
}

// ---------------------------------------------------------------- problems the agents report

/// Issue 14: a dataset moved to a node that cannot see its volume is listed as refused, with
/// the agent's words under the table; once it is back, the listing is as it always was.
#[test]
fn list_shows_why_an_agent_leaves_a_dataset_as_it_is() {
    let cluster =
        LocalCluster::start_on_storage(BackendKind::DirectorySymlink, 2, Storage::PerNode);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let id = cluster.create_dataset(0).dataset_id;
    cluster.wait_mounted(&id, 0);
    // A move there stops with the agent's words, not after --timeout.
    let refused =
        fail(&cluster, &["move", "--dataset", &id.to_string(), "--destination", &b.to_string()]);
    let said = format!("the volume of dataset {id} is not visible on this node");
    assert!(
        refused.contains("'s agent will not mount it: ") && refused.contains(&said),
        "{refused}"
    );

    let table = succeed(&cluster, &["list"]);
    let row = table.lines().find(|l| l.starts_with(&prefix(id))).expect("a row for it");
    assert!(row.contains("refused") && row.contains(&prefix(b)), "{table}");
    let under = table.lines().skip_while(|l| !l.is_empty()).collect::<Vec<_>>();
    assert_eq!(under.len(), 2, "a blank line, then one line per problem:\n{table}");
    assert!(under[1].starts_with(&format!("{}: {said}", prefix(id))), "{table}");
    assert!(under[1].contains("is root_path shared with the node that had it?"), "{table}");
    let row = listed(&json(&cluster, &["list", "--json"]), "test").clone();
    assert_eq!(row["status"], "refused");
    assert!(row["problem"].as_str().is_some_and(|p| p.starts_with(&said)), "{row}");

    cluster.client.move_dataset(&id, &a, None).expect("move back");
    cluster.wait_mounted(&id, 0);
    let table = succeed(&cluster, &["list"]);
    assert_eq!(table.lines().count(), 2, "the header and the row, nothing under:\n{table}");
    assert!(listed(&json(&cluster, &["list", "--json"]), "test").get("problem").is_none());
}

// ---------------------------------------------------------------- a Flocker 1.x cluster

/// `flockerctl list` asks for problems and pushes with the client's `dataset_problems` and
/// `dataset_transfers`; a Flocker 1.x service has no such endpoints, and the client reads their
/// 404s as "nothing to show".
#[test]
fn a_flocker_1_service_has_no_problems_nor_pushes_to_show() {
    let directory = tempfile::tempdir().expect("tempdir");
    let certificates = flocker_testkit::openssl::flocker_1_certificates(directory.path());
    let service = flocker_testkit::FlockerOneControlService::start(&certificates);
    let mut config = ClientConfig::from_directory(
        directory.path(),
        "plugin",
        "127.0.0.1",
        service.address.port(),
    );
    config.tls = TlsLibrary::OpenSsl;
    let client = Client::new(&config).expect("a client");
    assert_eq!(client.dataset_problems().expect("an answer"), None);
    assert_eq!(client.dataset_transfers().expect("an answer"), None);
}

#[test]
fn a_flocker_1_cluster_with_x509_v1_certificates_is_reached_with_openssl() {
    let directory = tempfile::tempdir().expect("tempdir");
    let certificates = flocker_testkit::openssl::flocker_1_certificates(directory.path());
    let service = flocker_testkit::FlockerOneControlService::start(&certificates);
    let port = service.address.port().to_string();
    let version = |tls: &str| {
        let mut command = bare();
        command.args(["version", "--certs-path", &directory.path().to_string_lossy()]);
        command.args([
            "--user",
            "plugin",
            "--control-service",
            "127.0.0.1",
            "--control-port",
            &port,
        ]);
        run(command.args(["--tls-library", tls]))
    };
    let openssl = version("openssl");
    let stdout = String::from_utf8_lossy(&openssl.stdout);
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));
    assert!(stdout.contains("control service 1.15.0 at 127.0.0.1:"), "{stdout}");
    let refused = one_line_error(&version("rustls"));
    assert!(refused.contains("X.509 v1") && refused.contains("openssl"), "{refused}");
}

#[test]
fn several_control_service_instances_are_tried_in_turn_and_the_one_that_answered_is_named() {
    let cluster = LocalCluster::start(BackendKind::DirectorySymlink, 1, &[]);
    cluster.certificates.user("ops");
    let port = cluster.control.rest.port();
    let dead = closed_address("127.0.0.41", port);
    let certs = cluster.certificates.authority();
    let with_hosts = |hosts: &str, args: &[&str]| {
        let mut command = bare();
        command.args(["--certs-path", &certs.to_string_lossy(), "--user", "ops"]);
        command.args(["--control-service", hosts, "--control-port", &port.to_string()]);
        run(command.args(args))
    };
    let answered =
        format!("note: the control service at 127.0.0.1:{port} answered; {dead} did not");

    let listed = with_hosts("127.0.0.41, 127.0.0.1", &["ls"]);
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(listed.status.success(), "{stderr}");
    assert_eq!(stderr.trim(), answered, "one line");
    let first = with_hosts("127.0.0.1,127.0.0.41", &["ls"]);
    assert!(first.status.success() && first.stderr.is_empty(), "no note when the first answers");

    let other_dead = closed_address("127.0.0.42", port);
    let nobody = one_line_error(&with_hosts("127.0.0.41,127.0.0.42", &["list"]));
    assert!(
        nobody.contains(&format!("{dead} (connection refused); {other_dead} (connection refused)")),
        "{nobody}"
    );
    assert!(nobody.contains("is flocker-control running there"), "{nobody}");
    let empty = one_line_error(&with_hosts("127.0.0.1,,127.0.0.41", &["list"]));
    assert!(
        empty.contains("host 2 of 3 is empty") && empty.contains("--control-service"),
        "{empty}"
    );

    // agent.yml may name them as a YAML list.
    std::fs::write(
        certs.join("agent.yml"),
        "version: 1\ncontrol-service: {hostname: [127.0.0.41, 127.0.0.1], port: 4524}\n",
    )
    .expect("agent.yml");
    let by_agent_yml = run(bare()
        .args(["list-nodes", "--user", "ops", "--control-port", &port.to_string()])
        .env("FLOCKER_CERTS_PATH", &certs));
    std::fs::remove_file(certs.join("agent.yml")).expect("rm agent.yml");
    assert!(by_agent_yml.status.success(), "{}", String::from_utf8_lossy(&by_agent_yml.stderr));
    assert_eq!(String::from_utf8_lossy(&by_agent_yml.stderr).trim(), answered);
}
