//! A task group on the default executor, as Marathon launches pods: each task is a nested
//! container, and its volume works like a command task's, across an agent restart too.

use std::path::Path;
use std::time::Duration;

use flocker_mesos_tests::suite::{Suite, TASK_TIMEOUT};
use flocker_mesos_tests::{Launcher, Task};

#[test]
fn a_nested_task_gets_its_volume_and_keeps_it_across_an_agent_restart() {
    let mut suite = Suite::start(1, Launcher::Posix);
    let volume = suite.volume("pod");
    let path = suite.path_on(0, &volume);
    let task = Task::new(
        "pod-task",
        &format!(
            "set -e; echo -n nested > \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"; \
             while [ ! -e {go} ]; do sleep 0.1; done; \
             cat \"$FLOCKER_CONTAINER_VOLUME_PATH/data\" > {seen}",
            go = suite.go_path("pod").display(),
            seen = suite.seen_path("pod").display()
        ),
    )
    .volume(&volume, &path);
    let executor = format!("pod-executor-{}", uuid::Uuid::new_v4().simple());
    suite.frameworks[0]
        .launch_group(&executor, std::slice::from_ref(&task))
        .unwrap_or_else(|e| suite.fail(&e));
    suite.frameworks[0]
        .wait_for_state(&task.id, &["TASK_RUNNING"], TASK_TIMEOUT)
        .unwrap_or_else(|e| suite.fail(&e));
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    suite.wait_until("the task to write", Duration::from_secs(30), || {
        std::fs::read_to_string(Path::new(&path).join("data")).is_ok_and(|t| t == "nested")
    });

    let recovered = suite.restart_node(0, &task.id);

    assert_eq!(recovered.state, "TASK_RUNNING", "{}", recovered.describe());
    assert!(
        suite.nodes[0].wait_for_log("recover: Mesos knows 2 container(s)", Duration::from_secs(10)),
        "recover lists the executor's container and the nested one"
    );
    assert_eq!(suite.leases(&dataset).len(), 1, "the lease stands across the restart");
    suite.go("pod");
    let end =
        suite.frameworks[0].wait_for_end(&task.id, TASK_TIMEOUT).unwrap_or_else(|e| suite.fail(&e));
    suite.assert_state(&end, "TASK_FINISHED");
    assert_eq!(suite.seen("pod"), "nested");
    suite.wait_lease_released(&dataset);
    suite.wait_until("the link to go", Duration::from_secs(10), || !Path::new(&path).exists());
}
