//! The transfer primitives on real btrfs: two pools, A (the owner) and B (the new node), and
//! streams between them through an OS pipe or memory. Needs root (loop devices, mounts).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use flocker_api::DatasetId;
use flocker_dataset_agent::command::CommandError;
use flocker_dataset_agent::transfer::plan::{
    Generation, Handoff, Phase, Send, choose_send, deletable, push_step,
};
use flocker_dataset_agent::transfer::stream::Digest;
use flocker_dataset_agent::transfer::{
    Pool, Progress, Snapshot, TransferError, cleanup_incoming, promote, receive, remove_snapshot,
    send, snapshots, take_snapshot,
};
use flocker_testkit::btrfs::BtrfsPool;
use flocker_testkit::require_root;
use sha2::{Digest as _, Sha256};

const MIB: u64 = 1 << 20;

/// A node's pool and a dataset's writable volume in it.
struct Node {
    disk: BtrfsPool,
    pool: Pool,
}

impl Node {
    fn new(size: u64) -> Self {
        let disk = BtrfsPool::new(size);
        let pool = Pool::new(disk.path());
        Self { disk, pool }
    }

    fn volume(&self, dataset: &DatasetId) -> PathBuf {
        let volume = self.pool.volumes().join(format!("{dataset}_{}", 1u64 << 30));
        fs::create_dir_all(self.pool.volumes()).unwrap();
        btrfs(&["subvolume", "create", volume.to_str().unwrap()]);
        volume
    }

    fn disk_path(&self) -> &Path {
        self.disk.path()
    }

    /// What is left under `snapshots/<dataset>/`.
    fn incoming(&self, dataset: &DatasetId) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.pool.snapshots_of(dataset)) else { return vec![] };
        entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    fn volumes(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.pool.volumes()) else { return vec![] };
        entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }
}

fn btrfs(arguments: &[&str]) {
    let output = Command::new("btrfs").args(arguments).output().unwrap();
    assert!(
        output.status.success(),
        "btrfs {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Appends `bytes` random bytes to `data` in `volume`.
fn write_random(volume: &Path, bytes: u64) {
    let mut file =
        fs::OpenOptions::new().create(true).append(true).open(volume.join("data")).unwrap();
    let copied = io::copy(&mut fs::File::open("/dev/urandom").unwrap().take(bytes), &mut file);
    assert_eq!(copied.unwrap(), bytes);
    file.sync_all().unwrap();
}

/// The "Limit referenced" line of `btrfs subvolume show`.
fn limit_of(volume: &Path) -> String {
    let output = Command::new("btrfs").args(["subvolume", "show"]).arg(volume).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().find(|line| line.contains("Limit referenced")).unwrap_or_default().to_owned()
}

fn sha256_of(file: &Path) -> String {
    let mut hasher = Sha256::new();
    io::copy(&mut fs::File::open(file).unwrap(), &mut hasher).unwrap();
    format!("{:x}", hasher.finalize())
}

/// The stream of `snapshot` (the difference from `parent`), in memory.
fn stream(snapshot: &Snapshot, parent: Option<&Snapshot>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let sent = send(snapshot, parent, &mut bytes, |_| {}).unwrap();
    assert_eq!(sent.bytes, bytes.len() as u64);
    bytes
}

/// A dataset on A with `megabytes` of data and its first snapshot.
fn first_snapshot(a: &Node, megabytes: u64) -> (DatasetId, PathBuf, Snapshot) {
    let dataset = DatasetId::random();
    let volume = a.volume(&dataset);
    write_random(&volume, megabytes * MIB);
    let step = push_step(Phase::PreCopy, &[], &[]);
    let snapshot = take_snapshot(&a.pool, &volume, &dataset, step.take).unwrap();
    (dataset, volume, snapshot)
}

#[test]
fn a_volume_moves_whole_by_a_full_send_then_a_difference() {
    require_root();
    let (a, b) = (Node::new(1 << 30), Node::new(1 << 30));
    let (dataset, volume, first) = first_snapshot(&a, 32);
    assert_eq!(first.path, a.pool.snapshots_of(&dataset).join("0000000001"));

    // The pre-copy: the whole snapshot, through a pipe as it would go through a socket.
    let estimate = snapshots::estimate(&first, None).unwrap();
    assert_eq!(estimate, 32 * MIB);
    let (reader, writer) = io::pipe().unwrap();
    let sender = std::thread::spawn({
        let first = first.clone();
        move || {
            let mut reports = Vec::new();
            let sent = send(&first, None, writer, |bytes| reports.push(bytes));
            (sent, reports)
        }
    });
    let received = receive(&b.pool, &dataset, reader, None).unwrap();
    let (sent, reports) = sender.join().unwrap();
    let sent = sent.unwrap();
    assert_eq!((received.bytes, received.digest), (sent.bytes, sent.digest));
    assert_eq!(reports.last(), Some(&sent.bytes));
    let halfway = Progress { sent: reports[reports.len() / 2], estimate: Some(estimate) };
    assert!(halfway.to_string().ends_with(" MiB of 32 MiB"), "{halfway}");
    assert_eq!(received.parent, None);
    assert_eq!(received.snapshot.subvolume.received_uuid, Some(first.subvolume.uuid));
    assert!(received.snapshot.subvolume.readonly);

    let name = format!("{dataset}_{}", 1u64 << 30);
    let on_b = promote(&b.pool, &received.snapshot, &name, Some(1 << 30)).unwrap();
    assert!(limit_of(&on_b).contains("1.00GiB"), "{}", limit_of(&on_b));
    assert_eq!(sha256_of(&on_b.join("data")), sha256_of(&first.path.join("data")));
    fs::write(on_b.join("written-on-b"), "the promoted volume is writable").unwrap();

    // The task wrote on; the final step sends only what changed since the pre-copy.
    write_random(&volume, 2 * MIB);
    let ours = [first.held()];
    let theirs = [received.snapshot.held()];
    let step = push_step(Phase::Final, &ours, &theirs);
    let parent = first.generation;
    assert_eq!(step.send, Send::Incremental { parent, snapshot: step.take });
    let second = take_snapshot(&a.pool, &volume, &dataset, step.take).unwrap();
    let estimate = snapshots::estimate(&second, Some(&first)).unwrap();
    assert_eq!(estimate, 2 * MIB);
    let difference = stream(&second, Some(&first));
    let (full, difference_length) = (sent.bytes, difference.len() as u64);
    assert!(difference_length > 2 * MIB && difference_length < 3 * MIB, "{difference_length}");
    assert!(difference_length * 10 < full, "difference {difference_length}, full {full}");

    let digest = Digest(Sha256::digest(&difference).into());
    let latest = receive(&b.pool, &dataset, &difference[..], Some(digest)).unwrap();
    assert_eq!(latest.parent, Some(first.subvolume.uuid));
    let error = promote(&b.pool, &latest.snapshot, &name, None).unwrap_err();
    assert!(matches!(error, TransferError::VolumeExists { .. }), "{error}");
    assert!(on_b.join("written-on-b").exists(), "the existing volume was touched");
    let again = promote(&b.pool, &latest.snapshot, &format!("{name}-2"), None).unwrap();
    assert_eq!(sha256_of(&again.join("data")), sha256_of(&volume.join("data")));

    let ours = [first.held(), second.held()];
    let theirs: Vec<_> =
        snapshots::received(&b.pool, &dataset).unwrap().iter().map(Snapshot::held).collect();
    assert_eq!(choose_send(&ours, &theirs), Send::Nothing);
    assert!(b.incoming(&dataset).iter().all(|name| name.parse::<u32>().is_ok()));

    // B confirmed both: A lets go of the first and keeps the common parent until the handoff.
    assert_eq!(deletable(&ours, &theirs, Handoff::InProgress), [first.generation]);
    remove_snapshot(&first).unwrap();
    let left: Vec<_> =
        snapshots::taken(&a.pool, &dataset).unwrap().iter().map(Snapshot::held).collect();
    assert_eq!(left, [second.held()]);
}

/// Fails every write once `left` bytes went through, as a connection that breaks does.
struct Breaks<W> {
    inner: W,
    left: usize,
}

impl<W: Write> Write for Breaks<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "the connection broke"));
        }
        let n = self.inner.write(&bytes[..bytes.len().min(self.left)])?;
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_stream_cut_short_leaves_nothing_on_the_receiver() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let (dataset, _, first) = first_snapshot(&a, 16);
    let (reader, writer) = io::pipe().unwrap();
    let sender = std::thread::spawn({
        let first = first.clone();
        move || send(&first, None, Breaks { inner: writer, left: 8 << 20 }, |_| {})
    });
    let error = receive(&b.pool, &dataset, reader, None).unwrap_err();
    assert!(matches!(error, TransferError::Truncated { bytes, .. } if bytes == 8 << 20), "{error}");
    let error = sender.join().unwrap().unwrap_err();
    assert!(matches!(error, TransferError::Write { .. }), "{error}");
    assert!(error.to_string().contains("bytes; btrfs send was stopped"), "{error}");
    assert_eq!((b.incoming(&dataset), b.volumes()), (vec![], vec![]));
    assert!(first.path.exists(), "the sender's snapshot is kept");

    // A cut exactly between two commands is no end either.
    let bytes = stream(&first, None);
    let error = receive(&b.pool, &dataset, &bytes[..bytes.len() - 10], None).unwrap_err();
    assert!(matches!(error, TransferError::Truncated { .. }), "{error}");
    assert_eq!(b.incoming(&dataset), Vec::<String>::new());
    receive(&b.pool, &dataset, &bytes[..], None).expect("the whole stream still arrives");
}

#[test]
fn a_corrupt_stream_is_refused_and_cleaned_up() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let (dataset, _, first) = first_snapshot(&a, 8);
    let mut bytes = stream(&first, None);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let error = receive(&b.pool, &dataset, &bytes[..], None).unwrap_err();
    let TransferError::Receive { source: CommandError::Failed { stderr, .. }, .. } = &error else {
        panic!("{error}")
    };
    assert!(stderr.contains("crc32 mismatch"), "{stderr}");
    assert_eq!(b.incoming(&dataset), Vec::<String>::new());
}

#[test]
fn a_stream_whose_digest_is_not_the_senders_is_refused_and_cleaned_up() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let (dataset, _, first) = first_snapshot(&a, 8);
    let bytes = stream(&first, None);
    let wrong = Digest([7; 32]);
    let error = receive(&b.pool, &dataset, &bytes[..], Some(wrong)).unwrap_err();
    assert!(matches!(error, TransferError::DigestMismatch { expected, .. } if expected == wrong));
    assert_eq!(b.incoming(&dataset), Vec::<String>::new());
    let right = Digest(Sha256::digest(&bytes).into());
    let received = receive(&b.pool, &dataset, &bytes[..], Some(right)).unwrap();
    let error = receive(&b.pool, &dataset, &bytes[..], Some(right)).unwrap_err();
    assert!(matches!(error, TransferError::AlreadyReceived { .. }), "{error}");
    assert!(received.snapshot.path.exists(), "a refused repeat keeps the first copy");
}

#[test]
fn a_receiver_without_room_fails_clearly_and_the_sender_keeps_everything() {
    require_root();
    let (a, b) = (Node::new(1 << 30), Node::new(256 * MIB));
    let (dataset, volume, first) = first_snapshot(&a, 300);
    let before = sha256_of(&volume.join("data"));
    let (reader, writer) = io::pipe().unwrap();
    let sender = std::thread::spawn({
        let first = first.clone();
        move || send(&first, None, writer, |_| {})
    });
    let error = receive(&b.pool, &dataset, reader, None).unwrap_err();
    let TransferError::Receive { source: CommandError::Failed { stderr, .. }, .. } = &error else {
        panic!("{error}")
    };
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let error = sender.join().unwrap().unwrap_err();
    assert!(matches!(error, TransferError::Write { .. }), "{error}");
    assert_eq!(b.incoming(&dataset), Vec::<String>::new());
    assert!(first.path.exists());
    assert_eq!(sha256_of(&first.path.join("data")), before);
    assert_eq!(sha256_of(&volume.join("data")), before);
}

#[test]
fn at_start_partial_receives_and_half_made_volumes_are_deleted_and_complete_ones_kept() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let (dataset, volume, first) = first_snapshot(&a, 4);
    let kept = receive(&b.pool, &dataset, &stream(&first, None)[..], None).unwrap();
    // What a crash leaves: a receive cut short by the agent's death, and a half-made volume.
    write_random(&volume, MIB);
    let second = take_snapshot(
        &a.pool,
        &volume,
        &dataset,
        push_step(Phase::PreCopy, &[first.held()], &[]).take,
    )
    .unwrap();
    let bytes = stream(&second, Some(&first));
    let directory = b.pool.snapshots_of(&dataset);
    let mut receiver = Command::new("btrfs")
        .args(["receive", directory.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    receiver.stdin.take().unwrap().write_all(&bytes[..bytes.len() / 2]).unwrap();
    assert!(!receiver.wait().unwrap().success());
    let half_made = directory.join("promoting-x");
    btrfs(&[
        "subvolume",
        "snapshot",
        kept.snapshot.path.to_str().unwrap(),
        half_made.to_str().unwrap(),
    ]);

    // And a snapshot B took of its own volume of the dataset, beside the received ones.
    let own = take_snapshot(&b.pool, &b.volume(&dataset), &dataset, Generation(7)).unwrap();

    let mut deleted = cleanup_incoming(&b.pool).unwrap();
    deleted.sort();
    assert_eq!(deleted, [directory.join("0000000002"), half_made]);
    let mut left = b.incoming(&dataset);
    left.sort();
    assert_eq!(left, ["0000000001", "0000000007"]);
    assert!(own.path.exists());
    assert!(cleanup_incoming(&b.pool).unwrap().is_empty());
}

/// A stream naming a snapshot B took itself is refused, and B's snapshot is left as it was.
#[test]
fn a_receive_never_replaces_a_snapshot_taken_here() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let (dataset, _volume, first) = first_snapshot(&a, 4);
    let own_volume = b.volume(&dataset);
    write_random(&own_volume, MIB);
    let own = take_snapshot(&b.pool, &own_volume, &dataset, first.generation).unwrap();
    let before = sha256_of(&own.path.join("data"));
    let error = receive(&b.pool, &dataset, &stream(&first, None)[..], None).unwrap_err();
    assert!(matches!(error, TransferError::AlreadyReceived { .. }), "{error}");
    assert_eq!(sha256_of(&own.path.join("data")), before);
    assert_eq!(b.incoming(&dataset), [first.generation.to_string()]);
}

#[test]
fn a_difference_whose_parent_the_receiver_lacks_is_refused_and_leaves_nothing() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let (dataset, volume, first) = first_snapshot(&a, 4);
    write_random(&volume, MIB);
    let step = push_step(Phase::Final, &[first.held()], &[]);
    let second = take_snapshot(&a.pool, &volume, &dataset, step.take).unwrap();
    let error = receive(&b.pool, &dataset, &stream(&second, Some(&first))[..], None).unwrap_err();
    let TransferError::Receive { source: CommandError::Failed { stderr, .. }, .. } = &error else {
        panic!("{error}")
    };
    assert!(stderr.contains("cannot find parent subvolume"), "{stderr}");
    assert_eq!(b.incoming(&dataset), Vec::<String>::new());
}

/// The origin design: a copy received from A is the parent of a difference B sends back, and A
/// finds its own snapshot as that parent.
#[test]
fn a_volume_moves_back_by_a_difference_from_the_snapshot_both_nodes_hold() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let (dataset, _, first) = first_snapshot(&a, 8);
    let on_b = receive(&b.pool, &dataset, &stream(&first, None)[..], None).unwrap();
    let volume_on_b =
        promote(&b.pool, &on_b.snapshot, &format!("{dataset}_{}", 1u64 << 30), None).unwrap();
    write_random(&volume_on_b, MIB);

    let b_holds = [on_b.snapshot.held()];
    let a_holds: Vec<_> =
        snapshots::taken(&a.pool, &dataset).unwrap().iter().map(Snapshot::held).collect();
    let step = push_step(Phase::Final, &b_holds, &a_holds);
    assert_eq!(
        step.send,
        Send::Incremental { parent: on_b.snapshot.generation, snapshot: step.take }
    );
    let back = take_snapshot(&b.pool, &volume_on_b, &dataset, step.take).unwrap();
    let difference = stream(&back, Some(&on_b.snapshot));
    assert!((difference.len() as u64) < 2 * MIB, "{}", difference.len());
    let on_a = receive(&a.pool, &dataset, &difference[..], None).unwrap();
    assert_eq!(on_a.parent, Some(first.subvolume.uuid));
    let volume_on_a = promote(&a.pool, &on_a.snapshot, "back", None).unwrap();
    assert_eq!(sha256_of(&volume_on_a.join("data")), sha256_of(&volume_on_b.join("data")));
}

#[test]
fn a_stream_that_would_make_anything_but_a_snapshot_name_is_refused_before_btrfs_sees_it() {
    require_root();
    let (a, b) = (Node::new(512 * MIB), Node::new(512 * MIB));
    let dataset = DatasetId::random();
    let volume = a.volume(&dataset);
    write_random(&volume, MIB);
    let path = a.disk_path().join("not-a-generation");
    btrfs(&["subvolume", "snapshot", "-r", volume.to_str().unwrap(), path.to_str().unwrap()]);
    let subvolume = snapshots::show(&path).unwrap();
    let odd = Snapshot { path, dataset_id: dataset, generation: Generation(1), subvolume };
    let error = receive(&b.pool, &dataset, &stream(&odd, None)[..], None).unwrap_err();
    assert!(matches!(&error, TransferError::BadName { name, .. } if name == "not-a-generation"));
    assert_eq!(b.incoming(&dataset), Vec::<String>::new());
}

/// A stream written by hand, as a hostile node could send one: the btrfs send format (version 1)
/// with each command's crc32c.
mod crafted {
    /// Commands and attributes of the send format (`fs/btrfs/send.h`).
    pub const SUBVOL: u16 = 1;
    pub const MKFILE: u16 = 3;
    pub const SYMLINK: u16 = 8;
    pub const END: u16 = 21;
    pub const UUID: u16 = 1;
    pub const CTRANSID: u16 = 2;
    pub const INO: u16 = 3;
    pub const PATH: u16 = 15;
    pub const PATH_LINK: u16 = 17;

    /// An attribute: its type and value.
    pub type Attribute = (u16, Vec<u8>);
    /// A command: its number and attributes.
    pub type Command = (u16, Vec<Attribute>);

    /// The stream of `commands`, each a command number and its attributes.
    pub fn stream(commands: &[Command]) -> Vec<u8> {
        let mut bytes = b"btrfs-stream\0".to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        for (command, attributes) in commands {
            let mut payload = Vec::new();
            for (kind, value) in attributes {
                payload.extend_from_slice(&kind.to_le_bytes());
                payload.extend_from_slice(&(value.len() as u16).to_le_bytes());
                payload.extend_from_slice(value);
            }
            let mut framed = (payload.len() as u32).to_le_bytes().to_vec();
            framed.extend_from_slice(&command.to_le_bytes());
            framed.extend_from_slice(&[0; 4]);
            framed.extend_from_slice(&payload);
            let crc = crc32c(&framed);
            framed[6..10].copy_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&framed);
        }
        bytes
    }

    /// btrfs's crc32c: Castagnoli, seed 0, no final inversion.
    fn crc32c(bytes: &[u8]) -> u32 {
        let mut crc = 0u32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0x82f6_3b78 & (crc & 1).wrapping_neg());
            }
        }
        crc
    }

    /// A new subvolume `name`, then `commands`, then the end.
    pub fn subvolume(name: &str, commands: Vec<Command>) -> Vec<u8> {
        let uuid = uuid::Uuid::new_v4().into_bytes().to_vec();
        let first = (
            SUBVOL,
            vec![(PATH, name.into()), (UUID, uuid), (CTRANSID, 7u64.to_le_bytes().to_vec())],
        );
        let mut all = vec![first];
        all.extend(commands);
        all.push((END, vec![]));
        stream(&all)
    }

    pub fn inode(number: u64) -> Attribute {
        (INO, number.to_le_bytes().to_vec())
    }
}

/// A stream that makes a link out of the snapshot and then a file through it must not reach
/// anything outside: `btrfs receive` runs confined to the dataset's directory. The same stream
/// written by hand without the link is received, so the refusal is the link's doing.
#[test]
fn a_hostile_stream_cannot_write_through_a_link_out_of_the_snapshot() {
    use crafted::{MKFILE, PATH, PATH_LINK, SYMLINK, inode, subvolume};
    require_root();
    let b = Node::new(512 * MIB);
    let dataset = DatasetId::random();

    let benign = subvolume("0000000001", vec![(MKFILE, vec![(PATH, b"f".to_vec()), inode(257)])]);
    let received = receive(&b.pool, &dataset, &benign[..], None).expect("a hand-made stream");
    assert!(received.snapshot.path.join("f").is_file());

    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().as_bytes().to_vec();
    let hostile = subvolume(
        "0000000002",
        vec![
            (SYMLINK, vec![(PATH, b"out".to_vec()), inode(257), (PATH_LINK, target)]),
            (MKFILE, vec![(PATH, b"out/planted".to_vec()), inode(258)]),
        ],
    );
    let outcome = receive(&b.pool, &dataset, &hostile[..], None);
    assert!(!outside.path().join("planted").exists(), "the stream wrote outside: {outcome:?}");
    assert!(outcome.is_err(), "a file through the link was received: {outcome:?}");
    assert_eq!(b.incoming(&dataset), ["0000000001"]);
}
