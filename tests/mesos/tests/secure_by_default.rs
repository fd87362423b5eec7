//! Issue 14 on a real Mesos 1.11.0 agent: a task running as an ordinary user owns its new
//! volume and writes to it while other users cannot; a read-only volume refuses writes; a host
//! path outside the operator's `host_path_roots` fails the task with the reason.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use flocker_mesos_tests::suite::Suite;
use flocker_mesos_tests::{Launcher, Task};
use nix::unistd::User;

fn user(name: &str) -> User {
    User::from_name(name).ok().flatten().unwrap_or_else(|| panic!("this host has no user {name}"))
}

#[test]
fn a_task_running_as_an_ordinary_user_owns_its_new_volume_and_other_users_cannot_write() {
    let suite = Suite::start(1, Launcher::Linux);
    let volume = suite.volume("owned");
    let writer = Task::new("writer", "set -e; echo -n mine > data/file")
        .user("nobody")
        .volume(&volume, "data");
    suite.assert_state(&suite.run_to_end(0, &writer), "TASK_FINISHED");

    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    let mounted = suite.cluster.wait_mounted(&dataset.dataset_id, 0);
    let nobody = user("nobody");
    let root = std::fs::metadata(&mounted).unwrap_or_else(|e| suite.fail(&e.to_string()));
    assert_eq!(root.uid(), nobody.uid.as_raw(), "the volume's root is the task user's");
    assert_eq!(root.permissions().mode() & 0o7777, 0o755, "and no one else may write");
    let file =
        std::fs::metadata(mounted.join("file")).unwrap_or_else(|e| suite.fail(&e.to_string()));
    assert_eq!(file.uid(), nobody.uid.as_raw(), "the task wrote as its user");
    suite.wait_lease_released(&dataset);

    // Another user's task gets the volume, keeps its owner, and cannot write to it.
    let intruder = Task::new("intruder", "if touch data/other; then exit 1; fi; cat data/file")
        .user("daemon")
        .volume(&volume, "data");
    suite.assert_state(&suite.run_to_end(0, &intruder), "TASK_FINISHED");
    let mounted = suite.cluster.wait_mounted(&dataset.dataset_id, 0);
    assert!(!mounted.join("other").exists(), "user daemon wrote to nobody's volume");
    assert_eq!(std::fs::metadata(&mounted).map(|m| m.uid()).ok(), Some(nobody.uid.as_raw()));
    suite.wait_lease_released(&dataset);
}

#[test]
fn a_read_only_volume_refuses_the_tasks_writes_and_shows_its_data() {
    let suite = Suite::start(1, Launcher::Linux);
    let volume = suite.volume("read-only");
    let writer = Task::new("writer", "set -e; echo -n report > data/file").volume(&volume, "data");
    suite.assert_state(&suite.run_to_end(0, &writer), "TASK_FINISHED");

    let reader = Task::new(
        "reader",
        &format!(
            "set -e; cat data/file > {seen}; if touch data/new 2> {error}; then exit 1; fi",
            seen = suite.seen_path("read").display(),
            error = suite.seen_path("error").display()
        ),
    )
    .volume(&volume, "data")
    .env("FLOCKER_CONTAINER_VOLUME_MODE", "ro");
    suite.assert_state(&suite.run_to_end(0, &reader), "TASK_FINISHED");
    assert_eq!(suite.seen("read"), "report", "the task read its volume");
    assert!(suite.seen("error").contains("Read-only file system"), "{}", suite.seen("error"));
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    let mounted = suite.cluster.wait_mounted(&dataset.dataset_id, 0);
    assert!(!mounted.join("new").exists());
    suite.wait_lease_released(&dataset);
}

#[test]
fn a_host_path_outside_the_roots_fails_the_task_with_the_reason() {
    let suite = Suite::start(1, Launcher::Posix);
    let volume = suite.volume("outside");
    // Outside the default root (/tmp); if the module were to link it anyway, only this
    // directory of ours would see it.
    let outside = format!("/var/tmp/flocker-outside-{}", uuid::Uuid::new_v4().simple());
    let path = format!("{outside}/cron.d/x");
    let task =
        Task::new("outside", "touch \"$FLOCKER_CONTAINER_VOLUME_PATH/x\"").volume(&volume, &path);
    let status = suite.run_to_end(0, &task);
    let linked = Path::new(&outside).exists();
    let _ = std::fs::remove_dir_all(&outside);

    suite.assert_state(&status, "TASK_FAILED");
    assert_eq!(status.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"));
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains(&path) && message.contains("host_path_roots (/tmp)"),
        "the reason names the path and the parameter: {message}"
    );
    assert!(!linked, "something was made at {outside}");
    assert!(suite.dataset(&volume).is_none(), "no dataset was created");
}
