//! A crowd of new volumes at once: every one is created and mounted, they are worked on side by
//! side (a volume is mounted while others are still to be made, not all near the end), and one
//! that fails holds up none of the others, which are shown in the state meanwhile.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use flocker_api::DatasetId;
use flocker_dataset_agent::steps::STEP_WORKERS;
use flocker_testkit::{BackendKind, LocalCluster, require_root};

/// More datasets than workers, so that most wait for one.
const CROWD: usize = 3 * STEP_WORKERS;

/// Creates datasets with these ids on node 0, all at once (a thread each, as isolators would).
fn create_at_once(cluster: &LocalCluster, ids: &[DatasetId]) {
    std::thread::scope(|scope| {
        for id in ids {
            scope.spawn(|| cluster.create_dataset_with_id(0, Some(*id)).expect("a create"));
        }
    });
}

/// The datasets the state shows mounted on node 0, with their paths.
fn shown_mounted(cluster: &LocalCluster) -> BTreeSet<(DatasetId, String)> {
    let node = cluster.node(0);
    let states = cluster.client.dataset_states().unwrap_or_else(|e| panic!("{e}"));
    states
        .into_iter()
        .filter(|state| state.primary == Some(node))
        .filter_map(|state| Some((state.dataset_id, state.path?)))
        .collect()
}

fn is_mount_point(path: &str) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts.lines().any(|line| line.split(' ').nth(4) == Some(path))
}

/// Where the agent's log first says `needle`.
fn first_in_log(log: &str, needle: &str) -> Option<usize> {
    log.find(needle)
}

#[test]
fn a_crowd_of_new_volumes_is_all_mounted_one_by_one_not_all_near_the_end() {
    require_root();
    let mut cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let crowd: Vec<DatasetId> = (0..CROWD).map(|_| DatasetId::random()).collect();
    // The whole crowd in the agent's first configuration, rather than a few at a time.
    cluster.agents[0].kill();
    create_at_once(&cluster, &crowd);
    cluster.agents[0].restart().unwrap_or_else(|e| panic!("{e}"));
    let mut shown = BTreeSet::new();
    cluster.wait_for("the whole crowd to be shown mounted", Duration::from_secs(120), || {
        shown = shown_mounted(&cluster);
        crowd.iter().all(|id| shown.iter().any(|(s, _)| s == id))
    });
    for (id, path) in shown.iter().filter(|(id, _)| crowd.contains(id)) {
        assert!(is_mount_point(path), "dataset {id} is shown at {path}, which is no mount point");
    }
    // A step at a time for the whole crowd would make every volume before mounting any: here
    // the first mounts start while volumes of the crowd are still to be made.
    let log = cluster.agents[0].log();
    let first_mount = crowd.iter().filter_map(|id| first_in_log(&log, &format!("{id}: Mount")));
    let last_create =
        crowd.iter().filter_map(|id| first_in_log(&log, &format!("{id}: Create"))).max();
    let (Some(first_mount), Some(last_create)) = (first_mount.min(), last_create) else {
        panic!("the steps are not in the log:\n{log}");
    };
    assert!(first_mount < last_create, "no volume was mounted before the last was made:\n{log}");
}

#[test]
fn a_dataset_whose_step_fails_holds_up_none_of_the_crowd_and_the_others_are_shown_meanwhile() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 1, &[]);
    let crowd: Vec<DatasetId> = (0..CROWD).map(|_| DatasetId::random()).collect();
    // Someone's files where one of them would be mounted: its mount fails until they go.
    let blocked = crowd[CROWD / 2];
    let in_the_way = cluster.agents[0].mount_point(&blocked.to_string());
    fs::create_dir_all(&in_the_way).unwrap();
    fs::write(in_the_way.join("precious"), b"not ours").unwrap();
    create_at_once(&cluster, &crowd);
    let others: Vec<&DatasetId> = crowd.iter().filter(|id| **id != blocked).collect();
    cluster.wait_for("the others to be shown mounted", Duration::from_secs(120), || {
        let shown = shown_mounted(&cluster);
        others.iter().all(|id| shown.iter().any(|(s, _)| s == *id))
    });
    assert!(!shown_mounted(&cluster).iter().any(|(id, _)| *id == blocked));
    let log = cluster.agents[0].log();
    assert!(log.contains(&format!("dataset {blocked}: Mount failed")), "{log}");
    assert_eq!(fs::read(in_the_way.join("precious")).unwrap(), b"not ours");
    fs::remove_file(in_the_way.join("precious")).unwrap();
    cluster.wait_mounted(&blocked, 0);
}
