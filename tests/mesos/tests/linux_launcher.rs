//! With the Linux launcher a relative `FLOCKER_CONTAINER_VOLUME_PATH` is a bind mount that
//! Mesos makes inside the task's own mount namespace: the task sees its volume in its sandbox,
//! and the host's mount table never shows it.

use std::time::Duration;

use flocker_mesos_tests::suite::{Suite, TASK_TIMEOUT};
use flocker_mesos_tests::{Launcher, Task};

/// Mount points at or under `directory` in a mount table (`/proc/<pid>/mountinfo`).
fn mounts_under(mountinfo: &str, directory: &std::path::Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| std::path::Path::new(point).starts_with(directory))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_relative_path_is_a_bind_mount_in_the_tasks_own_namespace_only() {
    let suite = Suite::start(1, Launcher::Linux);
    let volume = suite.volume("bind");
    let task = Task::new(
        "bound",
        &format!(
            "set -e; echo -n bound > data/file; \
             findmnt -n -o FSTYPE -T \"$MESOS_SANDBOX/data\" > {fstype}; \
             grep -c \" $MESOS_SANDBOX/data \" /proc/self/mountinfo > {mounts}; \
             while [ ! -e {go} ]; do sleep 0.1; done",
            fstype = suite.seen_path("fstype").display(),
            mounts = suite.seen_path("mounts").display(),
            go = suite.go_path("bound").display()
        ),
    )
    .volume(&volume, "data");
    suite.run_until_running(0, &task);
    suite.wait_until("the task to look", Duration::from_secs(30), || {
        suite.seen_path("mounts").exists()
    });

    assert_eq!(suite.seen("fstype").trim(), "ext4", "the task sees its volume at data/");
    assert_eq!(suite.seen("mounts").trim(), "1", "mounted once, in the task's namespace");
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let work_dir = &suite.nodes[0].work_dir;
    assert_eq!(mounts_under(&host, work_dir), Vec::<String>::new(), "nothing in the host's table");

    suite.go("bound");
    let end =
        suite.frameworks[0].wait_for_end(&task.id, TASK_TIMEOUT).unwrap_or_else(|e| suite.fail(&e));
    suite.assert_state(&end, "TASK_FINISHED");
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    let mounted = suite.cluster.wait_mounted(&dataset.dataset_id, 0);
    assert_eq!(std::fs::read_to_string(mounted.join("file")).ok().as_deref(), Some("bound"));
    suite.wait_lease_released(&dataset);
}
