//! How fast a task gets its volume, through the C ABI as the shim calls it, against a real
//! control service and two real dataset agents (loopback backend, 64 MiB volumes):
//!
//! - a warm prepare (the dataset already mounted here), durable checkpoint included, beside the
//!   original module's method for the same step: separate `curl` processes, each with a fresh
//!   mutual-TLS handshake, for nodes, datasets and the move, then the link;
//! - the same warm prepare through a control service that keeps its configuration in a real
//!   3-server ZooKeeper ensemble (`--store zk://…`), beside the journal's;
//! - a cold prepare that creates the volume;
//! - 50 prepares of distinct volumes at once, against one;
//! - the warm prepare again once the cluster holds 10,000 datasets (phantom nodes reporting
//!   theirs mounted over the agent API), against 100: what a prepare costs must not grow with
//!   the cluster. Beside it, what reading the whole lists costs, as prepares did before the
//!   lookups by name and by dataset.
//!
//! Prints; asserts nothing. Needs root, curl, Debian's zookeeper package and release binaries:
//! `cargo build --release --bins && cargo bench -p flocker-isolator-ffi`.

use std::ffi::{CString, c_char, c_int, c_void};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use ::flocker_isolator::{
    flocker_isolator, flocker_isolator_cleanup, flocker_isolator_new, flocker_isolator_prepare,
    flocker_result,
};
use flocker_testkit::bench_results::{self, Baseline};
use flocker_testkit::phantoms::phantom_nodes;
use flocker_testkit::task::{command_task, container_id};
use flocker_testkit::{BackendKind, LocalCluster, ZooKeeperEnsemble, require_root};
use serde_json::{Value, json};

const SAMPLES: usize = 50;
const CROWD: usize = 50;

type Answer = Result<Option<String>, String>;

/// The library, as a C caller holds it.
struct Library(*mut flocker_isolator);

// SAFETY: the header promises every export is thread-safe.
unsafe impl Sync for Library {}

extern "C" fn on_done(ctx: *mut c_void, ok: c_int, json: *const c_char) {
    // SAFETY: `ctx` is the Box<Sender> this file leaked for exactly this one call.
    let sender = unsafe { Box::from_raw(ctx.cast::<Sender<Answer>>()) };
    let text = (!json.is_null()).then(|| {
        // SAFETY: a NUL-terminated string that lives during this call, as the header says.
        unsafe { std::ffi::CStr::from_ptr(json) }.to_string_lossy().into_owned()
    });
    let _ = sender.send(if ok == 1 { Ok(text) } else { Err(text.unwrap_or_default()) });
}

impl Library {
    fn new(parameters: &Value) -> Self {
        let parameters = CString::new(parameters.to_string()).unwrap();
        let mut handle = std::ptr::null_mut();
        // SAFETY: valid strings and out-pointer for the call.
        let result =
            unsafe { flocker_isolator_new(parameters.as_ptr(), &mut handle, std::ptr::null_mut()) };
        assert_eq!(result, flocker_result::FLOCKER_OK);
        Self(handle)
    }

    /// Starts a prepare; its answer arrives on the receiver.
    fn prepare(&self, id: &Value, config: &Value) -> Receiver<Answer> {
        let (id, config) =
            (CString::new(id.to_string()).unwrap(), CString::new(config.to_string()).unwrap());
        let (sender, receiver) = mpsc::channel();
        let ctx = Box::into_raw(Box::new(sender)).cast::<c_void>();
        // SAFETY: live handle, valid strings for the call; `ctx` is reclaimed by `on_done`.
        let result = unsafe {
            flocker_isolator_prepare(self.0, id.as_ptr(), config.as_ptr(), Some(on_done), ctx)
        };
        assert_eq!(result, flocker_result::FLOCKER_OK);
        receiver
    }

    fn cleanup(&self, id: &Value) {
        let id = CString::new(id.to_string()).unwrap();
        let (sender, receiver) = mpsc::channel::<Answer>();
        let ctx = Box::into_raw(Box::new(sender)).cast::<c_void>();
        // SAFETY: as for `prepare`.
        let result = unsafe { flocker_isolator_cleanup(self.0, id.as_ptr(), Some(on_done), ctx) };
        assert_eq!(result, flocker_result::FLOCKER_OK);
        receiver.recv().unwrap().unwrap();
    }

    /// A whole prepare: how long it took.
    fn timed_prepare(&self, id: &Value, config: &Value) -> Duration {
        let started = Instant::now();
        let answer = self.prepare(id, config).recv().unwrap();
        let took = started.elapsed();
        answer.unwrap_or_else(|e| panic!("prepare failed: {e}"));
        took
    }

    /// `SAMPLES` warm prepares of `config`, each let go after it; the first, which mounts the
    /// volume, is not counted.
    fn warm_prepares(&self, config: &Value) -> Vec<Duration> {
        let first = container_id();
        self.timed_prepare(&first, config);
        self.cleanup(&first);
        (0..SAMPLES)
            .map(|_| {
                let id = container_id();
                let took = self.timed_prepare(&id, config);
                self.cleanup(&id);
                took
            })
            .collect()
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: the handle came from `flocker_isolator_new` and is freed only here.
        unsafe { ::flocker_isolator::flocker_isolator_free(self.0) };
    }
}

fn workers() -> String {
    std::env::var("WORKERS").unwrap_or("8".into())
}

fn main() {
    require_root();
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &[]);
    let mut parameters = cluster.isolator_parameters(0);
    parameters["workers"] = json!(workers());
    let library = Library::new(&parameters);
    if std::env::var_os("DEBUG").is_some() {
        ::flocker_isolator::flocker_set_log_callback(None, std::ptr::null_mut(), 4);
    }
    // Where tasks link their volumes, as /tmp is for /tmp/data: there before, and after.
    let links = cluster.certificates.root().join("links");
    std::fs::create_dir_all(&links).expect("the links directory");
    let task = |id: &str| command_task(&[(id, links.join(id).to_str().unwrap())]);

    // 100 datasets in the cluster: 99 on a phantom node, and the warm one.
    let mut phantoms =
        phantom_nodes(&cluster.certificates, &cluster.control, &cluster.client, (1, 99), "small");

    // Warm: the volume is mounted here already; each task prepares it and lets it go.
    let warm = task("warm");
    let mut warm_times = library.warm_prepares(&warm);
    let in_cluster = |cluster: &LocalCluster| cluster.client.list_datasets().unwrap().0.len();
    let small_cluster = in_cluster(&cluster);
    // Right after, while this machine's mount table is as small: the same through ZooKeeper.
    let crowd_only = std::env::var_os("CROWD_ONLY").is_some();
    let mut zookeeper_times = if crowd_only { Vec::new() } else { warm_through_zookeeper() };
    let mut curl_times = if crowd_only { Vec::new() } else { old_module_method(&cluster, &links) };

    // 10,000 datasets in the cluster: 9,900 more on 99 more phantom nodes, right after, while
    // the mount table is the same. What follows runs in this cluster.
    phantoms.extend(phantom_nodes(
        &cluster.certificates,
        &cluster.control,
        &cluster.client,
        (99, 100),
        "large",
    ));
    let large_cluster = in_cluster(&cluster);
    let mut large_warm_times = library.warm_prepares(&warm);
    let mut whole_lists: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            cluster.client.list_datasets().expect("the datasets");
            cluster.client.dataset_states().expect("the state");
            started.elapsed()
        })
        .collect();

    // Cold: a new volume each time, created, attached, formatted and mounted.
    let mut cold_times: Vec<Duration> = (0..SAMPLES / 2)
        .map(|i| library.timed_prepare(&container_id(), &task(&format!("cold-{i}"))))
        .collect();

    // A crowd of warm prepares of distinct volumes, against one.
    let crowd: Vec<(Value, Value)> =
        (0..CROWD).map(|i| (container_id(), task(&format!("crowd-{i}")))).collect();
    for (id, config) in &crowd {
        library.timed_prepare(id, config);
        library.cleanup(id);
    }
    let crowd_round = || {
        let round: Vec<(Value, Value)> =
            crowd.iter().map(|(_, config)| (container_id(), config.clone())).collect();
        let took = at_once(&library, round.clone());
        round.iter().for_each(|(id, _)| library.cleanup(id));
        took
    };
    if crowd_only {
        let mut rounds: Vec<Duration> = (0..30).map(|_| crowd_round()).collect();
        println!("crowd of {CROWD}: median {:.1} ms", ms(median(&mut rounds)));
        return;
    }
    let mut crowd_rounds: Vec<Duration> = (0..5).map(|_| crowd_round()).collect();
    let crowd_took = median(&mut crowd_rounds);
    let cold_crowd_took = at_once(
        &library,
        (0..CROWD).map(|i| (container_id(), task(&format!("fresh-{i}")))).collect(),
    );

    drop(phantoms);
    let figures = Figures {
        warm: ms(median(&mut warm_times)),
        small_cluster,
        large_cluster,
        large_warm: ms(median(&mut large_warm_times)),
        whole_lists: ms(median(&mut whole_lists)),
        warm_zookeeper: ms(median(&mut zookeeper_times)),
        curl: ms(median(&mut curl_times)),
        cold: ms(median(&mut cold_times)),
        warm_crowd: ms(crowd_took),
        cold_crowd: ms(cold_crowd_took),
    };
    figures.print();
    figures.record();
}

/// What this bench measures, in milliseconds: medians, and one round of the cold crowd.
struct Figures {
    warm: f64,
    /// Datasets in the cluster for `warm`, and for `large_warm`.
    small_cluster: usize,
    large_cluster: usize,
    large_warm: f64,
    /// The whole dataset list and state, decoded: what each prepare read before the lookups.
    whole_lists: f64,
    /// The same through a ZooKeeper-backed control service.
    warm_zookeeper: f64,
    curl: f64,
    cold: f64,
    warm_crowd: f64,
    cold_crowd: f64,
}

impl Figures {
    fn print(&self) {
        println!(
            "flocker-isolator through the C ABI, loopback backend, 64 MiB volumes (medians)\n"
        );
        println!(
            "{:<58} {:>9.2} ms   target ≤ 1 ms",
            format!("warm prepare, {} datasets in the cluster", self.small_cluster),
            self.warm
        );
        println!(
            "{:<58} {:>9.2} ms = {:.2}× with {}   target ≤ 3 ms",
            format!("warm prepare, {} datasets in the cluster", self.large_cluster),
            self.large_warm,
            self.large_warm / self.warm,
            self.small_cluster
        );
        println!(
            "{:<58} {:>9.2} ms",
            "  the whole lists prepares read before (datasets, state)", self.whole_lists
        );
        println!(
            "{:<58} {:>9.2} ms",
            "  the original module's way: 3 curl processes + ln", self.curl
        );
        println!("{:<58} {:>9.1}×   goal ≥ 20×", "  ours is faster by", self.curl / self.warm);
        println!(
            "{:<58} {:>9.2} ms = {:.2}× through the journal",
            "  through a ZooKeeper-backed service (3 servers)",
            self.warm_zookeeper,
            self.warm_zookeeper / self.warm
        );
        println!(
            "{:<58} {:>9.1} ms   target ≤ 300 ms",
            "cold prepare (create, attach, mkfs, mount)", self.cold
        );
        println!(
            "{:<58} {:>9.1} ms = {:.1}× one warm prepare   target ≤ 5×",
            format!("{CROWD} warm prepares of distinct volumes at once"),
            self.warm_crowd,
            self.warm_crowd / self.warm
        );
        println!(
            "{:<58} {:>9.1} ms = {:.1}× one cold prepare   target ≤ 10×",
            format!("{CROWD} cold prepares of distinct volumes at once"),
            self.cold_crowd,
            self.cold_crowd / self.cold
        );
    }

    /// For `scripts/bench`: the curl method is the warm prepare's baseline, one prepare the
    /// crowd's.
    fn record(&self) {
        let baseline =
            |value: f64, name, ratio, ratio_means| Baseline { value, name, ratio, ratio_means };
        let curl =
            baseline(self.curl, "original module: 3 curl + ln", self.curl / self.warm, "× faster");
        let warm = baseline(self.warm, "one warm prepare", self.warm_crowd / self.warm, "× one");
        let cold = baseline(self.cold, "one cold prepare", self.cold_crowd / self.cold, "× one");
        let record = |what: &str, value, target, baseline| {
            bench_results::record("ffi", what, value, "ms", target, baseline);
        };
        record(
            &format!(
                "warm prepare (mounted here; checkpoint fsynced), {} datasets, median",
                self.small_cluster
            ),
            self.warm,
            Some("≤ 1 ms, ≥ 20× faster"),
            Some(&curl),
        );
        let small_name = format!("the same with {} datasets", self.small_cluster);
        let small = Baseline {
            value: self.warm,
            name: &small_name,
            ratio: self.large_warm / self.warm,
            ratio_means: "× the smaller cluster's",
        };
        record(
            &format!("warm prepare, {} datasets in the cluster, median", self.large_cluster),
            self.large_warm,
            Some("≤ 3 ms"),
            Some(&small),
        );
        record(
            &format!(
                "  the whole lists prepares read before the lookups ({} datasets), median",
                self.large_cluster
            ),
            self.whole_lists,
            None,
            None,
        );
        let journal = baseline(
            self.warm,
            "through the journal",
            self.warm_zookeeper / self.warm,
            "× the journal",
        );
        record(
            "warm prepare through a ZooKeeper-backed control service (3 servers), median",
            self.warm_zookeeper,
            None,
            Some(&journal),
        );
        record(
            "cold prepare (create, attach, mkfs, mount), median",
            self.cold,
            Some("≤ 300 ms"),
            None,
        );
        let crowd = |kind| format!("{CROWD} {kind} prepares of distinct volumes at once");
        record(
            &format!("{}, median of 5", crowd("warm")),
            self.warm_crowd,
            Some("≤ 5× one"),
            Some(&warm),
        );
        record(&crowd("cold"), self.cold_crowd, Some("≤ 10× one"), Some(&cold));
    }
}

/// The warm prepare of a cluster whose control service keeps its configuration in a real
/// 3-server ZooKeeper ensemble on loopback (`--store zk://…`): every write is a ZooKeeper
/// transaction, every read of the configuration a `sync` and a read. Everything is let go after.
fn warm_through_zookeeper() -> Vec<Duration> {
    let ensemble = ZooKeeperEnsemble::start(3);
    let store = format!("zk://{}/flocker", ensemble.connect_string());
    let cluster = LocalCluster::start(BackendKind::Loopback, 2, &["--store", &store]);
    let mut parameters = cluster.isolator_parameters(0);
    parameters["workers"] = json!(workers());
    let library = Library::new(&parameters);
    let links = cluster.certificates.root().join("links");
    std::fs::create_dir_all(&links).expect("the links directory");
    let warm = command_task(&[("warm", links.join("warm").to_str().unwrap())]);
    library.warm_prepares(&warm)
}

/// Starts every prepare at once; the time until the last answer.
fn at_once(library: &Library, tasks: Vec<(Value, Value)>) -> Duration {
    let started = Instant::now();
    let answers: Vec<_> = tasks.iter().map(|(id, config)| library.prepare(id, config)).collect();
    for answer in answers {
        answer.recv().unwrap().unwrap_or_else(|e| panic!("prepare failed: {e}"));
    }
    started.elapsed()
}

/// The original module's prepare for a dataset already mounted here: `curl` for the nodes, the
/// datasets and the move (each its own process and TLS handshake, as its client ran them), a
/// look at /flocker/<id>, and `ln -s`.
fn old_module_method(cluster: &LocalCluster, links: &Path) -> Vec<Duration> {
    let (certificate, key) = cluster.certificates.user("plugin");
    let dataset = cluster
        .client
        .list_datasets()
        .unwrap()
        .0
        .into_iter()
        .find(|d| d.metadata["name"] == "warm")
        .unwrap();
    let mount = cluster.agents[0].mount_point(&dataset.dataset_id.to_string());
    let port = cluster.control.rest.port();
    let curl = format!(
        "curl -sS --fail --cacert {} --cert {} --key {} --resolve control-service:{port}:127.0.0.1 https://control-service:{port}/v1",
        cluster.certificates.cluster_certificate().display(),
        certificate.display(),
        key.display()
    );
    let link = links.join("old-module");
    let script = format!(
        "{curl}/state/nodes >/dev/null && {curl}/configuration/datasets >/dev/null && \
         {curl}/configuration/datasets/{} -X POST -d '{{\"primary\": \"{}\"}}' >/dev/null && \
         test -d {} && ln -sfn {} {}",
        dataset.dataset_id,
        cluster.node(0),
        mount.display(),
        mount.display(),
        link.display()
    );
    (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new("sh").arg("-c").arg(&script).status().expect("sh and curl");
            assert!(status.success(), "the original module's way failed: {script}");
            started.elapsed()
        })
        .collect()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
