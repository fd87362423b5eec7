//! A volume used by a Mesos task on a real Mesos 1.11.0 agent loading our module, then by a
//! Docker container (Debian's docker.io, our `flocker-docker-plugin`) on another node, then by
//! a Mesos task again: one dataset, the same bytes, whoever asks for it.

use flocker_mesos_tests::suite::Suite;
use flocker_mesos_tests::{Launcher, Task};
use flocker_testkit::docker::{
    BUSYBOX_IMAGE, DockerDaemon, DockerPlugin, plugin_socket, require_docker, unique_plugin_name,
};

#[test]
fn a_mesos_task_and_a_docker_container_on_another_node_use_one_volume_in_turn() {
    require_docker();
    let suite = Suite::start(2, Launcher::Posix);
    let volume = suite.volume("with-docker");
    let token = uuid::Uuid::new_v4().to_string();
    let writer = Task::new(
        "writer",
        &format!("set -e; echo -n {token} > \"$FLOCKER_CONTAINER_VOLUME_PATH/data\"; sync"),
    )
    .volume(&volume, &suite.path_on(0, &volume));
    suite.assert_state(&suite.run_to_end(0, &writer), "TASK_FINISHED");
    let dataset = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    suite.wait_lease_released(&dataset);

    // Node B runs Docker: its daemon, and our plugin under a name of its own (Docker finds
    // plugins in one directory shared by every daemon on this machine). The plugin is declared
    // first so that the daemon, dropped first, unmounts through it.
    let driver = unique_plugin_name("flocker");
    let _plugin = DockerPlugin::start(&suite.cluster, 1, Some(plugin_socket(&driver)));
    let docker = DockerDaemon::start(&suite.scratch.path().join("docker"));
    docker.import_busybox();
    let script = "cat /data/data; echo -n from-docker > /data/data; sync";
    let seen = docker.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volume",
        &format!("{volume}:/data"),
        "--volume-driver",
        &driver,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(seen.trim(), token, "the container read what the Mesos task wrote");
    let moved = suite.dataset(&volume).unwrap_or_else(|| suite.fail("no dataset"));
    assert_eq!(moved.dataset_id, dataset.dataset_id, "one dataset, not a new one");
    assert_eq!(moved.primary, suite.cluster.node(1), "moved to the Docker node");
    suite.wait_lease_released(&moved);

    let command = format!(
        "set -e; cat \"$FLOCKER_CONTAINER_VOLUME_PATH/data\" > {}",
        suite.seen_path("again").display()
    );
    let reader = Task::new("again", &command).volume(&volume, &suite.path_on(0, &volume));
    suite.assert_state(&suite.run_to_end(0, &reader), "TASK_FINISHED");
    assert_eq!(suite.seen("again"), "from-docker", "the Mesos task read what the container wrote");
}
