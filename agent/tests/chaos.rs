//! Chaos: datasets moved back and forth between two loopback nodes that share one `root_path`,
//! with `kill -9` of the agents and of the control service at random moments.
//!
//! What it proves: after every round of moves each dataset is mounted on its new node and on no
//! other, the control service says so, and its `data.bin` holds exactly the bytes last written
//! to it — no volume is ever lost, replaced by a fresh one or mixed up with another; and the
//! shared root holds one volume file per dataset, attached to its node, no half-made volume,
//! and at most one loop device per volume file.
//!
//! Each round moves a random subset of the datasets, each to the other node, with the requests
//! sent back to back, so that detaches on one node interleave with attaches and discoveries on
//! the other. Every random choice (which datasets, whether and what to kill, the delays, the
//! bytes written) comes from one seed, printed at the start. To replay a run:
//!
//! ```text
//! FLOCKER_CHAOS_SEED=<seed> FLOCKER_CHAOS_MOVES=<moves> \
//!     cargo test -p flocker-dataset-agent --test chaos --locked -- --nocapture
//! ```
//!
//! The seed replays the same decisions, not the same scheduling of the processes: a race may
//! need a few replays, or another seed (`scripts/chaos` runs many). Needs root.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flocker_api::{DatasetId, DatasetState};
use flocker_host::mounts::MountTable;
use flocker_testkit::{BackendKind, LocalCluster, SMALL, Storage, require_root};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// How many datasets move around, spread over the two nodes.
const DATASETS: usize = 4;
/// The share of rounds in which something is killed: with about 470 rounds in 1,000 moves,
/// some 140 kills.
const KILL_CHANCE: f64 = 0.3;
/// A kill comes this long at most after the move requests…
const LONGEST_DELAY_BEFORE_KILL: u64 = 50;
/// …and what was killed is started again this long at most after it.
const LONGEST_DOWNTIME: u64 = 300;
/// The largest `data.bin` written.
const LARGEST_CONTENT: usize = 256 * 1024;
/// How long a round may take to be seen on its target nodes.
const ON_TARGET_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(5);
/// The lines of each process's log a failure shows.
const LOG_TAIL: usize = 80;
/// A progress line every this many moves.
const PROGRESS_EVERY: usize = 100;

#[test]
fn randomized_moves_under_kill_9_keep_every_byte() {
    play(Storage::Shared);
}

/// The same between nodes' own disks (btrfs), where each move is a push: pre-copy, handoff,
/// promotion on the receiver, deletion on the sender, any of them cut by a kill.
#[test]
fn randomized_pushes_between_own_disks_under_kill_9_keep_every_byte() {
    play(Storage::PerNode);
}

/// The same where the shared root cannot rename without replacing (bindfs, as NFS): volumes
/// move by `link` and `unlink`, and a kill between the two leaves a volume with two names.
#[test]
fn randomized_moves_under_kill_9_keep_every_byte_where_renames_cannot_refuse_to_replace() {
    play(Storage::SharedWithoutNoReplace);
}

fn play(storage: Storage) {
    require_root();
    let seed = seed_from_env();
    // A push costs more than a rename (snapshots, a stream, syncs): fewer by default.
    let moves = moves_from_env(if storage == Storage::PerNode { 200 } else { 1000 });
    println!(
        "chaos ({storage:?}): seed {seed}, {moves} moves (replay with FLOCKER_CHAOS_SEED={seed} \
         FLOCKER_CHAOS_MOVES={moves})"
    );
    let mut chaos = Chaos::start(seed, storage);
    while chaos.moves < moves {
        let before = chaos.moves;
        chaos.play_round();
        if chaos.moves / PROGRESS_EVERY > before / PROGRESS_EVERY {
            println!("chaos ({storage:?}): {}", chaos.summary());
        }
    }
    println!("chaos ({storage:?}): seed {seed}, every byte kept: {}", chaos.summary());
}

fn seed_from_env() -> u64 {
    match std::env::var("FLOCKER_CHAOS_SEED") {
        Ok(text) => {
            text.parse().unwrap_or_else(|e| panic!("FLOCKER_CHAOS_SEED={text:?} is not a u64: {e}"))
        }
        Err(_) => rand::random(),
    }
}

fn moves_from_env(default: usize) -> usize {
    match std::env::var("FLOCKER_CHAOS_MOVES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|e| panic!("FLOCKER_CHAOS_MOVES={text:?} is not a count: {e}")),
        Err(_) => default,
    }
}

/// What a round kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Victim {
    Agent0,
    Agent1,
    BothAgents,
    Control,
}

impl Victim {
    const ALL: [Victim; 4] = [Victim::Agent0, Victim::Agent1, Victim::BothAgents, Victim::Control];

    fn agents(self) -> &'static [usize] {
        match self {
            Victim::Agent0 => &[0],
            Victim::Agent1 => &[1],
            Victim::BothAgents => &[0, 1],
            Victim::Control => &[],
        }
    }
}

/// A dataset, the node it should be on, and the bytes its `data.bin` should hold.
struct Tracked {
    id: DatasetId,
    node: usize,
    content: Vec<u8>,
}

struct Chaos {
    cluster: LocalCluster,
    /// The shared root, canonical, as the kernel names the backing files of loop devices.
    root: PathBuf,
    rng: StdRng,
    seed: u64,
    datasets: Vec<Tracked>,
    round: usize,
    moves: usize,
    kills: BTreeMap<Victim, usize>,
    /// Move requests that had to be sent again after restarting the control service.
    resent: usize,
    /// Each round, from its move requests to every dataset verified on its node.
    round_times: Vec<Duration>,
    started: Instant,
}

impl Chaos {
    /// A two-node loopback cluster with the datasets mounted on alternate nodes, each holding
    /// a first `data.bin`.
    fn start(seed: u64, storage: Storage) -> Self {
        let started = Instant::now();
        let backend =
            if storage == Storage::PerNode { BackendKind::Btrfs } else { BackendKind::Loopback };
        let cluster = LocalCluster::start_on_storage(backend, 2, storage);
        let root = cluster.shared_root.canonicalize().unwrap_or_else(|e| {
            panic!("cannot resolve the shared root {}: {e}", cluster.shared_root.display())
        });
        let datasets = (0..DATASETS)
            .map(|i| {
                let node = i % 2;
                let id = cluster.create_dataset(node).dataset_id;
                Tracked { id, node, content: Vec::new() }
            })
            .collect();
        let mut chaos = Self {
            cluster,
            root,
            rng: StdRng::seed_from_u64(seed),
            seed,
            datasets,
            round: 0,
            moves: 0,
            kills: BTreeMap::new(),
            resent: 0,
            round_times: Vec::new(),
            started,
        };
        chaos.wait_until_on_target();
        chaos.check_shared_root();
        chaos.write_new_content(&(0..DATASETS).collect::<Vec<_>>());
        chaos
    }

    fn play_round(&mut self) {
        self.round += 1;
        let moving = self.pick_datasets();
        let started = Instant::now();
        for &index in &moving {
            self.move_to_other_node(index);
        }
        if self.rng.random_bool(KILL_CHANCE) {
            self.kill_and_restart();
        }
        self.wait_until_on_target();
        self.round_times.push(started.elapsed());
        self.check_every_byte();
        self.check_shared_root();
        self.write_new_content(&moving);
        self.moves += moving.len();
    }

    /// A random non-empty subset of the datasets, by index.
    fn pick_datasets(&mut self) -> Vec<usize> {
        loop {
            let picked: Vec<usize> = (0..DATASETS).filter(|_| self.rng.random_bool(0.5)).collect();
            if !picked.is_empty() {
                return picked;
            }
        }
    }

    /// Asks the control service to move a dataset to the other node; if the request finds no
    /// control service, starts it again and resends.
    fn move_to_other_node(&mut self, index: usize) {
        let target = 1 - self.datasets[index].node;
        let (id, node) = (self.datasets[index].id, self.cluster.node(target));
        if let Err(error) = self.cluster.client.move_dataset(&id, &node, None) {
            if error.transport_problem().is_none() {
                self.fail(&format!("moving dataset {id} to node-{target} was refused: {error}"));
            }
            self.cluster.restart_control();
            self.resent += 1;
            if let Err(error) = self.cluster.client.move_dataset(&id, &node, None) {
                self.fail(&format!(
                    "moving dataset {id} to node-{target} failed, even after restarting the \
                     control service: {error}"
                ));
            }
        }
        self.datasets[index].node = target;
    }

    /// `kill -9` of a random victim a random moment after the move requests, and a restart a
    /// random moment later.
    fn kill_and_restart(&mut self) {
        let victim = Victim::ALL[self.rng.random_range(0..Victim::ALL.len())];
        self.pause_up_to(LONGEST_DELAY_BEFORE_KILL);
        match victim {
            Victim::Control => self.cluster.kill_control(),
            _ => victim.agents().iter().for_each(|&i| self.cluster.agents[i].kill()),
        }
        self.pause_up_to(LONGEST_DOWNTIME);
        match victim {
            Victim::Control => self.cluster.restart_control(),
            _ => {
                for &i in victim.agents() {
                    if let Err(error) = self.cluster.agents[i].restart() {
                        self.fail(&format!("agent node-{i} did not start again: {error}"));
                    }
                }
            }
        }
        *self.kills.entry(victim).or_default() += 1;
    }

    /// A random pause of 0 to `longest` ms: when a kill or a restart comes is the chaos.
    fn pause_up_to(&mut self, longest: u64) {
        std::thread::sleep(Duration::from_millis(self.rng.random_range(0..=longest)));
    }

    /// Waits until every dataset is really on its node: mounted there, mounted nowhere else,
    /// and reported there by the control service. The state alone is not trusted: a killed
    /// agent's last report stays in it.
    fn wait_until_on_target(&self) {
        let deadline = Instant::now() + ON_TARGET_DEADLINE;
        loop {
            let misplaced = self.misplaced();
            if misplaced.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "not on their nodes after {ON_TARGET_DEADLINE:?}:\n  {}\n\
                     loop devices on the volumes: {:?}",
                    misplaced.join("\n  "),
                    self.loop_devices_by_file()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// What is wrong with where each dataset is; empty once every one is on its node.
    fn misplaced(&self) -> Vec<String> {
        let mounts = MountTable::read().unwrap_or_else(|e| panic!("/proc/self/mountinfo: {e}"));
        let wrong: Vec<String> =
            self.datasets.iter().filter_map(|d| self.mount_problem(d, &mounts)).collect();
        if !wrong.is_empty() {
            return wrong; // the state can wait: the mounts are cheaper to read
        }
        match self.cluster.client.dataset_states() {
            Ok(states) => {
                self.datasets.iter().filter_map(|d| self.state_problem(d, &states)).collect()
            }
            Err(error) => vec![format!("the state cannot be read: {error}")],
        }
    }

    fn file_system(&self) -> &'static str {
        if self.cluster.backend == BackendKind::Btrfs { "btrfs" } else { "ext4" }
    }

    fn mount_point(&self, dataset: &Tracked, node: usize) -> PathBuf {
        self.cluster.agents[node].mount_point(&dataset.id.to_string())
    }

    fn mount_problem(&self, dataset: &Tracked, mounts: &MountTable) -> Option<String> {
        let (here, away) = (dataset.node, 1 - dataset.node);
        let id = dataset.id;
        match mounts.at(&self.mount_point(dataset, here)) {
            None => return Some(format!("dataset {id} is not mounted on node-{here}")),
            Some(mount) if mount.fs_type != self.file_system() => {
                return Some(format!("dataset {id} on node-{here} is a {} mount", mount.fs_type));
            }
            Some(_) => {}
        }
        let left = mounts.at(&self.mount_point(dataset, away));
        left.map(|mount| format!("dataset {id} is still mounted on node-{away} ({mount:?})"))
    }

    fn state_problem(&self, dataset: &Tracked, states: &[DatasetState]) -> Option<String> {
        let expected = self.mount_point(dataset, dataset.node);
        let node = self.cluster.node(dataset.node);
        let states: Vec<&DatasetState> =
            states.iter().filter(|s| s.dataset_id == dataset.id).collect();
        let reported = states.iter().any(|s| {
            s.primary == Some(node) && s.path.as_deref().map(Path::new) == Some(&expected)
        });
        (!reported).then(|| {
            format!(
                "the state does not show dataset {} mounted on node-{}: {states:?}",
                dataset.id, dataset.node
            )
        })
    }

    /// Reads every dataset's `data.bin` through its mount point and compares it, byte for
    /// byte, with what was last written.
    fn check_every_byte(&self) {
        for dataset in &self.datasets {
            let directory = self.mount_point(dataset, dataset.node);
            let where_ = format!("dataset {} on node-{}", dataset.id, dataset.node);
            match fs::read(directory.join("data.bin")) {
                Ok(found) if found == dataset.content => {}
                Ok(found) => self.fail(&format!(
                    "{where_}: data.bin differs from what was written: {}",
                    describe_difference(&dataset.content, &found)
                )),
                Err(e) if e.kind() == ErrorKind::NotFound => self.fail(&format!(
                    "{where_}: data.bin is missing: the volume came back empty (it holds {:?})",
                    names_in(&directory)
                )),
                Err(e) => self.fail(&format!("{where_}: cannot read data.bin: {e}")),
            }
        }
    }

    /// Gives each of these datasets a new `data.bin` of random length and bytes, durably.
    fn write_new_content(&mut self, indexes: &[usize]) {
        for &index in indexes {
            let mut content = vec![0; self.rng.random_range(1..=LARGEST_CONTENT)];
            self.rng.fill_bytes(&mut content);
            let dataset = &self.datasets[index];
            let path = self.mount_point(dataset, dataset.node).join("data.bin");
            let written = fs::File::create(&path)
                .and_then(|mut file| file.write_all(&content).and_then(|()| file.sync_all()));
            if let Err(e) = written {
                self.fail(&format!("cannot write {}: {e}", path.display()));
            }
            self.datasets[index].content = content;
        }
    }

    /// Once every dataset is on its node (after each round, and so at the end): one volume
    /// file per dataset in the whole shared root, attached to its node; no half-made volume
    /// left; at most one loop device per volume file, and none on anything else under the root.
    fn check_shared_root(&self) {
        if self.cluster.backend == BackendKind::Btrfs {
            return self.check_pools();
        }
        let files = files_under(&self.root);
        let half_made: Vec<&PathBuf> = files.iter().filter(|f| is_half_made(f)).collect();
        if !half_made.is_empty() {
            self.fail(&format!("temporaries are left in the shared root: {half_made:?}"));
        }
        let mut volumes = Vec::new();
        for dataset in &self.datasets {
            let expected = self
                .root
                .join("attached")
                .join(&self.cluster.agents[dataset.node].name)
                .join(format!("block-{}_{SMALL}", dataset.id));
            let id = dataset.id.to_string();
            let found: Vec<&PathBuf> =
                files.iter().filter(|f| file_name(f).contains(&id)).collect();
            if found != [&expected] {
                self.fail(&format!(
                    "dataset {id} should have one volume, {}, and has {found:?}",
                    expected.display()
                ));
            }
            volumes.push(expected);
        }
        self.check_loop_devices(&volumes);
    }

    /// Once every dataset is mounted on its node (btrfs): its volume there, and soon none on
    /// the other node, neither in `volumes/` nor set aside (the sender deletes its copy just
    /// after the receiver made its volume, and a sender killed then does so when it restarts).
    fn check_pools(&self) {
        let deadline = Instant::now() + ON_TARGET_DEADLINE;
        loop {
            let mut wrong = Vec::new();
            for dataset in &self.datasets {
                let id = dataset.id.to_string();
                for node in 0..2 {
                    // <pool>/volumes/<dataset>_<bytes>
                    let volume = self.cluster.volume_path(&dataset.id, Some(node));
                    let pool = volume.ancestors().nth(2).unwrap_or(&volume).to_owned();
                    let held = volume.exists();
                    if held != (node == dataset.node) {
                        wrong.push(format!("node-{node} has a volume of {id}: {held}"));
                    }
                    let aside = files_under_named(&pool.join("handoff"), &id);
                    if !aside.is_empty() {
                        wrong.push(format!("node-{node} holds {id} set aside: {aside:?}"));
                    }
                    let leftovers = [".creating", ".deleting"].map(|d| names_in(&pool.join(d)));
                    if leftovers.iter().any(|names| !names.is_empty()) {
                        wrong.push(format!("node-{node} has leftovers: {leftovers:?}"));
                    }
                }
            }
            if wrong.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "the pools are not as they should be:\n  {}",
                    wrong.join("\n  ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn check_loop_devices(&self, volumes: &[PathBuf]) {
        for (backing, on) in &self.loop_devices_by_file() {
            if !volumes.contains(backing) {
                self.fail(&format!("{on:?} serve {}, not a volume", backing.display()));
            }
            if on.len() > 1 {
                self.fail(&format!("{on:?} all serve {}", backing.display()));
            }
        }
    }

    /// The loop devices serving files under the shared root, by backing file.
    fn loop_devices_by_file(&self) -> BTreeMap<PathBuf, Vec<String>> {
        let mut devices: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for (device, backing) in loop_devices() {
            if backing.starts_with(&self.root) {
                devices.entry(backing).or_default().push(device);
            }
        }
        devices
    }

    /// Moves, rounds, wall time, kills of each kind, and how long rounds took.
    fn summary(&self) -> String {
        let mut times = self.round_times.clone();
        times.sort();
        let median = times.get(times.len() / 2).copied().unwrap_or_default();
        let longest = times.last().copied().unwrap_or_default();
        let count = |victim| self.kills.get(&victim).copied().unwrap_or(0);
        format!(
            "{} moves in {} rounds, {:.1} s; kills: {} of agent 0, {} of agent 1, {} of both \
             agents, {} of the control service ({} in all); {} moves resent; a round took {} ms \
             (median), {} ms (max)",
            self.moves,
            self.round,
            self.started.elapsed().as_secs_f64(),
            count(Victim::Agent0),
            count(Victim::Agent1),
            count(Victim::BothAgents),
            count(Victim::Control),
            self.kills.values().sum::<usize>(),
            self.resent,
            median.as_millis(),
            longest.as_millis(),
        )
    }

    /// Fails the test with the seed, the round, `what`, and the end of every process's log.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "chaos: seed {}, round {}: {what}\n\
             (so far: {})\n\
             (replay with FLOCKER_CHAOS_SEED={})\n{}",
            self.seed,
            self.round,
            self.summary(),
            self.seed,
            self.log_tails()
        )
    }

    fn log_tails(&self) -> String {
        let mut tails =
            format!("--- control service (last lines)\n{}", tail(&self.cluster.control.log()));
        for agent in &self.cluster.agents {
            tails += &format!("--- agent {} (last lines)\n{}", agent.name, tail(&agent.log()));
        }
        tails
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n") + "\n"
}

fn describe_difference(expected: &[u8], found: &[u8]) -> String {
    let first = expected.iter().zip(found).position(|(a, b)| a != b);
    let at = first.map_or("the shorter one ends".to_owned(), |i| format!("byte {i}"));
    format!(
        "{} bytes expected, {} found; the first difference is at {at}",
        expected.len(),
        found.len()
    )
}

fn names_in(directory: &Path) -> Vec<String> {
    fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_else(|e| vec![format!("unreadable: {e}")])
}

/// The entries two levels under `directory` (`handoff/<node>/<volume>`) whose names hold `id`.
fn files_under_named(directory: &Path, id: &str) -> Vec<PathBuf> {
    let Ok(nodes) = fs::read_dir(directory) else { return Vec::new() };
    let entries = nodes.filter_map(Result::ok).filter_map(|node| fs::read_dir(node.path()).ok());
    entries
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| file_name(p).contains(id))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A temporary of ours (`.creating-…`, `.destroying-…`): once every dataset is on its node, none
/// may be left. Not the file an agent probes its `attached/` directory with at start: one killed
/// while probing leaves it there until its next start, which a check may come before.
fn is_half_made(path: &Path) -> bool {
    let name = file_name(path);
    name.starts_with('.') && !name.starts_with(".probe-")
}

/// Every file (not directory) under `directory`, at any depth.
fn files_under(directory: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(directory)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", directory.display()));
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", directory.display()));
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Every loop device in use, with its backing file (`… (deleted)` when the file was removed),
/// from `/sys/block/loop*/loop/backing_file`.
fn loop_devices() -> Vec<(String, PathBuf)> {
    let entries = fs::read_dir("/sys/block").unwrap_or_else(|e| panic!("/sys/block: {e}"));
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let backing = fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            let device = entry.file_name().to_string_lossy().into_owned();
            Some((device, PathBuf::from(backing.trim_end_matches('\n'))))
        })
        .collect()
}
