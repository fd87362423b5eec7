//! Command tasks, as Marathon launches them, on real Mesos 1.11.0 agents that load our module:
//! the volume is created on first use, follows the task to another node, is refused while in
//! use elsewhere, and is let go when a task is killed.

use std::path::Path;
use std::time::Duration;

use flocker_mesos_tests::suite::{Suite, prepared_containers};
use flocker_mesos_tests::{Launcher, Task};

/// A shell line: what file system the task sees at its volume path.
const FSTYPE: &str = r#"findmnt -n -o FSTYPE -T "$(readlink -f "$FLOCKER_CONTAINER_VOLUME_PATH")""#;

/// A task on node `node` that copies its volume's `data` to what the suite calls `seen`.
fn reader(suite: &Suite, seen: &str, volume: &str, node: usize) -> Task {
    let command = format!(
        "set -e; cat \"$FLOCKER_CONTAINER_VOLUME_PATH/data\" > {}",
        suite.seen_path(seen).display()
    );
    Task::new(seen, &command).volume(volume, &suite.path_on(node, volume))
}

#[test]
fn first_use_creates_the_volume_and_the_task_writes_into_it() {
    let suite = Suite::start(1, Launcher::Posix);
    let volume = suite.volume("first-use");
    let path = suite.path_on(0, &volume);
    let task = Task::new(
        "writer",
        &format!(
            "set -e; echo -n first > \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"; {FSTYPE} > {seen}",
            seen = suite.seen_path("fstype").display()
        ),
    )
    .volume(&volume, &path);

    let status = suite.run_to_end(0, &task);

    suite.assert_state(&status, "TASK_FINISHED");
    let states: Vec<String> =
        suite.frameworks[0].statuses(&task.id).into_iter().map(|s| s.state).collect();
    assert!(states.contains(&"TASK_RUNNING".to_owned()), "{states:?}");
    assert_eq!(suite.seen("fstype").trim(), "ext4", "the task saw its volume, a mounted ext4");
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset was created"));
    assert_eq!(dataset.primary, suite.cluster.node(0), "created on the node that ran the task");
    let mounted = suite.cluster.wait_mounted(&dataset.dataset_id, 0);
    assert_eq!(std::fs::read_to_string(mounted.join("data")).ok().as_deref(), Some("first"));
    suite.wait_lease_released(&dataset);
    // The agent's log has our module's lines naming the container it prepared and cleaned up.
    let node = &suite.nodes[0];
    let containers = prepared_containers(&node.log());
    assert_eq!(containers.len(), 1, "one prepare logged:\n{}", node.log());
    let released = format!("container {}: volumes released", containers[0]);
    assert!(node.wait_for_log(&released, Duration::from_secs(10)), "{released} not logged");
    assert!(!Path::new(&path).exists(), "the link at {path} is gone with the task");
}

#[test]
fn the_volume_follows_the_task_to_another_node() {
    let suite = Suite::start(2, Launcher::Posix);
    let volume = suite.volume("follows");
    let token = uuid::Uuid::new_v4().to_string();
    let writer = Task::new(
        "writer",
        &format!("set -e; echo -n {token} > \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"; sync"),
    )
    .volume(&volume, &suite.path_on(0, &volume));
    suite.assert_state(&suite.run_to_end(0, &writer), "TASK_FINISHED");

    suite.assert_state(&suite.run_to_end(1, &reader(&suite, "read", &volume, 1)), "TASK_FINISHED");

    assert_eq!(suite.seen("read"), token, "node B's task read what node A's wrote");
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    assert_eq!(dataset.primary, suite.cluster.node(1), "the dataset moved to node B");
    suite.wait_lease_released(&dataset);
}

/// Node A's task holds the volume; node B's is refused with a reason naming node A, and A's
/// task runs on undisturbed. Then A's task is killed through the API: its lease goes, and the
/// next task on B gets the volume.
#[test]
fn a_volume_in_use_is_refused_elsewhere_until_its_task_is_killed() {
    let suite = Suite::start(2, Launcher::Posix);
    let volume = suite.volume("in-use");
    let path = suite.path_on(0, &volume);
    let holder = Task::new(
        "holder",
        "set -e; echo -n held > \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"; exec sleep 600",
    )
    .volume(&volume, &path);
    suite.run_until_running(0, &holder);
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));

    let intruder = Task::new("intruder", "cat \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"")
        .volume(&volume, &suite.path_on(1, &volume));
    let refused = suite.run_to_end(1, &intruder);

    suite.assert_state(&refused, "TASK_FAILED");
    assert_eq!(refused.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"));
    let node_a = suite.cluster.node(0).to_string();
    let message = refused.message.clone().unwrap_or_default();
    assert!(message.contains(&node_a), "the reason names node A ({node_a}): {message}");
    assert!(message.contains("in use"), "the reason says why: {message}");
    let holder_states: Vec<String> =
        suite.frameworks[0].statuses(&holder.id).into_iter().map(|s| s.state).collect();
    assert_eq!(holder_states.last().map(String::as_str), Some("TASK_RUNNING"), "{holder_states:?}");
    assert_eq!(
        std::fs::read_to_string(Path::new(&path).join("data")).ok().as_deref(),
        Some("held"),
        "A's task still has its volume at its path"
    );
    assert_eq!(suite.leases(&dataset).len(), 1, "A's lease stands");
    assert_eq!(suite.dataset(&volume).map(|d| d.primary), Some(suite.cluster.node(0)));

    // Kill A's task: its lease goes, and B gets the volume.
    let launched_on = suite.frameworks[0].statuses(&holder.id)[0].agent_id.clone();
    suite.frameworks[0]
        .kill(&holder.id, launched_on.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| suite.fail(&e));
    let killed = suite.frameworks[0]
        .wait_for_end(&holder.id, Duration::from_secs(60))
        .unwrap_or_else(|e| suite.fail(&e));
    suite.assert_state(&killed, "TASK_KILLED");
    suite.wait_lease_released(&dataset);

    suite.assert_state(&suite.run_to_end(1, &reader(&suite, "next", &volume, 1)), "TASK_FINISHED");
    assert_eq!(suite.seen("next"), "held");
}
