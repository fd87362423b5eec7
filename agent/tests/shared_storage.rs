//! Two nodes sharing one `root_path` must never take a volume in flight for a missing one, nor
//! replace one. Each race here is made to happen in a chosen order, with the real agents: a
//! [`DirectoryGate`] stops an agent exactly as it opens a directory of the shared root, while
//! the other agent moves the volume.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use flocker_api::{AcquireLease, DatasetId};
use flocker_testkit::{
    AgentProcess, BackendKind, DirectoryGate, LocalCluster, Storage, agent_binary, require_root,
};
use rand::RngCore;

const A: usize = 0;
const B: usize = 1;

fn write_random_file(directory: &Path) -> Vec<u8> {
    let mut bytes = vec![0u8; 1 << 20];
    rand::rng().fill_bytes(&mut bytes);
    let mut file = fs::File::create(directory.join("data.bin")).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
    bytes
}

fn read_data(directory: &Path, cluster: &LocalCluster) -> Vec<u8> {
    fs::read(directory.join("data.bin")).unwrap_or_else(|e| {
        panic!(
            "data.bin is gone from {} ({e}): the volume was replaced by an empty one\n{}",
            directory.display(),
            cluster.logs()
        )
    })
}

/// The interleaving that lost volumes (issue 12): A lists `unattached/` while B still has the
/// volume, B detaches it into `unattached/`, then A lists B's directory. That pass saw the
/// volume nowhere; it must not create a new one, and the move must bring B's bytes to A.
fn a_volume_in_flight_between_two_listings_is_not_taken_for_missing(
    backend: BackendKind,
    storage: Storage,
) {
    require_root();
    let cluster = LocalCluster::start_on_storage(backend, 2, storage);
    let dataset = cluster.create_dataset(B).dataset_id;
    let on_b = cluster.wait_mounted(&dataset, B);
    let written = write_random_file(&on_b);
    // The lease keeps the volume on B while A waits for it, looking again and again.
    let lease = AcquireLease { dataset_id: dataset, node_uuid: cluster.node(B), expires: None };
    cluster.client.acquire_lease(&lease).unwrap();
    cluster.client.move_dataset(&dataset, &cluster.node(A), None).unwrap();
    let b_directory = cluster.shared_root.join("attached").join(&cluster.agents[B].name);
    let gate = DirectoryGate::new(&b_directory);
    let agent_a = cluster.agents[A].pid().expect("agent A runs");
    // A has listed unattached/ (the volume is not there) and is about to list B's directory.
    let held = gate.hold(agent_a, Duration::from_secs(30));
    cluster.client.release_lease(&dataset).unwrap();
    cluster.wait_for("B to detach the volume", Duration::from_secs(30), || {
        cluster.volume_path(&dataset, None).exists()
    });
    drop(held);
    let on_a = cluster.wait_mounted(&dataset, A);
    assert_eq!(read_data(&on_a, &cluster), written, "the bytes differ after the move");
    assert!(
        !cluster.agents[A].log().contains(&format!("dataset {dataset}: Create")),
        "A created a volume for a dataset it saw in flight:\n{}",
        cluster.logs()
    );
}

/// Every name under `root` that belongs to `dataset` (its volume, attached or not, or a
/// temporary one).
fn names_of(root: &Path, dataset: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut directories = vec![root.to_owned()];
    while let Some(directory) = directories.pop() {
        for entry in fs::read_dir(&directory).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !name.contains(dataset) {
                directories.push(entry.path());
            } else if name.contains(dataset) {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

/// What the agent of a node that cannot see `dataset`'s volume says, word for word.
fn not_visible(dataset: &DatasetId) -> String {
    format!(
        "the volume of dataset {dataset} is not visible on this node: is root_path shared with \
         the node that had it? A new, empty volume is never made in place of its data"
    )
}

/// Moves `dataset` (mounted on A, holding data) to B, which cannot see A's storage, and waits
/// until B says so in its log and in `/v1/state/problems`, and A has let the volume go.
fn move_to_a_node_that_cannot_see_it(cluster: &LocalCluster, dataset: &DatasetId) {
    cluster.client.move_dataset(dataset, &cluster.node(B), None).unwrap();
    let expected = not_visible(dataset);
    cluster.wait_for("B to refuse to make a volume", Duration::from_secs(30), || {
        cluster.agents[B].log().contains(&expected)
    });
    cluster.wait_for("B to report why", Duration::from_secs(30), || {
        !cluster.problems(dataset).is_empty()
    });
    let problems = cluster.problems(dataset);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].node_uuid, &problems[0].problem), (cluster.node(B), &expected));
    cluster.wait_for("A to let the volume go", Duration::from_secs(30), || {
        cluster.volume_path_in(dataset, A).exists()
    });
}

/// Defence in depth (issue 12): a move to a node that cannot see the volume's storage. Its agent
/// must not make a new, empty volume under the dataset's id — the task would start on no data —
/// but say why it leaves the dataset as it is (issue 14), and the volume must be found whole
/// when the dataset comes back.
fn a_node_that_cannot_see_the_volume_never_makes_an_empty_one(backend: BackendKind) {
    require_root();
    let cluster = LocalCluster::start_on_storage(backend, 2, Storage::PerNode);
    let dataset = cluster.create_dataset(A).dataset_id;
    let on_a = cluster.wait_mounted(&dataset, A);
    let written = write_random_file(&on_a);
    move_to_a_node_that_cannot_see_it(&cluster, &dataset);
    std::thread::sleep(Duration::from_secs(1)); // B would have acted by now
    let on_b = names_of(&cluster.root_path(B), &dataset.to_string());
    assert!(on_b.is_empty(), "B made a volume: {on_b:?}\n{}", cluster.logs());
    assert_eq!(cluster.mounted_path(&dataset, B), None);
    cluster.client.move_dataset(&dataset, &cluster.node(A), None).unwrap();
    let back = cluster.wait_mounted(&dataset, A);
    assert_eq!(read_data(&back, &cluster), written, "the bytes differ after coming back");
    assert_eq!(cluster.problems(&dataset), [], "B's problem outlived the move back");
    let refusals = cluster.agents[B].log().matches(&not_visible(&dataset)).count();
    assert_eq!(refusals, 1, "the refusal is said once, not on every pass");
}

/// The refusal lasts only while the volume cannot be seen: once it appears in B's `root_path`
/// (as it would once the operator shares the storage), B mounts it, data and all, and its next
/// report no longer carries the problem, though B is still the dataset's primary.
fn a_refusal_ends_when_the_volume_becomes_visible(backend: BackendKind) {
    require_root();
    let cluster = LocalCluster::start_on_storage(backend, 2, Storage::PerNode);
    let dataset = cluster.create_dataset(A).dataset_id;
    let written = write_random_file(&cluster.wait_mounted(&dataset, A));
    move_to_a_node_that_cannot_see_it(&cluster, &dataset);
    let to_b = cluster.volume_path_in(&dataset, B);
    fs::rename(cluster.volume_path_in(&dataset, A), &to_b)
        .unwrap_or_else(|e| panic!("cannot put the volume at {}: {e}", to_b.display()));
    let on_b = cluster.wait_mounted(&dataset, B);
    assert_eq!(read_data(&on_b, &cluster), written, "the bytes differ on B");
    cluster.wait_for("B to stop reporting the problem", Duration::from_secs(30), || {
        cluster.problems(&dataset).is_empty()
    });
}

macro_rules! for_each_backend {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn a_volume_in_flight_between_two_listings_is_not_taken_for_missing() {
                super::a_volume_in_flight_between_two_listings_is_not_taken_for_missing(
                    $kind,
                    Storage::Shared,
                );
            }

            #[test]
            fn a_node_that_cannot_see_the_volume_never_makes_an_empty_one() {
                super::a_node_that_cannot_see_the_volume_never_makes_an_empty_one($kind);
            }

            #[test]
            fn a_refusal_ends_when_the_volume_becomes_visible() {
                super::a_refusal_ends_when_the_volume_becomes_visible($kind);
            }
        }
    };
}

for_each_backend!(loopback, BackendKind::Loopback);
for_each_backend!(directory, BackendKind::Directory);

/// Where the shared root cannot rename without replacing (NFS; bindfs here), volumes move by
/// `link` and `unlink`: every byte arrives, no second name or temporary stays behind, and the
/// torn listing is still no reason to make a volume.
mod without_rename_noreplace {
    use super::*;

    #[test]
    fn moves_keep_every_byte_and_leave_no_second_name() {
        require_root();
        let cluster = LocalCluster::start_on_storage(
            BackendKind::Loopback,
            2,
            Storage::SharedWithoutNoReplace,
        );
        let dataset = cluster.create_dataset(A).dataset_id;
        let mut on = cluster.wait_mounted(&dataset, A);
        let written = write_random_file(&on);
        for (to, from) in [(B, A), (A, B)] {
            cluster.client.move_dataset(&dataset, &cluster.node(to), None).unwrap();
            on = cluster.wait_mounted(&dataset, to);
            assert_eq!(read_data(&on, &cluster), written, "the bytes differ after the move");
            assert!(!cluster.volume_path(&dataset, Some(from)).exists());
        }
        let names = names_of(&cluster.shared_root, &dataset.to_string());
        assert_eq!(names, [cluster.volume_path(&dataset, Some(A)).display().to_string()]);
        let links = fs::metadata(cluster.volume_path(&dataset, Some(A))).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&links), 1);
        assert!(cluster.agents[A].log().contains("moved by link and unlink"));
    }

    #[test]
    fn a_volume_in_flight_between_two_listings_is_not_taken_for_missing() {
        super::a_volume_in_flight_between_two_listings_is_not_taken_for_missing(
            BackendKind::Loopback,
            Storage::SharedWithoutNoReplace,
        );
    }

    #[test]
    fn the_directory_backend_refuses_to_start_saying_why() {
        require_root();
        let cluster = LocalCluster::start_on_storage(
            BackendKind::Loopback,
            1,
            Storage::SharedWithoutNoReplace,
        );
        let mut agent = AgentProcess::start(
            &agent_binary(),
            &cluster.certificates,
            "node-d",
            cluster.control.agent.port(),
            BackendKind::Directory,
            &cluster.shared_root.join("directories"),
        )
        .unwrap();
        cluster.wait_for("the directory agent to stop", Duration::from_secs(30), || {
            !agent.is_running()
        });
        assert!(agent.log().contains("put root_path on a local file system"), "{}", agent.log());
    }
}
