//! `kill -9` of the Mesos agent while a task runs, and a start on the same work directory:
//! Mesos recovers its containers and calls our `recover`; a task still running keeps its
//! volume and its lease, and a task that ended meanwhile is cleaned up.

use std::path::Path;
use std::time::Duration;

use flocker_mesos_tests::suite::{Suite, TASK_TIMEOUT};
use flocker_mesos_tests::{Launcher, Task};

/// A task that writes, waits for the test's go, then reads its volume again.
fn waiting_task(suite: &Suite, name: &str, volume: &str, path: &str) -> Task {
    let go = suite.go_path(name);
    let seen = suite.seen_path(name);
    Task::new(
        name,
        &format!(
            "set -e; echo -n before > \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"; \
             while [ ! -e {go} ]; do sleep 0.1; done; \
             cat \"$FLOCKER_CONTAINER_VOLUME_PATH/data\" > {seen}",
            go = go.display(),
            seen = seen.display()
        ),
    )
    .volume(volume, path)
}

#[test]
fn a_running_task_keeps_its_volume_across_an_agent_restart() {
    let mut suite = Suite::start(1, Launcher::Posix);
    let volume = suite.volume("restart");
    let path = suite.path_on(0, &volume);
    let task = waiting_task(&suite, "survivor", &volume, &path);
    suite.run_until_running(0, &task);
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));

    let recovered = suite.restart_node(0, &task.id);

    assert_eq!(recovered.state, "TASK_RUNNING", "{}", recovered.describe());
    let node = &suite.nodes[0];
    assert!(
        node.wait_for_log("recover: Mesos knows 1 container(s)", Duration::from_secs(10)),
        "Mesos called our recover with the running container"
    );
    assert_eq!(suite.leases(&dataset).len(), 1, "the lease stands across the restart");
    assert!(Path::new(&path).join("data").exists(), "the volume is still at the task's path");

    suite.go("survivor");
    let end =
        suite.frameworks[0].wait_for_end(&task.id, TASK_TIMEOUT).unwrap_or_else(|e| suite.fail(&e));
    suite.assert_state(&end, "TASK_FINISHED");
    assert_eq!(suite.seen("survivor"), "before", "the task read its volume after the restart");
    suite.wait_lease_released(&dataset);
    suite.wait_until("the link to go", Duration::from_secs(10), || !Path::new(&path).exists());
}

#[test]
fn a_task_that_ended_while_the_agent_was_down_is_cleaned_up_after_the_restart() {
    let mut suite = Suite::start(1, Launcher::Posix);
    let volume = suite.volume("ended-while-down");
    let path = suite.path_on(0, &volume);
    let task = waiting_task(&suite, "leaver", &volume, &path);
    suite.run_until_running(0, &task);
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));

    suite.nodes[0].kill9();
    suite.go("leaver");
    suite.wait_until("the task to end with the agent down", Duration::from_secs(30), || {
        suite.seen_path("leaver").exists()
    });
    let after = suite.restart_node(0, &task.id);

    let end = if after.is_terminal() {
        after
    } else {
        suite.frameworks[0].wait_for_end(&task.id, TASK_TIMEOUT).unwrap_or_else(|e| suite.fail(&e))
    };
    assert!(end.is_terminal(), "{}", end.describe());
    suite.wait_lease_released(&dataset);
    suite.wait_until("the link to go", Duration::from_secs(10), || !Path::new(&path).exists());
    assert!(
        suite.nodes[0].log().contains("volumes released"),
        "our cleanup ran for the task's container"
    );
}
