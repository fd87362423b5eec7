//! Control services sharing one configuration in a real ZooKeeper 3.8 ensemble (three servers
//! on loopback, started by the test kit), over real mutual TLS: tags and read-your-writes
//! across services, racing writes, the quorum lost and back, servers and services killed
//! mid-burst, the agents' soft state shared, `migrate`, and compaction.
//!
//! Tests that kill ZooKeeper servers start an ensemble of their own; the others share one
//! (`ZooKeeperEnsemble::shared`), each on a store (`zk://…/flocker-<uuid>`) of its own.
//! A failing test prints the services' logs (and its own ensemble's).

#[path = "support/flocker_one.rs"]
mod flocker_one;
#[path = "support/zookeeper.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flocker_testkit::{ClusterCertificates, ControlProcess, RunningPair, ZooKeeperEnsemble};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use self::support::{
    Agent, DATASETS, IF_MATCHES, LEASES, OwnEnsemble, TAG, VIEW_AGE, binary, burst, create_body,
    eventually, json_of, listed, new_id, state,
};

fn pair() -> RunningPair {
    RunningPair::start(binary(), &[])
}

/// Service `i`'s `X-Configuration-Tag`.
fn tag_of(pair: &RunningPair, i: usize) -> String {
    let response = pair.send_to(i, "GET", DATASETS, &[], None);
    response.header(TAG).unwrap_or_else(|| panic!("no tag from service {i}")).to_owned()
}

fn status_and_body(response: &flocker_api::RawResponse) -> (u16, String) {
    (response.status, String::from_utf8_lossy(&response.body).into_owned())
}

fn signal(process: &ControlProcess, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(process.pid()).expect("a pid"));
    kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

#[test]
fn a_dataset_created_on_one_service_is_listed_by_the_other_with_the_same_tag() {
    let pair = pair();
    let created =
        pair.send_to(0, "POST", DATASETS, &[], Some(&json!({"primary": new_id()}).to_string()));
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let on_a = pair.send_to(0, "GET", DATASETS, &[], None);
    let on_b = pair.send_to(1, "GET", DATASETS, &[], None);
    assert_eq!(on_b.json().unwrap(), on_a.json().unwrap());
    assert_eq!(on_a.header(TAG), on_b.header(TAG));
}

/// Both services name one configuration with one tag, so a client may read the tag from one
/// and write through the other; a tag that went stale fails on both.
#[test]
fn a_tag_read_on_one_service_conditions_a_write_on_the_other_and_a_stale_one_fails_on_both() {
    let pair = pair();
    assert_eq!(tag_of(&pair, 0), tag_of(&pair, 1));
    let first = pair.send_to(0, "POST", DATASETS, &[], Some(&create_body(&new_id(), &new_id())));
    assert_eq!(first.status, 201);
    let read_on_a = tag_of(&pair, 0);
    assert_eq!(tag_of(&pair, 1), read_on_a);

    let made = new_id();
    let body = create_body(&made, &new_id());
    let on_b = pair.send_to(1, "POST", DATASETS, &[(IF_MATCHES, &read_on_a)], Some(&body));
    assert_eq!(status_and_body(&on_b).0, 201, "{}", status_and_body(&on_b).1);

    // At once, before A has necessarily heard of B's write: A decides on its view, loses to
    // B's write in ZooKeeper, catches up and decides again.
    let mut refusals = Vec::new();
    for i in [0, 1] {
        let body = create_body(&new_id(), &new_id());
        let stale = pair.send_to(i, "POST", DATASETS, &[(IF_MATCHES, &read_on_a)], Some(&body));
        assert_eq!(stale.status, 412, "service {i}: {}", status_and_body(&stale).1);
        refusals.push(json_of(&stale));
        let path = format!("{DATASETS}/{made}");
        let delete = pair.send_to(i, "DELETE", &path, &[(IF_MATCHES, &read_on_a)], None);
        assert_eq!(delete.status, 412, "service {i}: {}", status_and_body(&delete).1);
        let moving = json!({"primary": new_id()}).to_string();
        let moved = pair.send_to(i, "POST", &path, &[(IF_MATCHES, &read_on_a)], Some(&moving));
        assert_eq!(moved.status, 412, "service {i}: {}", status_and_body(&moved).1);
    }
    let current = tag_of(&pair, 0);
    assert_eq!(tag_of(&pair, 1), current);
    assert_ne!(current, read_on_a);
    let expected = format!("Tag doesn't match. Required: {read_on_a}, current: {current}");
    for refusal in refusals {
        assert_eq!(refusal, json!({"description": expected}));
    }
    let (on_a, on_b) = (listed(&pair, 0), listed(&pair, 1));
    assert_eq!(on_a, on_b);
    assert_eq!(on_a.len(), 2);
    assert_eq!(on_a[&made]["deleted"], json!(false));
}

/// Read-your-writes across services: what one acknowledged, the other's very next read shows
/// (it confirms its view with ZooKeeper's `sync` first), with no sleep between.
#[test]
fn a_create_a_move_and_a_lease_acknowledged_by_one_service_are_in_the_other_s_next_read() {
    let pair = pair();
    for round in 0..100 {
        let (writer, reader) = (round % 2, 1 - round % 2);
        let id = new_id();
        let created =
            pair.send_to(writer, "POST", DATASETS, &[], Some(&create_body(&id, &new_id())));
        assert_eq!(created.status, 201, "{}", status_and_body(&created).1);
        assert!(
            listed(&pair, reader).contains_key(&id),
            "round {round}: service {reader} does not list {id}, created on service {writer}"
        );

        let target = new_id();
        let path = format!("{DATASETS}/{id}");
        let body = json!({"primary": target}).to_string();
        let moved = pair.send_to(writer, "POST", &path, &[], Some(&body));
        assert_eq!(moved.status, 200, "{}", status_and_body(&moved).1);
        let primary = listed(&pair, reader)[&id]["primary"].clone();
        assert_eq!(primary, json!(target), "round {round}: service {reader} missed the move");

        let lease = json!({"dataset_id": id, "node_uuid": target, "expires": null});
        let acquired = pair.send_to(writer, "POST", LEASES, &[], Some(&lease.to_string()));
        assert_eq!(acquired.status, 201, "{}", status_and_body(&acquired).1);
        let leases = json_of(&pair.send_to(reader, "GET", LEASES, &[], None));
        assert!(
            leases.as_array().unwrap().contains(&lease),
            "round {round}: service {reader} does not list the lease on {id}: {leases}"
        );
    }
}

/// Fifty clients read the tag, then all create at once conditional on it, half through each
/// service: one create wins, and the other 49 fail whichever service they went through.
#[test]
fn of_fifty_creates_conditional_on_one_tag_racing_on_two_services_exactly_one_is_made() {
    const CLIENTS: usize = 50;
    let pair = pair();
    for round in 0..3 {
        let before = listed(&pair, 0);
        let barrier = Barrier::new(CLIENTS);
        let answers: Vec<(String, u16, String)> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..CLIENTS)
                .map(|t| {
                    let (pair, barrier) = (&pair, &barrier);
                    scope.spawn(move || {
                        let i = t % 2;
                        let tag = tag_of(pair, i);
                        let id = new_id();
                        let body = create_body(&id, &new_id());
                        barrier.wait();
                        let answer =
                            pair.send_to(i, "POST", DATASETS, &[(IF_MATCHES, &tag)], Some(&body));
                        let (status, body) = status_and_body(&answer);
                        (id, status, body)
                    })
                })
                .collect();
            threads.into_iter().map(|thread| thread.join().unwrap()).collect()
        });
        let made: Vec<&String> =
            answers.iter().filter(|(_, status, _)| *status == 201).map(|(id, ..)| id).collect();
        let refused = answers.iter().filter(|(_, status, _)| *status == 412).count();
        assert_eq!((made.len(), refused), (1, CLIENTS - 1), "round {round}: {answers:#?}");
        for i in [0, 1] {
            let after = listed(&pair, i);
            let new: Vec<&String> = after.keys().filter(|id| !before.contains_key(*id)).collect();
            assert_eq!(new, made, "round {round}: service {i} lists other new datasets");
        }
    }
}

/// With two of three ZooKeeper servers gone, writes fail with 503 (in bounded time, nothing
/// changed), reads answer from the last view and say how old it is; once the servers are back,
/// writes succeed again without restarting anything, and nothing acknowledged was lost.
#[test]
fn without_a_quorum_writes_fail_with_503_reads_answer_from_the_last_view_and_then_all_resumes() {
    let mut ensemble = OwnEnsemble::start();
    let store = ensemble.fresh_store_url();
    let pair = RunningPair::start_on(binary(), &store, &["--store-timeout", "2"]);
    let mut acknowledged = BTreeSet::new();
    for k in 0..6 {
        let id = new_id();
        let created =
            pair.send_to(k % 2, "POST", DATASETS, &[], Some(&create_body(&id, &new_id())));
        assert_eq!(created.status, 201, "{}", status_and_body(&created).1);
        acknowledged.insert(id);
    }
    // Reads confirm the view: each service's last view is then all of it.
    for i in [0, 1] {
        let ids: BTreeSet<String> = listed(&pair, i).into_keys().collect();
        assert_eq!(ids, acknowledged, "service {i} before the quorum is lost");
    }

    ensemble.kill(0);
    ensemble.kill(1);
    eventually(Duration::from_secs(20), "the last server stops serving", || {
        ensemble.server_mode(2).is_none().then_some(())
    });
    // Both services saw their session disconnected (the header says so): a write is then
    // refused before anything is sent. (One sent just as the connection dropped gets 504,
    // rightly: ZooKeeper may still have taken it.)
    for i in [0, 1] {
        eventually(Duration::from_secs(15), "the view is marked unconfirmed", || {
            pair.send_to(i, "GET", "/v1/version", &[], None).header(VIEW_AGE).map(drop)
        });
    }
    let mut refused = BTreeSet::new();
    for i in [0, 1] {
        let id = new_id();
        let started = Instant::now();
        let answer = pair.send_to(i, "POST", DATASETS, &[], Some(&create_body(&id, &new_id())));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(15), "service {i} took {took:?} to refuse a write");
        assert_eq!(answer.status, 503, "service {i}: {}", status_and_body(&answer).1);
        let body = json_of(&answer);
        let description = body["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("store is not available")
                && description.contains("nothing was changed"),
            "service {i}: {description}"
        );
        refused.insert(id);
    }
    for i in [0, 1] {
        let answer = pair.send_to(i, "GET", DATASETS, &[], None);
        assert_eq!(answer.status, 200, "service {i}: {}", status_and_body(&answer).1);
        let age = answer.header(VIEW_AGE).unwrap_or_else(|| panic!("service {i}: no view age"));
        let age: f64 = age.parse().unwrap_or_else(|_| panic!("service {i}: view age {age}"));
        assert!(age >= 0.0, "service {i}: view age {age}");
        let ids: BTreeSet<String> = json_of(&answer)
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["dataset_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, acknowledged, "service {i}'s last view");
    }

    ensemble.restart(0);
    ensemble.restart(1);
    ensemble.wait_until_serving(Duration::from_secs(60));
    let restored = Instant::now();
    let mut unknown = BTreeSet::new();
    for i in [0, 1] {
        eventually(Duration::from_secs(30), "a write succeeds again", || {
            let id = new_id();
            let answer = pair.send_to(i, "POST", DATASETS, &[], Some(&create_body(&id, &new_id())));
            match status_and_body(&answer) {
                (201, _) => return acknowledged.insert(id).then_some(()),
                (503, _) => refused.insert(id),
                (504, _) => unknown.insert(id),
                (status, body) => panic!("service {i}: {status} {body}"),
            };
            None
        });
    }
    eprintln!("writes succeeded again {:?} after the quorum was back", restored.elapsed());
    for i in [0, 1] {
        eventually(Duration::from_secs(15), "the view age goes away", || {
            pair.send_to(i, "GET", DATASETS, &[], None).header(VIEW_AGE).is_none().then_some(())
        });
        let ids: BTreeSet<String> = listed(&pair, i).into_keys().collect();
        assert!(ids.is_superset(&acknowledged), "service {i} lost a dataset: {ids:?}");
        assert!(ids.is_disjoint(&refused), "service {i} made a create that got 503: {ids:?}");
        let possible: BTreeSet<String> = acknowledged.union(&unknown).cloned().collect();
        assert!(ids.is_subset(&possible), "service {i} lists what no one created: {ids:?}");
    }
}

/// `kill -9` of the ZooKeeper leader while four threads create and move datasets through both
/// services: every acknowledged write stays, with its last acknowledged primary; a write that
/// failed says why (503: nothing changed; 504: unknown), never 500.
#[test]
fn writes_acknowledged_while_the_zookeeper_leader_is_killed_mid_burst_all_stay() {
    let mut ensemble = OwnEnsemble::start();
    let store = ensemble.fresh_store_url();
    let pair = RunningPair::start_on(binary(), &store, &["--store-timeout", "3"]);
    let acknowledged = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let total = || acknowledged.iter().map(|a| a.load(Ordering::Acquire)).sum::<usize>();
    let killed = [AtomicBool::new(false), AtomicBool::new(false)];
    let ledger = burst(&pair, 4, &acknowledged, &killed, || {
        eventually(Duration::from_secs(30), "20 writes", || (total() >= 20).then_some(()));
        let leader = ensemble.leader().expect("a leader");
        ensemble.kill(leader);
        let at_kill = total();
        eventually(Duration::from_secs(30), "20 writes after the kill", || {
            (total() >= at_kill + 20).then_some(())
        });
    });
    eprintln!("answers: {:?}", ledger.statuses);
    for i in [0, 1] {
        ledger.check(&pair, i);
    }
}

/// `kill -9` of one control service while four threads write through both: the other serves
/// on, and every write either acknowledged is there (on the killed one too, once restarted).
#[test]
fn writes_acknowledged_by_either_service_stay_when_one_is_killed_mid_burst() {
    let mut pair = pair();
    let acknowledged = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let killed = [AtomicBool::new(false), AtomicBool::new(false)];
    let ledger = burst(&pair, 4, &acknowledged, &killed, || {
        eventually(Duration::from_secs(30), "20 writes", || {
            (acknowledged[0].load(Ordering::Acquire) >= 10
                && acknowledged[1].load(Ordering::Acquire) >= 10)
                .then_some(())
        });
        killed[0].store(true, Ordering::Release);
        signal(&pair.processes[0], Signal::SIGKILL);
        let at_kill = acknowledged[1].load(Ordering::Acquire);
        eventually(Duration::from_secs(30), "20 writes on the survivor", || {
            (acknowledged[1].load(Ordering::Acquire) >= at_kill + 20).then_some(())
        });
    });
    eprintln!("answers: {:?}", ledger.statuses);
    ledger.check(&pair, 1);
    pair.restart(0);
    ledger.check(&pair, 0);
}

/// The nodes service `i` lists.
fn nodes_of(pair: &RunningPair, i: usize) -> BTreeSet<String> {
    let nodes = state(pair, i, "nodes");
    nodes.as_array().unwrap().iter().map(|n| n["uuid"].as_str().unwrap().to_owned()).collect()
}

/// The mounted datasets service `i` lists, with the node each is mounted on.
fn mounted_of(pair: &RunningPair, i: usize) -> BTreeSet<(String, String)> {
    let states = state(pair, i, "datasets");
    let states = states.as_array().unwrap();
    states
        .iter()
        .filter(|s| s["path"].is_string())
        .map(|s| (s["dataset_id"].as_str().unwrap().into(), s["primary"].as_str().unwrap().into()))
        .collect()
}

/// What agents say to one service shows on the other within 2 s. When that service dies, its
/// agents' state goes from the other once its ZooKeeper session expires (10 s), except for an
/// agent that reports to the other service by then.
#[test]
fn an_agent_s_state_reported_to_one_service_shows_on_the_other_and_goes_with_that_service() {
    let mut pair = pair();
    let staying = Agent::new(&pair.certificates, pair.processes[0].agent);
    let leaving = Agent::new(&pair.certificates, pair.processes[0].agent);
    let mut datasets = Vec::new();
    for agent in [&staying, &leaving] {
        agent.hello();
        // Created on B and reported to A at once.
        let id = new_id();
        let created =
            pair.send_to(1, "POST", DATASETS, &[], Some(&create_body(&id, &agent.uuid())));
        assert_eq!(created.status, 201, "{}", status_and_body(&created).1);
        agent.report_mounted(std::slice::from_ref(&id));
        datasets.push(id);
    }
    let both = BTreeSet::from([staying.uuid(), leaving.uuid()]);
    let both_mounted = BTreeSet::from([
        (datasets[0].clone(), staying.uuid()),
        (datasets[1].clone(), leaving.uuid()),
    ]);
    assert_eq!(nodes_of(&pair, 0), both);
    assert_eq!(mounted_of(&pair, 0), both_mounted);
    let soft = RunningPair::SOFT_STATE_DELAY;
    eventually(soft, "B lists both nodes", || (nodes_of(&pair, 1) == both).then_some(()));
    eventually(soft, "B lists both datasets", || {
        (mounted_of(&pair, 1) == both_mounted).then_some(())
    });

    // Again and again, a report to A names a dataset created a moment before, on B (which A
    // may not have heard of yet) or on A (which B may not have heard of when it mirrors).
    let mut staying_datasets = vec![datasets[0].clone()];
    for round in 0..40 {
        let id = new_id();
        let on = 1 - round % 2;
        let body = create_body(&id, &staying.uuid());
        let created = pair.send_to(on, "POST", DATASETS, &[], Some(&body));
        assert_eq!(created.status, 201, "{}", status_and_body(&created).1);
        staying_datasets.push(id.clone());
        staying.report_mounted(&staying_datasets);
        let mounted = (id.clone(), staying.uuid());
        let on_a = mounted_of(&pair, 0);
        assert!(on_a.contains(&mounted), "round {round}: A left {id} out: {on_a:?}");
        eventually(soft, &format!("round {round}: B lists {id}, created on {on}"), || {
            mounted_of(&pair, 1).contains(&mounted).then_some(())
        });
    }
    let staying_mounted: BTreeSet<(String, String)> =
        staying_datasets.iter().map(|id| (id.clone(), staying.uuid())).collect();
    eventually(soft, "B lists what A was told", || {
        mounted_of(&pair, 1).is_superset(&staying_mounted).then_some(())
    });

    let killed = Instant::now();
    pair.processes[0].kill();
    let staying = staying.moved_to(&pair.certificates, pair.processes[1].agent);
    staying.report_mounted(&staying_datasets);
    eventually(Duration::from_secs(20), "B drops the agent of the killed service", || {
        (nodes_of(&pair, 1) == BTreeSet::from([staying.uuid()])).then_some(())
    });
    eprintln!("B dropped the node {:?} after A was killed", killed.elapsed());
    assert_eq!(mounted_of(&pair, 1), staying_mounted);

    // B shares the agent that moved to it: A, started again, mirrors it, and not the other.
    pair.restart(0);
    eventually(soft, "A mirrors the agent that moved to B", || {
        (nodes_of(&pair, 0) == BTreeSet::from([staying.uuid()])).then_some(())
    });
    eventually(soft, "A lists its datasets", || {
        (mounted_of(&pair, 0) == staying_mounted).then_some(())
    });
}

/// Issue 17: the push fields of a node's configuration come from what nodes report to any
/// service. A node reporting to A that holds a dataset whose primary polls B: B tells the
/// primary where it arrives from, and where that node takes pushes, waking a waiting poll;
/// A tells the holder to push it there. The holder's transfers show on B.
#[test]
fn a_node_reporting_to_one_service_is_pushed_to_and_expected_by_a_node_polling_the_other() {
    let pair = pair();
    let holder = Agent::new(&pair.certificates, pair.processes[0].agent);
    let primary = Agent::new(&pair.certificates, pair.processes[1].agent);
    holder.hello_taking_pushes(7000);
    primary.hello_taking_pushes(7001);
    let id = new_id();
    let created = pair.send_to(0, "POST", DATASETS, &[], Some(&create_body(&id, &primary.uuid())));
    assert_eq!(created.status, 201, "{}", status_and_body(&created).1);
    let soft = RunningPair::SOFT_STATE_DELAY;
    let peer = |agent: &Agent, port: u16| (agent.node.uuid, format!("127.0.0.1:{port}"));
    let view = eventually(soft, "B knows where the holder takes pushes", || {
        let view = primary.poll(None, 0);
        (view.peers == [peer(&holder, 7000)].into()).then_some(view)
    });
    assert!(view.arriving.is_empty());

    // The first report of the volume records it in the configuration, which wakes polls by
    // itself: report it and take it back first, so that the poll below wakes on the report.
    // The second report's transfer shows when B has it.
    let transfer = |sent: u64| {
        let to = primary.uuid();
        json!([{"dataset_id": id, "to": to, "phase": "pre-copy", "sent": sent}])
    };
    holder.report_holding(std::slice::from_ref(&id), json!([]));
    holder.report_holding(&[], transfer(1));
    let etag = eventually(soft, "B mirrors the holder's second report", || {
        let mirrored = state(&pair, 1, "transfers") == transfer_from(&holder, transfer(1));
        let view = primary.poll(None, 0);
        (mirrored && view.arriving.is_empty()).then_some(view.etag)
    });
    let started = Instant::now();
    let (view, waited) = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| (primary.poll(Some(&etag), 20), started.elapsed()));
        std::thread::sleep(Duration::from_millis(300));
        holder.report_holding(std::slice::from_ref(&id), transfer(5));
        waiting.join().unwrap()
    });
    let dataset = id.parse().unwrap();
    assert_eq!(view.arriving, [(dataset, [holder.node.uuid].into())].into());
    assert!(waited < Duration::from_secs(10), "B's poll waited {waited:?}, not woken");

    let on_a = holder.poll(None, 0);
    assert_eq!(on_a.pushes, [(dataset, primary.node.uuid)].into());
    assert_eq!(on_a.peers, [peer(&primary, 7001)].into());
    assert_eq!(state(&pair, 1, "transfers"), transfer_from(&holder, transfer(5)));
}

/// What `/v1/state/transfers` shows of `reported` when `agent` reports it.
fn transfer_from(agent: &Agent, mut reported: Value) -> Value {
    for transfer in reported.as_array_mut().unwrap() {
        transfer["from"] = json!(agent.uuid());
    }
    reported
}

/// `flocker-control migrate`; its exit status, stdout and stderr.
fn migrate(from: &str, to: &str) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(["migrate", "--from", from, "--to", to])
        .output()
        .expect("run flocker-control migrate");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A journal service's datasets and leases, as JSON.
fn configuration_of(certificates: &ClusterCertificates, rest: std::net::SocketAddr) -> Value {
    let client = certificates.client(rest, "alice");
    let get = |path: &str| {
        let answer = client.send("GET", path, &[], None).unwrap();
        assert_eq!(answer.status, 200);
        json_of(&answer)
    };
    json!({"datasets": get(DATASETS), "leases": get(LEASES)})
}

/// A pair's datasets and leases as each service lists them.
fn configurations_of(pair: &RunningPair) -> [Value; 2] {
    [0, 1].map(|i| {
        json!({
            "datasets": json_of(&pair.send_to(i, "GET", DATASETS, &[], None)),
            "leases": json_of(&pair.send_to(i, "GET", LEASES, &[], None)),
        })
    })
}

#[test]
fn migrate_copies_a_journal_into_an_empty_zookeeper_store_and_back_and_refuses_a_full_one() {
    let ensemble = ZooKeeperEnsemble::shared();
    let certificates = ClusterCertificates::new();
    let journal = certificates.root().join("journal");
    let mut control = ControlProcess::start(binary(), &certificates, &journal, &[]).unwrap();
    let client = certificates.client(control.rest, "alice");
    let ids: Vec<String> = (0..4).map(|_| new_id()).collect();
    let send = |method: &str, path: &str, body: Value| {
        let answer = client.send(method, path, &[], Some(body.to_string().as_bytes())).unwrap();
        assert!(matches!(answer.status, 200 | 201), "{}", status_and_body(&answer).1);
    };
    for id in &ids {
        send("POST", DATASETS, json!({"primary": new_id(), "dataset_id": id}));
    }
    send("POST", &format!("{DATASETS}/{}", ids[1]), json!({"primary": new_id()}));
    send("DELETE", &format!("{DATASETS}/{}", ids[2]), json!({}));
    send("POST", LEASES, json!({"dataset_id": ids[0], "node_uuid": new_id(), "expires": null}));
    let expected = configuration_of(&certificates, control.rest);
    control.terminate();

    let store = ensemble.fresh_store_url();
    let (copied, stdout, stderr) = migrate(path_text(&journal), &store);
    assert!(copied, "{stderr}");
    assert!(stdout.contains("copied 4 datasets, 1 leases"), "{stdout}");
    let pair = RunningPair::start_on(binary(), &store, &[]);
    assert_eq!(configurations_of(&pair), [expected.clone(), expected.clone()]);
    let tag = tag_of(&pair, 0);

    // Into a store that holds a configuration: refused, and nothing changes.
    let other = certificates.root().join("other");
    let mut control = ControlProcess::start(binary(), &certificates, &other, &[]).unwrap();
    let created = certificates.client(control.rest, "alice").send(
        "POST",
        DATASETS,
        &[],
        Some(json!({"primary": new_id()}).to_string().as_bytes()),
    );
    assert_eq!(created.unwrap().status, 201);
    control.terminate();
    let (copied, stdout, stderr) = migrate(path_text(&other), &store);
    assert!(!copied, "{stdout}");
    assert!(stderr.contains("already holds a configuration"), "{stderr}");
    assert_eq!(configurations_of(&pair), [expected.clone(), expected.clone()]);
    assert_eq!((tag_of(&pair, 0), tag_of(&pair, 1)), (tag.clone(), tag));
    drop(pair); // migrate wants the services stopped

    // Back into the journal: an empty directory takes it, one with a configuration does not.
    let back = certificates.root().join("back");
    let (copied, stdout, stderr) = migrate(&store, path_text(&back));
    assert!(copied, "{stderr}");
    assert!(stdout.contains("copied 4 datasets, 1 leases"), "{stdout}");
    let (copied, _, stderr) = migrate(&store, path_text(&other));
    assert!(!copied);
    assert!(stderr.contains("already holds a configuration"), "{stderr}");
    let control = ControlProcess::start(binary(), &certificates, &back, &[]).unwrap();
    assert_eq!(configuration_of(&certificates, control.rest), expected);
}

#[test]
fn migrate_copies_flocker_1_s_configuration_file_into_zookeeper() {
    let ensemble = ZooKeeperEnsemble::shared();
    let certificates = ClusterCertificates::new();
    let file = certificates.root().join("current_configuration.json");
    std::fs::write(&file, flocker_one::flocker_configuration().to_string()).unwrap();
    let store = ensemble.fresh_store_url();
    let (copied, stdout, stderr) = migrate(path_text(&file), &store);
    assert!(copied, "{stderr}");
    assert!(stdout.contains("copied 1 datasets, 1 leases and 1 block devices"), "{stdout}");

    let data = certificates.root().join("data");
    let control =
        ControlProcess::start(binary(), &certificates, &data, &["--store", &store]).unwrap();
    let client = certificates.client(control.rest, "alice");
    let (datasets, _) = client.list_datasets().unwrap();
    assert_eq!(datasets.len(), 1);
    let dataset = &datasets[0];
    assert_eq!(
        (dataset.dataset_id.to_string(), dataset.primary.to_string()),
        (flocker_one::DATASET.to_owned(), flocker_one::NODE.to_owned())
    );
    assert_eq!(dataset.metadata["name"], "webapp-data");
    let leases = client.list_leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].node_uuid.to_string(), leases[0].expires),
        (flocker_one::NODE.into(), None)
    );
}

/// `count` changes through service `i`: creates, moves and leases in turn.
fn make_changes(pair: &RunningPair, i: usize, count: usize) {
    let mut ids: Vec<String> = Vec::new();
    for k in 0..count {
        let (path, body) = match (k % 3, ids.last()) {
            (1, Some(id)) => (format!("{DATASETS}/{id}"), json!({"primary": new_id()})),
            (2, Some(id)) => (
                LEASES.to_owned(),
                json!({"dataset_id": id, "node_uuid": new_id(), "expires": null}),
            ),
            _ => {
                let id = new_id();
                ids.push(id.clone());
                (DATASETS.to_owned(), json!({"primary": new_id(), "dataset_id": id}))
            }
        };
        let answer = pair.send_to(i, "POST", &path, &[], Some(&body.to_string()));
        assert!(matches!(answer.status, 200 | 201), "{}", status_and_body(&answer).1);
    }
}

/// With a snapshot every 10 changes: a service paused while three snapshots were written (the
/// changes it missed deleted) reloads from the snapshot; one killed and restarted after more
/// loads it; and a new one does too. All list what the first one does, with its tag.
#[test]
fn after_compactions_a_paused_a_restarted_and_a_new_service_all_have_the_configuration() {
    let mut pair = RunningPair::start(binary(), &["--store-compact-every", "10"]);
    let snapshots =
        |pair: &RunningPair| pair.processes[0].log().matches("wrote a snapshot").count();

    signal(&pair.processes[1], Signal::SIGSTOP);
    let paused = Instant::now();
    make_changes(&pair, 0, 40);
    eventually(Duration::from_secs(5), "three snapshots", || (snapshots(&pair) >= 3).then_some(()));
    signal(&pair.processes[1], Signal::SIGCONT);
    eprintln!("service 1 was paused for {:?}", paused.elapsed());
    assert_eq!(listed(&pair, 1), listed(&pair, 0));
    assert_eq!(tag_of(&pair, 1), tag_of(&pair, 0));
    let (reloaded, log) =
        pair.processes[1].wait_for_log("reloaded the configuration from the store");
    assert!(reloaded, "service 1 caught up without reloading:\n{log}");

    pair.processes[1].kill();
    let before = snapshots(&pair);
    make_changes(&pair, 0, 40);
    eventually(Duration::from_secs(5), "more snapshots", || {
        (snapshots(&pair) >= before + 3).then_some(())
    });
    pair.restart(1);
    assert_eq!(listed(&pair, 1), listed(&pair, 0));
    assert_eq!(tag_of(&pair, 1), tag_of(&pair, 0));

    let third = pair.start_another("c").unwrap_or_else(|e| panic!("{e}"));
    let client = pair.certificates.client(third.rest, "alice");
    let on_third = client.send("GET", DATASETS, &[], None).unwrap();
    assert_eq!(on_third.header(TAG).map(str::to_owned), Some(tag_of(&pair, 0)));
    let expected: Vec<Value> = listed(&pair, 0).into_values().collect();
    let mut on_third = json_of(&on_third).as_array().unwrap().clone();
    on_third.sort_by(|a, b| a["dataset_id"].as_str().cmp(&b["dataset_id"].as_str()));
    assert_eq!(on_third, expected);
    // And it writes where the others see it.
    let id = new_id();
    let body = create_body(&id, &new_id());
    let created = client.send("POST", DATASETS, &[], Some(body.as_bytes())).unwrap();
    assert_eq!(created.status, 201, "{}\n{}", status_and_body(&created).1, third.log());
    for i in [0, 1] {
        assert!(listed(&pair, i).contains_key(&id), "service {i} does not list {id}");
    }
}

/// A write that changes nothing (a move to the dataset's own primary) is decided again on a
/// confirmed view. During a ZooKeeper election that waits for the new leader, as a change does
/// (`--store-timeout`), rather than failing at once with 503.
#[test]
fn a_write_that_changes_nothing_waits_through_a_zookeeper_election() {
    let mut ensemble = OwnEnsemble::start();
    let store = ensemble.fresh_store_url();
    let pair = RunningPair::start_on(binary(), &store, &[]);
    let (id, node) = (new_id(), new_id());
    let created = pair.send_to(0, "POST", DATASETS, &[], Some(&create_body(&id, &node)));
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let leader = ensemble.leader().expect("the ensemble has a leader");
    ensemble.kill(leader);
    // Every server drops its clients when the leader goes: let the services see theirs go.
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let same = json!({"primary": node}).to_string();
    let answer = pair.send_to(0, "POST", &format!("{DATASETS}/{id}"), &[], Some(&same));
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, 200, "after {:?}: {body}", started.elapsed());
}
