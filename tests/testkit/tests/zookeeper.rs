//! The test kit's ZooKeeper ensemble is a real one: it elects a leader, survives the loss of a
//! minority, stops serving without a majority, and recovers when a server comes back.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use flocker_testkit::ZooKeeperEnsemble;

const RECOVERY: Duration = Duration::from_secs(30);

#[test]
fn three_servers_elect_one_leader_and_two_followers() {
    let started = Instant::now();
    let ensemble = ZooKeeperEnsemble::start(3);
    println!("a 3-server ZooKeeper ensemble served after {:?}", started.elapsed());

    assert_eq!(modes(&ensemble), ["follower", "follower", "leader"]);
    let addresses: Vec<String> = (0..3).map(|i| ensemble.client_address(i).to_string()).collect();
    assert_eq!(ensemble.connect_string(), addresses.join(","));
    assert!(addresses.iter().all(|address| address.starts_with("127.0.0.1:")));
    assert_eq!(ensemble.four_letter_word(0, "ruok").as_deref(), Some("imok"));
}

#[test]
fn one_server_runs_standalone() {
    let ensemble = ZooKeeperEnsemble::start(1);

    assert_eq!(ensemble.server_mode(0).as_deref(), Some("standalone"));
    // Debian's own classpath has no SLF4J binding, so a server logs nothing unless we add one.
    assert!(ensemble.log(0).contains("binding to port"), "{}", ensemble.log(0));
}

#[test]
fn a_minority_down_keeps_the_quorum_a_majority_down_loses_it_and_a_restart_restores_it() {
    let mut ensemble = ZooKeeperEnsemble::start(3);
    let leader = ensemble.leader().expect("a leader");

    ensemble.kill(leader);
    assert!(!ensemble.is_running(leader));
    assert_eq!(ensemble.server_mode(leader), None);
    ensemble.wait_until_serving(RECOVERY);
    assert_eq!(modes(&ensemble), ["follower", "leader"], "two servers still make a quorum");

    let second = ensemble.leader().expect("a new leader");
    let survivor = (0..3).find(|&i| i != leader && i != second).expect("a third server");
    ensemble.kill(second);
    let answer = wait_until_not_serving(&ensemble, survivor);
    assert!(
        answer.as_deref().is_none_or(|answer| answer.contains(ZooKeeperEnsemble::NOT_SERVING)),
        "the survivor still serves: {answer:?}"
    );
    let waited = catch_unwind(AssertUnwindSafe(|| ensemble.wait_until_serving(RECOVERY)));
    let message = waited.expect_err("no quorum with one server of three");
    let message = message.downcast_ref::<String>().expect("a panic message");
    assert!(message.contains("1 of 3 servers run"), "{message}");

    let started = Instant::now();
    ensemble.restart(leader);
    ensemble.wait_until_serving(RECOVERY);
    println!("the quorum came back {:?} after a restart", started.elapsed());
    assert!(ensemble.is_running(leader));
    assert_eq!(modes(&ensemble), ["follower", "leader"]);
}

/// The modes of the servers that answer, sorted.
fn modes(ensemble: &ZooKeeperEnsemble) -> Vec<String> {
    let mut modes: Vec<String> = (0..3).filter_map(|i| ensemble.server_mode(i)).collect();
    modes.sort();
    modes
}

/// A server whose leader just died says `follower` until it notices (`syncLimit`): polls its
/// `srvr` until it gives no mode, and returns that answer.
fn wait_until_not_serving(ensemble: &ZooKeeperEnsemble, i: usize) -> Option<String> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let answer = ensemble.four_letter_word(i, "srvr");
        let serving = answer.as_deref().is_some_and(|answer| answer.contains("Mode: "));
        if !serving || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
