//! The conformance cases of the Flocker v1 API reference (section 13), one test each, against
//! the real `flocker-control` over mutual TLS. Written once against [`Control`]; each test file
//! that includes this module provides `start()`: `tests/conformance.rs` one service on its
//! journal, `tests/conformance_zookeeper.rs` two services sharing a ZooKeeper store, the REST
//! requests alternating between them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flocker_api::agent_protocol::{HELLO_PATH, STATE_PATH};
use flocker_api::{NodeUuid, RawResponse};
use flocker_testkit::{ClusterCertificates, NodeCertificate, tls_handshake};
use serde_json::{Value, json};

use super::start;

const TAG: &str = "x-configuration-tag";
const IF_MATCHES: &str = "x-if-configuration-matches";
const DATASETS: &str = "/v1/configuration/datasets";
const LEASES: &str = "/v1/configuration/leases";

/// What the cases need of the service(s) under test.
pub trait Control {
    /// One request on a REST port (with two services, the next in turn); the answer whatever
    /// its status.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse;

    /// The current `X-Configuration-Tag`.
    fn tag(&self) -> String;

    fn certificates(&self) -> &ClusterCertificates;

    /// The agent port the cases' agents call: one service's, as a real agent sticks to one.
    fn agent_address(&self) -> SocketAddr;

    /// Every service's REST port.
    fn rest_addresses(&self) -> Vec<SocketAddr>;

    /// How long what an agent said may take to show on every REST port: nothing for one
    /// service; with two, the agents' soft state reaches the other one through ZooKeeper's
    /// watches, so it is eventually consistent (normally within milliseconds).
    fn soft_state_delay(&self) -> Duration;
}

fn node() -> String {
    NodeUuid::random().to_string()
}

fn json_of(response: &RawResponse) -> Value {
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json().unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", response.body))
}

/// POSTs `body` to the create endpoint and returns (status, JSON).
fn create(control: &impl Control, body: Value) -> (u16, Value) {
    let response = control.send("POST", DATASETS, &[], Some(&body.to_string()));
    (response.status, json_of(&response))
}

fn created(control: &impl Control, body: Value) -> Value {
    let (status, dataset) = create(control, body);
    assert_eq!(status, 201, "{dataset}");
    dataset
}

fn list(control: &impl Control) -> Value {
    json_of(&control.send("GET", DATASETS, &[], None))
}

fn description(value: &Value) -> &str {
    value["description"].as_str().unwrap_or_else(|| panic!("no description in {value}"))
}

fn assert_lowercase_v4(id: &str) {
    assert!(flocker_api::ids::is_v4_pattern(id), "{id}");
    assert_eq!(id, id.to_lowercase());
}

/// GETs `path` until every service in turn answers `expected`, or [`Control::soft_state_delay`]
/// is over (with one service, a single GET). The answer for the caller to compare: `expected`
/// once every service gave it, else the last answer that differed.
fn read_settled(control: &impl Control, path: &str, expected: &Value) -> Value {
    let services = control.rest_addresses().len();
    let deadline = Instant::now() + control.soft_state_delay();
    let (mut in_a_row, mut differed) = (0, None);
    loop {
        let found = json_of(&control.send("GET", path, &[], None));
        if found == *expected {
            in_a_row += 1;
        } else {
            (in_a_row, differed) = (0, Some(found));
        }
        if in_a_row == services {
            return expected.clone();
        }
        if let Some(differed) = differed.as_ref().filter(|_| Instant::now() >= deadline) {
            return differed.clone();
        }
        if in_a_row == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn case_01_version_has_only_a_non_empty_flocker_key() {
    let control = start();
    let response = control.send("GET", "/v1/version", &[], None);
    assert_eq!(response.status, 200);
    let body = json_of(&response);
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 1, "{body}");
    assert!(!object["flocker"].as_str().unwrap().is_empty());
}

#[test]
fn case_02_an_empty_cluster_lists_no_datasets_and_has_a_tag() {
    let control = start();
    let response = control.send("GET", DATASETS, &[], None);
    assert_eq!(response.status, 200);
    assert_eq!(json_of(&response), json!([]));
    assert!(!response.header(TAG).unwrap_or_default().is_empty());
}

#[test]
fn case_03_a_create_with_only_primary_makes_a_complete_dataset_without_size() {
    let control = start();
    let primary = node();
    let dataset = created(&control, json!({"primary": primary}));
    assert_lowercase_v4(dataset["dataset_id"].as_str().unwrap());
    assert_eq!(dataset["primary"], json!(primary));
    assert_eq!(dataset["metadata"], json!({}));
    assert_eq!(dataset["deleted"], json!(false));
    assert!(dataset.get("maximum_size").is_none(), "{dataset}");
}

#[test]
fn case_04_two_creates_make_two_datasets() {
    let control = start();
    let first = created(&control, json!({"primary": node()}));
    let second = created(&control, json!({"primary": node()}));
    assert_ne!(first["dataset_id"], second["dataset_id"]);
    assert_eq!(list(&control).as_array().unwrap().len(), 2);
}

#[test]
fn case_05_an_empty_object_breaks_the_schema() {
    let control = start();
    let (status, body) = create(&control, json!({}));
    assert_eq!(status, 400);
    assert_eq!(description(&body), "The provided JSON doesn't match the required schema.");
    assert!(!body["errors"].as_array().unwrap().is_empty());
}

#[test]
fn case_06_an_unknown_key_breaks_the_schema() {
    let control = start();
    let (status, body) = create(&control, json!({"primary": node(), "junk": 1}));
    assert_eq!(status, 400);
    assert_eq!(description(&body), "The provided JSON doesn't match the required schema.");
    assert_eq!(list(&control), json!([]));
}

#[test]
fn case_07_a_body_that_is_not_json_cannot_be_decoded() {
    let control = start();
    for raw in ["not json", ""] {
        let response = control.send("POST", DATASETS, &[], Some(raw));
        assert_eq!(response.status, 400);
        let body = json_of(&response);
        assert!(description(&body).starts_with("The request body could not be decoded"), "{body}");
    }
}

#[test]
fn case_08_maximum_size_is_at_least_64_mib_and_a_multiple_of_1024() {
    let control = start();
    for refused in [json!(67108863), json!(67108865), json!(1.5e9), json!(true)] {
        let (status, body) = create(&control, json!({"primary": node(), "maximum_size": refused}));
        assert_eq!(status, 400, "{refused}: {body}");
    }
    let dataset = created(&control, json!({"primary": node(), "maximum_size": 67108864}));
    assert_eq!(dataset["maximum_size"], json!(67108864));
}

#[test]
fn case_09_a_null_maximum_size_is_left_out_of_the_answer() {
    let control = start();
    let dataset = created(&control, json!({"primary": node(), "maximum_size": null}));
    assert!(dataset.get("maximum_size").is_none(), "{dataset}");
}

#[test]
fn case_10_metadata_has_at_most_16_string_pairs_of_limited_length() {
    let control = start();
    let pairs = |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect());
    let dataset = created(&control, json!({"primary": node(), "metadata": pairs(16)}));
    assert_eq!(dataset["metadata"], pairs(16));
    for refused in [pairs(17), json!({"k": "x".repeat(257)}), json!({"k": 1}), json!({"": "v"})] {
        let (status, _) = create(&control, json!({"primary": node(), "metadata": refused}));
        assert_eq!(status, 400, "{refused}");
    }
}

#[test]
fn case_11_an_uppercase_dataset_id_is_stored_lowercase() {
    let control = start();
    let id = "0D7D8C1E-5B6A-4C1F-9A57-3E1B2C4D5E6F";
    let dataset = created(&control, json!({"primary": node(), "dataset_id": id}));
    assert_eq!(dataset["dataset_id"], json!(id.to_lowercase()));
    assert_eq!(list(&control)[0]["dataset_id"], json!(id.to_lowercase()));
}

#[test]
fn case_12_ids_that_are_not_version_4_uuids_are_refused() {
    let control = start();
    let version_1 = "0d7d8c1e-5b6a-1c1f-9a57-3e1b2c4d5e6f";
    let (status, _) = create(&control, json!({"primary": node(), "dataset_id": version_1}));
    assert_eq!(status, 400);
    let (status, _) = create(&control, json!({"primary": "192.0.2.1"}));
    assert_eq!(status, 400);
}

#[test]
fn case_13_an_id_in_use_in_any_case_conflicts_and_changes_nothing() {
    let control = start();
    let id = "0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f";
    created(&control, json!({"primary": node(), "dataset_id": id}));
    let (before, tag) = (list(&control), control.tag());
    for again in [id.to_owned(), id.to_uppercase()] {
        let (status, body) = create(&control, json!({"primary": node(), "dataset_id": again}));
        assert_eq!(status, 409);
        assert_eq!(body, json!({"description": "The provided dataset_id is already in use."}));
    }
    assert_eq!((list(&control), control.tag()), (before, tag));
}

#[test]
fn case_14_the_id_of_a_deleted_dataset_cannot_be_reused() {
    let control = start();
    let dataset = created(&control, json!({"primary": node()}));
    let id = dataset["dataset_id"].as_str().unwrap();
    assert_eq!(control.send("DELETE", &format!("{DATASETS}/{id}"), &[], None).status, 200);
    let (status, _) = create(&control, json!({"primary": node(), "dataset_id": id}));
    assert_eq!(status, 409);
}

#[test]
fn case_15_a_primary_that_no_agent_ever_reported_is_accepted() {
    let control = start();
    created(&control, json!({"primary": node()}));
}

#[test]
fn case_16_a_create_conditional_on_a_stale_tag_fails_with_412() {
    let control = start();
    let stale = control.tag();
    let body = json!({"primary": node()}).to_string();
    let response = control.send("POST", DATASETS, &[(IF_MATCHES, &stale)], Some(&body));
    assert_eq!(response.status, 201);
    let current = control.tag();
    let response = control.send("POST", DATASETS, &[(IF_MATCHES, &stale)], Some(&body));
    assert_eq!(response.status, 412);
    let expected = format!("Tag doesn't match. Required: {stale}, current: {current}");
    assert_eq!(json_of(&response), json!({"description": expected}));
    assert_eq!(list(&control).as_array().unwrap().len(), 1);
}

#[test]
fn case_17_the_tag_is_checked_before_the_dataset_is_looked_up() {
    let control = start();
    let path = format!("{DATASETS}/{}", NodeUuid::random());
    let body = json!({"primary": node()}).to_string();
    let response = control.send("POST", &path, &[(IF_MATCHES, "nope")], Some(&body));
    assert_eq!(response.status, 412);
}

#[test]
fn case_18_a_delete_conditional_on_a_stale_tag_deletes_nothing() {
    let control = start();
    let stale = control.tag();
    let dataset = created(&control, json!({"primary": node()}));
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    assert_eq!(control.send("DELETE", &path, &[(IF_MATCHES, &stale)], None).status, 412);
    assert_eq!(list(&control)[0]["deleted"], json!(false));
}

#[test]
fn case_19_moving_an_unknown_dataset_is_not_found() {
    let control = start();
    let path = format!("{DATASETS}/{}", NodeUuid::random());
    let response = control.send("POST", &path, &[], Some(&json!({"primary": node()}).to_string()));
    assert_eq!(response.status, 404);
    assert_eq!(json_of(&response), json!({"description": "Dataset not found."}));
}

#[test]
fn case_20_a_move_changes_the_primary_only_and_the_tag() {
    let control = start();
    let dataset = created(
        &control,
        json!({"primary": node(), "metadata": {"name": "pg"}, "maximum_size": 67108864}),
    );
    let tag = control.tag();
    let target = node();
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    let response = control.send("POST", &path, &[], Some(&json!({"primary": target}).to_string()));
    assert_eq!(response.status, 200);
    let mut expected = dataset.clone();
    expected["primary"] = json!(target);
    assert_eq!(json_of(&response), expected);
    assert_eq!(list(&control), json!([expected]));
    assert_ne!(control.tag(), tag);
}

#[test]
fn case_21_a_move_to_nowhere_or_to_the_same_node_changes_nothing() {
    let control = start();
    let dataset = created(&control, json!({"primary": node()}));
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    let tag = control.tag();
    for body in [json!({}), json!({"primary": dataset["primary"]})] {
        let response = control.send("POST", &path, &[], Some(&body.to_string()));
        assert_eq!(response.status, 200);
        assert_eq!(json_of(&response), dataset);
        assert_eq!(control.tag(), tag);
    }
}

#[test]
fn case_22_size_and_metadata_cannot_be_updated() {
    let control = start();
    let dataset = created(&control, json!({"primary": node()}));
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    for body in [json!({"maximum_size": 67108864}), json!({"metadata": {}})] {
        assert_eq!(control.send("POST", &path, &[], Some(&body.to_string())).status, 400);
    }
}

#[test]
fn case_23_a_delete_leaves_a_tombstone_in_the_list() {
    let control = start();
    let dataset = created(&control, json!({"primary": node()}));
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    let response = control.send("DELETE", &path, &[], None);
    assert_eq!(response.status, 200);
    let mut expected = dataset;
    expected["deleted"] = json!(true);
    assert_eq!(json_of(&response), expected);
    assert_eq!(list(&control), json!([expected]));
}

#[test]
fn case_24_a_second_delete_answers_the_same_and_keeps_the_tag() {
    let control = start();
    let dataset = created(&control, json!({"primary": node()}));
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    let first = json_of(&control.send("DELETE", &path, &[], None));
    let tag = control.tag();
    let second = control.send("DELETE", &path, &[], None);
    assert_eq!(second.status, 200);
    assert_eq!(json_of(&second), first);
    assert_eq!(control.tag(), tag);
}

#[test]
fn case_25_a_deleted_dataset_cannot_move() {
    let control = start();
    let dataset = created(&control, json!({"primary": node()}));
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    control.send("DELETE", &path, &[], None);
    let response = control.send("POST", &path, &[], Some(&json!({"primary": node()}).to_string()));
    assert_eq!(response.status, 405);
    assert_eq!(json_of(&response), json!({"description": "The dataset has been deleted."}));
}

#[test]
fn case_26_deleting_an_unknown_id_or_one_in_capitals_is_not_found() {
    let control = start();
    let unknown = format!("{DATASETS}/{}", NodeUuid::random());
    assert_eq!(control.send("DELETE", &unknown, &[], None).status, 404);
    let dataset = created(&control, json!({"primary": node()}));
    let upper = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap().to_uppercase());
    let response = control.send("DELETE", &upper, &[], None);
    assert_eq!(response.status, 404);
    assert_eq!(json_of(&response), json!({"description": "Dataset not found."}));
    assert_eq!(list(&control)[0]["deleted"], json!(false));
}

fn lease(dataset_id: &str, node_uuid: &str, expires: Value) -> String {
    json!({"dataset_id": dataset_id, "node_uuid": node_uuid, "expires": expires}).to_string()
}

#[test]
fn case_27_a_lease_is_acquired_renewed_and_refused_to_another_node() {
    let control = start();
    let (dataset, a, b) = (NodeUuid::random().to_string(), node(), node());
    let first = control.send("POST", LEASES, &[], Some(&lease(&dataset, &a, json!(null))));
    assert_eq!(first.status, 201);
    assert_eq!(json_of(&first), json!({"dataset_id": dataset, "node_uuid": a, "expires": null}));
    let again = control.send("POST", LEASES, &[], Some(&lease(&dataset, &a, json!(null))));
    assert_eq!(again.status, 200);
    let other = control.send("POST", LEASES, &[], Some(&lease(&dataset, &b, json!(null))));
    assert_eq!(other.status, 409);
    assert_eq!(json_of(&other), json!({"description": "Lease already held."}));
}

#[test]
fn case_28_a_lease_needs_expires_and_a_v4_node_uuid() {
    let control = start();
    let dataset = NodeUuid::random().to_string();
    let missing = json!({"dataset_id": dataset, "node_uuid": node()}).to_string();
    assert_eq!(control.send("POST", LEASES, &[], Some(&missing)).status, 400);
    let bad_node = lease(&dataset, "0d7d8c1e-5b6a-1c1f-9a57-3e1b2c4d5e6f", json!(null));
    assert_eq!(control.send("POST", LEASES, &[], Some(&bad_node)).status, 400);
}

#[test]
fn case_29_a_lease_with_a_time_counts_down_and_is_swept_when_it_is_up() {
    let control = start();
    let dataset = NodeUuid::random().to_string();
    let response = control.send("POST", LEASES, &[], Some(&lease(&dataset, &node(), json!(30))));
    assert_eq!(response.status, 201);
    assert_eq!(json_of(&response)["expires"].as_f64(), Some(30.0));
    let tag = control.tag();
    let remaining = || json_of(&control.send("GET", LEASES, &[], None))[0]["expires"].as_f64();
    let first = remaining().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let second = remaining().unwrap();
    assert!(second < first && first <= 30.0, "{first} then {second}");
    let deadline = Instant::now() + Duration::from_secs(40);
    while remaining().is_some() {
        assert!(Instant::now() < deadline, "the lease was never swept");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_ne!(control.tag(), tag);
}

#[test]
fn case_30_a_lease_on_a_dataset_that_does_not_exist_is_accepted() {
    let control = start();
    let dataset = NodeUuid::random().to_string();
    assert_eq!(
        control.send("POST", LEASES, &[], Some(&lease(&dataset, &node(), json!(null)))).status,
        201
    );
}

#[test]
fn case_31_a_lease_is_released_once_and_found_in_any_case() {
    let control = start();
    let (dataset, a) = (NodeUuid::random().to_string(), node());
    control.send("POST", LEASES, &[], Some(&lease(&dataset, &a, json!(null))));
    let released = control.send("DELETE", &format!("{LEASES}/{dataset}"), &[], None);
    assert_eq!(released.status, 200);
    assert_eq!(json_of(&released), json!({"dataset_id": dataset, "node_uuid": a, "expires": null}));
    let again = control.send("DELETE", &format!("{LEASES}/{dataset}"), &[], None);
    assert_eq!(again.status, 404);
    assert_eq!(json_of(&again), json!({"description": "Lease not found."}));
    control.send("POST", LEASES, &[], Some(&lease(&dataset, &a, json!(null))));
    let upper = control.send("DELETE", &format!("{LEASES}/{}", dataset.to_uppercase()), &[], None);
    assert_eq!(upper.status, 200);
}

#[test]
fn case_32_acquiring_and_releasing_a_lease_change_the_tag() {
    let control = start();
    let dataset = NodeUuid::random().to_string();
    let before = control.tag();
    control.send("POST", LEASES, &[], Some(&lease(&dataset, &node(), json!(null))));
    let held = control.tag();
    assert_ne!(held, before);
    control.send("DELETE", &format!("{LEASES}/{dataset}"), &[], None);
    assert_ne!(control.tag(), held);
}

#[test]
fn case_33_a_leased_dataset_can_still_be_moved() {
    let control = start();
    let (a, b) = (node(), node());
    let dataset = created(&control, json!({"primary": a}));
    let id = dataset["dataset_id"].as_str().unwrap();
    assert_eq!(control.send("POST", LEASES, &[], Some(&lease(id, &a, json!(null)))).status, 201);
    let response = control.send(
        "POST",
        &format!("{DATASETS}/{id}"),
        &[],
        Some(&json!({"primary": b}).to_string()),
    );
    assert_eq!(response.status, 200);
    assert_eq!(json_of(&response)["primary"], json!(b));
}

#[test]
fn case_34_a_leased_dataset_can_still_be_deleted() {
    let control = start();
    let a = node();
    let dataset = created(&control, json!({"primary": a}));
    let id = dataset["dataset_id"].as_str().unwrap();
    control.send("POST", LEASES, &[], Some(&lease(id, &a, json!(null))));
    let response = control.send("DELETE", &format!("{DATASETS}/{id}"), &[], None);
    assert_eq!(response.status, 200);
    assert_eq!(json_of(&response)["deleted"], json!(true));
    assert_eq!(json_of(&control.send("GET", LEASES, &[], None)).as_array().unwrap().len(), 1);
}

#[test]
fn case_35_without_agents_there_are_no_nodes_and_no_eras() {
    let control = start();
    assert_eq!(json_of(&control.send("GET", "/v1/state/nodes", &[], None)), json!([]));
    let response =
        control.send("GET", &format!("/v1/state/nodes/by_era/{}", NodeUuid::random()), &[], None);
    assert_eq!(response.status, 404);
    assert_eq!(json_of(&response), json!({"description": "No node found with given era."}));
}

#[test]
fn case_36_dataset_states_carry_only_the_four_keys_and_unmounted_ones_only_two() {
    let control = start();
    let agent_node = control.certificates().node();
    let agent = control.certificates().client_with(
        control.agent_address(),
        &agent_node.certificate,
        &agent_node.key,
    );
    let era = NodeUuid::random().to_string();
    let hello = agent
        .send("POST", HELLO_PATH, &[], Some(json!({"era": era}).to_string().as_bytes()))
        .unwrap();
    assert_eq!(hello.status, 200, "{:?}", hello.json());
    let (mounted, unmounted) = (NodeUuid::random().to_string(), NodeUuid::random().to_string());
    // A node reports only datasets of the configuration (issue 15): these are its own.
    for id in [&mounted, &unmounted] {
        let body = json!({"primary": agent_node.uuid.to_string(), "dataset_id": id});
        let created =
            control.send("POST", "/v1/configuration/datasets", &[], Some(&body.to_string()));
        assert_eq!(created.status, 201, "{:?}", created.json());
    }
    let report = json!({"era": era, "datasets": [
        {"dataset_id": mounted, "path": format!("/flocker/{mounted}"), "maximum_size": 67108864},
        {"dataset_id": unmounted, "maximum_size": 67108864},
    ]});
    let answer = agent.send("PUT", STATE_PATH, &[], Some(report.to_string().as_bytes())).unwrap();
    assert_eq!(answer.status, 204);
    let expected = json!([
        {"dataset_id": mounted, "primary": agent_node.uuid.to_string(), "path": format!("/flocker/{mounted}"), "maximum_size": 67108864},
        {"dataset_id": unmounted, "maximum_size": 67108864},
    ]);
    assert_eq!(read_settled(&control, "/v1/state/datasets", &expected), expected);
    let expected = json!([{"uuid": agent_node.uuid.to_string(), "host": "127.0.0.1"}]);
    assert_eq!(read_settled(&control, "/v1/state/nodes", &expected), expected);
    let expected = json!({"uuid": agent_node.uuid.to_string()});
    let by_era = read_settled(&control, &format!("/v1/state/nodes/by_era/{era}"), &expected);
    assert_eq!(by_era, expected);
}

#[test]
fn case_37_bodies_of_gets_and_deletes_are_ignored() {
    let control = start();
    let dataset = created(&control, json!({"primary": node()}));
    let listed = control.send("GET", DATASETS, &[], Some("{not json at all"));
    assert_eq!(listed.status, 200);
    assert_eq!(json_of(&listed), json!([dataset]));
    let path = format!("{DATASETS}/{}", dataset["dataset_id"].as_str().unwrap());
    let deleted = control.send("DELETE", &path, &[], Some("{\"primary\": 1}"));
    assert_eq!(deleted.status, 200);
    assert_eq!(json_of(&deleted)["deleted"], json!(true));
    let leases = control.send("GET", LEASES, &[], Some("[1, 2"));
    assert_eq!((leases.status, json_of(&leases)), (200, json!([])));
}

#[test]
fn case_38_only_user_certificates_of_the_cluster_are_served_and_the_server_is_control_service() {
    let control = start();
    let cluster = control.certificates().cluster_certificate();
    let node = control.certificates().node();
    let (certificate, key) = control.certificates().user("bob");
    for address in control.rest_addresses() {
        let refused = tls_handshake(address, &cluster, None, "/v1/version");
        assert!(refused.is_err(), "no certificate was served: {refused:?}");
        let refused =
            tls_handshake(address, &cluster, Some((&node.certificate, &node.key)), "/v1/version");
        assert!(refused.is_err(), "a node certificate was served: {refused:?}");
        let served = tls_handshake(address, &cluster, Some((&certificate, &key)), "/v1/version");
        assert_eq!(served.as_deref(), Ok("HTTP/1.1 200 OK"));
    }
}

// Lookups, an extension of ours (`control/src/http/query.rs`): each answers what the full list
// answers, filtered; Flocker 1.x ignored the query and answered the full list.

/// `node`'s agent says hello and reports `datasets`.
fn report_as(control: &impl Control, node: &NodeCertificate, datasets: Value) {
    let agent =
        control.certificates().client_with(control.agent_address(), &node.certificate, &node.key);
    let era = NodeUuid::random().to_string();
    let hello = json!({"era": era}).to_string();
    assert_eq!(agent.send("POST", HELLO_PATH, &[], Some(hello.as_bytes())).unwrap().status, 200);
    let report = json!({"era": era, "datasets": datasets}).to_string();
    assert_eq!(agent.send("PUT", STATE_PATH, &[], Some(report.as_bytes())).unwrap().status, 204);
}

#[test]
fn lookup_by_name_answers_the_datasets_either_name_key_names_tombstones_included() {
    let control = start();
    let by_name = created(&control, json!({"primary": node(), "metadata": {"name": "db 1/ü"}}));
    let by_old_key =
        created(&control, json!({"primary": node(), "metadata": {"FLOCKER_ID": "db 1/ü"}}));
    let other = created(&control, json!({"primary": node(), "metadata": {"name": "db 2"}}));
    let _unnamed = created(&control, json!({"primary": node(), "metadata": {"x": "db 1/ü"}}));
    let path = format!("{DATASETS}/{}", by_old_key["dataset_id"].as_str().unwrap());
    let tombstone = json_of(&control.send("DELETE", &path, &[], None));
    let tag = control.tag();
    let answer = control.send("GET", &format!("{DATASETS}?name=db%201%2F%C3%BC"), &[], None);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header(TAG), Some(tag.as_str()), "the whole configuration's tag");
    let mut found: Vec<Value> = json_of(&answer).as_array().unwrap().clone();
    let mut expected = vec![by_name, tombstone];
    let key = |v: &Value| v["dataset_id"].as_str().unwrap().to_owned();
    found.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(found, expected);
    let answer = json_of(&control.send("GET", &format!("{DATASETS}?name=db+2"), &[], None));
    assert_eq!(answer, json!([other]));
    let answer = json_of(&control.send("GET", &format!("{DATASETS}?name=nobody"), &[], None));
    assert_eq!(answer, json!([]));
    // A conditional create with the lookup's tag succeeds: the tag is the configuration's.
    let condition = [(IF_MATCHES, tag.as_str())];
    let body = json!({"primary": node(), "metadata": {"name": "db 3"}}).to_string();
    let response = control.send("POST", DATASETS, &condition, Some(&body));
    assert_eq!(response.status, 201, "{:?}", response.json());
}

#[test]
fn lookup_of_one_dataset_answers_its_state_and_its_lease() {
    let control = start();
    let agent_node = control.certificates().node();
    let here = agent_node.uuid.to_string();
    let [mounted, unmounted, unreported] = [(); 3].map(|()| NodeUuid::random().to_string());
    for id in [&mounted, &unmounted, &unreported] {
        created(&control, json!({"primary": here, "dataset_id": id}));
    }
    report_as(
        &control,
        &agent_node,
        json!([
            {"dataset_id": mounted, "path": format!("/flocker/{mounted}"), "maximum_size": 67108864},
            {"dataset_id": unmounted, "maximum_size": 67108864},
        ]),
    );
    let state_of = |id: &str| format!("/v1/state/datasets?dataset_id={id}");
    let expected = json!([{"dataset_id": mounted, "primary": here,
        "path": format!("/flocker/{mounted}"), "maximum_size": 67108864}]);
    assert_eq!(read_settled(&control, &state_of(&mounted), &expected), expected);
    let expected = json!([{"dataset_id": unmounted, "maximum_size": 67108864}]);
    assert_eq!(read_settled(&control, &state_of(&unmounted), &expected), expected);
    assert_eq!(json_of(&control.send("GET", &state_of(&unreported), &[], None)), json!([]));
    assert_eq!(json_of(&control.send("GET", &state_of(&here), &[], None)), json!([]));

    let lease_of = |id: &str| format!("{LEASES}?dataset_id={id}");
    assert_eq!(json_of(&control.send("GET", &lease_of(&mounted), &[], None)), json!([]));
    for id in [&mounted, &unmounted] {
        assert_eq!(
            control.send("POST", LEASES, &[], Some(&lease(id, &here, Value::Null))).status,
            201
        );
    }
    let leases = json_of(&control.send("GET", &lease_of(&mounted), &[], None));
    assert_eq!(leases, json!([{"dataset_id": mounted, "node_uuid": here, "expires": null}]));
}

#[test]
fn a_lookup_query_other_than_the_one_an_endpoint_takes_is_refused() {
    let control = start();
    created(&control, json!({"primary": node(), "metadata": {"name": "a"}}));
    for path in [
        format!("{DATASETS}?nme=a"),
        format!("{DATASETS}?name=a&name=b"),
        format!("{DATASETS}?name={}", "x".repeat(257)),
        "/v1/state/datasets?dataset_id=not-a-uuid".to_owned(),
        "/v1/state/datasets?name=a".to_owned(),
        format!("{LEASES}?dataset_id=1"),
    ] {
        let answer = control.send("GET", &path, &[], None);
        assert_eq!(answer.status, 400, "{path}");
        assert!(description(&json_of(&answer)).contains("query"), "{path}");
    }
}
