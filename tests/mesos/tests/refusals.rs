//! What a real agent does when our module cannot work: bad module parameters keep the agent
//! from starting, with a log that names the parameter; a control service that is down fails
//! the task with a reason that says so, and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flocker_isolator_core::checkpoint::Checkpoints;
use flocker_mesos_tests::suite::{Suite, tail};
use flocker_mesos_tests::{Launcher, MesosNode, Runtime, Task};
use flocker_testkit::{BackendKind, LocalCluster, require_root};

/// Starts an agent whose module gets `parameters` and expects it to exit, naming `parameter`.
fn assert_agent_refuses(runtime: &Runtime, parameters: &serde_json::Value, parameter: &str) {
    let mut node = MesosNode::spawn(runtime, parameters, Launcher::Posix, &[]);
    let status = node.wait_exit(Duration::from_secs(60));
    let log = node.log();
    let status = status.unwrap_or_else(|| panic!("the agent started anyway:\n{}", tail(&log, 50)));
    assert!(!status.success(), "the agent exited {status}:\n{}", tail(&log, 50));
    assert!(
        log.contains("Failed to create isolator")
            || log.contains("Cannot create the Flocker isolator"),
        "the agent says the isolator could not be made:\n{}",
        tail(&log, 50)
    );
    assert!(
        log.contains(&format!("'{parameter}'")),
        "the log names '{parameter}':\n{}",
        tail(&log, 50)
    );
}

#[test]
fn bad_module_parameters_keep_the_agent_from_starting_and_the_log_names_them() {
    require_root();
    let runtime = Runtime::from_env();
    let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let good = cluster.isolator_parameters(0);

    let mut misspelt = good.clone();
    let port = misspelt["control_service_port"].take();
    misspelt.as_object_mut().map(|o| o.remove("control_service_port"));
    misspelt["control_service_prot"] = port;
    assert_agent_refuses(&runtime, &misspelt, "control_service_prot");

    let mut malformed = good.clone();
    malformed["mount_timeout_seconds"] = "forever".into();
    assert_agent_refuses(&runtime, &malformed, "mount_timeout_seconds");
}

#[test]
fn with_the_control_service_down_the_task_fails_saying_so_and_nothing_is_left_behind() {
    let mut suite = Suite::start(1, Launcher::Posix);
    let volume = suite.volume("control-down");
    let path = suite.path_on(0, &volume);
    suite.cluster.kill_control();

    let task =
        Task::new("orphan", "touch \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"").volume(&volume, &path);
    let status = suite.run_to_end(0, &task);

    suite.assert_state(&status, "TASK_FAILED");
    assert_eq!(status.reason.as_deref(), Some("REASON_CONTAINER_LAUNCH_FAILED"));
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("control service"), "the reason says what is down: {message}");
    assert!(!Path::new(&path).exists(), "nothing at the task's path");
    assert!(suite.nodes[0].processes().is_empty(), "no executor or task left running");

    // With the agent stopped, the module's journal has no container left in it.
    suite.nodes[0].kill9();
    let state_dir = PathBuf::from(
        suite.cluster.isolator_parameters(0)["state_dir"].as_str().unwrap_or_default(),
    );
    let checkpoints = Checkpoints::open(&state_dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(checkpoints.all().is_empty(), "no checkpoint left: {:?}", checkpoints.all());
    // And the control service, back, has no dataset and no lease for the volume.
    suite.cluster.restart_control();
    assert!(suite.dataset(&volume).is_none(), "no dataset was created");
    assert!(suite.cluster.client.list_leases().unwrap_or_default().is_empty(), "no lease");
}
