//! A real ZooKeeper ensemble (Debian's `zookeeper` package, 3.8) as `java` child processes on
//! ephemeral ports of 127.0.0.1, each server with its own configuration, data directory and log
//! in a temporary directory. Tests kill and restart servers to see what a client does when the
//! quorum goes and comes back.
//!
//! Servers are numbered from 0 here; server `i` is `server.<i + 1>` (its `myid`) to ZooKeeper.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// What `scripts/test` installs with the Debian package `zookeeper`.
const JAVA: &str = "/usr/bin/java";
/// Debian's jar names its dependencies in its manifest's `Class-Path`, but no SLF4J binding:
/// without one ZooKeeper logs nothing at all. Log4j 1.2 and its binding come with
/// `libzookeeper-java`'s dependencies, and read the `log4j.properties` we write.
const CLASSPATH: [&str; 3] = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
];
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
/// A small heap, and a JVM that starts fast rather than runs fast: tests hardly load it.
const JVM_OPTIONS: [&str; 5] =
    ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-XX:-UsePerfData"];
/// Everything to the console, which is the server's log file (with the JVM's own errors).
const LOG4J_PROPERTIES: &str = "\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
";
/// Ticks of 500 ms: a follower gives up on a dead leader after `syncLimit` ticks (2.5 s), so an
/// election after a kill takes about a second. Sessions may last up to a minute; tests from
/// one address open many connections, so there is no per-address limit.
const SETTINGS: &str = "\
tickTime=500
initLimit=10
syncLimit=5
maxSessionTimeout=60000
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat,mntr
";
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Ephemeral ports are picked then released before ZooKeeper binds them, so another process
/// may take one in between: the whole start is tried again on new ports.
const START_ATTEMPTS: usize = 3;
/// What `java.net.BindException` says in a server's log when a port was taken.
const PORT_TAKEN: &str = "Address already in use";

/// A running ensemble; every server is killed when it is dropped, and its files removed.
pub struct ZooKeeperEnsemble {
    servers: Vec<Server>,
    /// Dropped last: every server's files live in it.
    _root: TempDir,
}

struct Server {
    /// ZooKeeper's `myid`, from 1.
    id: usize,
    ports: Ports,
    /// Holds `zoo.cfg`, `data/` (with `myid`) and `server.log`.
    directory: PathBuf,
    log4j_properties: PathBuf,
    /// `None` once the test killed it. Behind a lock so that `&self` can ask whether it exited
    /// on its own.
    process: Mutex<Option<Child>>,
    /// Where the current run's part of `server.log` begins (a restart appends to it).
    run_log_offset: usize,
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    quorum: u16,
    election: u16,
}

/// Where the ensemble stands, as [`ZooKeeperEnsemble::wait_until_serving`] sees it.
enum Progress {
    Serving,
    Waiting,
    Failed(String),
}

impl ZooKeeperEnsemble {
    /// How a server answers `srvr` while it has no quorum (lost, or not found yet).
    pub const NOT_SERVING: &'static str =
        "This ZooKeeper instance is not currently serving requests";

    /// Starts `servers` servers (1 runs standalone) and waits up to 60 s until they serve.
    pub fn start(servers: usize) -> Self {
        assert!(servers > 0, "a ZooKeeper ensemble needs at least one server");
        require_installed();
        let started = Instant::now();
        for attempt in 1..=START_ATTEMPTS {
            let ensemble = Self::launch(servers);
            match ensemble.serving_within(START_TIMEOUT) {
                Ok(()) => {
                    log::info!(
                        "ZooKeeper ensemble {} serving after {:?}",
                        ensemble.connect_string(),
                        started.elapsed()
                    );
                    return ensemble;
                }
                Err(reason) if attempt < START_ATTEMPTS && ensemble.a_port_was_taken() => {
                    log::warn!("ZooKeeper start {attempt}: {reason}; again on other ports");
                }
                Err(reason) => ensemble.fail(&reason),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,…`, as ZooKeeper clients take it.
    pub fn connect_string(&self) -> String {
        let addresses: Vec<String> =
            (0..self.servers.len()).map(|i| self.client_address(i).to_string()).collect();
        addresses.join(",")
    }

    /// Server `i`'s client port.
    pub fn client_address(&self, i: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.server(i).ports.client))
    }

    /// Waits until a quorum serves: every running server answers `srvr` with a mode, and (in an
    /// ensemble) exactly one of them leads, since followers of a leader just killed still say
    /// `follower` until they notice. Panics with every server's log tail otherwise.
    pub fn wait_until_serving(&self, timeout: Duration) {
        if let Err(reason) = self.serving_within(timeout) {
            self.fail(&reason)
        }
    }

    /// `kill -9` of server `i`, reaped; nothing if it is not running.
    pub fn kill(&mut self, i: usize) {
        let server = self.server_mut(i);
        if let Some(mut child) = server.child().take() {
            let _ = child.kill();
            let _ = child.wait();
            log::debug!("killed ZooKeeper server {}", server.id);
        }
    }

    /// Starts server `i` again, with its data and ports; [`Self::wait_until_serving`] waits
    /// for it to join.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "ZooKeeper server {i} is running: kill it first");
        let server = self.server_mut(i);
        server.spawn();
        log::debug!("restarted ZooKeeper server {}", server.id);
    }

    /// Whether server `i`'s process runs: neither killed nor exited on its own.
    pub fn is_running(&self, i: usize) -> bool {
        self.server(i).is_running()
    }

    /// `leader`, `follower` or `standalone` while server `i` serves; `None` if it does not
    /// answer or does not serve.
    pub fn server_mode(&self, i: usize) -> Option<String> {
        let answer = self.four_letter_word(i, "srvr")?;
        answer.lines().find_map(|line| line.strip_prefix("Mode: ")).map(|mode| mode.trim().into())
    }

    /// The server that leads, if one does.
    pub fn leader(&self) -> Option<usize> {
        (0..self.servers.len()).find(|&i| self.server_mode(i).as_deref() == Some("leader"))
    }

    /// Server `i`'s answer to a four-letter word (`srvr`, `ruok`, `stat`, `mntr`); `None` if
    /// it does not answer within a few seconds.
    pub fn four_letter_word(&self, i: usize, word: &str) -> Option<String> {
        let address = self.client_address(i);
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        stream.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(word.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer).filter(|answer| !answer.is_empty())
    }

    /// Server `i`'s log, every run of it.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.server(i).log_path()).unwrap_or_default()
    }

    /// Every server's state and the end of its log, for a failing test.
    pub fn report_all(&self) -> String {
        let report: Vec<String> = (0..self.servers.len()).map(|i| self.report(i)).collect();
        report.join("\n")
    }

    /// Servers on fresh ports, not yet serving.
    fn launch(servers: usize) -> Self {
        let root = tempfile::Builder::new().prefix("zookeeper-test-").tempdir().expect("temp dir");
        let log4j_properties = root.path().join("log4j.properties");
        write(&log4j_properties, LOG4J_PROPERTIES);
        let ports = free_ports(servers);
        let servers = (1..=servers)
            .map(|id| Server::create(id, &ports, root.path(), &log4j_properties))
            .collect();
        Self { servers, _root: root }
    }

    fn serving_within(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.progress() {
                Progress::Serving => return Ok(()),
                Progress::Failed(reason) => return Err(reason),
                Progress::Waiting if Instant::now() > deadline => {
                    return Err(format!("no quorum after {timeout:?}"));
                }
                Progress::Waiting => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn progress(&self) -> Progress {
        for server in &self.servers {
            if let Some(reason) = server.failure() {
                return Progress::Failed(reason);
            }
        }
        let running: Vec<usize> = (0..self.servers.len()).filter(|&i| self.is_running(i)).collect();
        let quorum = self.servers.len() / 2 + 1;
        if running.len() < quorum {
            return Progress::Failed(format!(
                "{} of {} servers run: a quorum needs {quorum}",
                running.len(),
                self.servers.len()
            ));
        }
        let modes: Vec<Option<String>> = running.iter().map(|&i| self.server_mode(i)).collect();
        let leaders = modes.iter().filter(|mode| mode.as_deref() == Some("leader")).count();
        let all_serve = modes.iter().all(Option::is_some);
        if all_serve && (self.servers.len() == 1 || leaders == 1) {
            Progress::Serving
        } else {
            Progress::Waiting
        }
    }

    fn a_port_was_taken(&self) -> bool {
        self.servers.iter().any(|server| server.run_log().contains(PORT_TAKEN))
    }

    fn fail(&self, reason: &str) -> ! {
        panic!("ZooKeeper ensemble {}: {reason}\n{}", self.connect_string(), self.report_all())
    }

    /// Server `i`'s state and the end of its log, for a failing test.
    fn report(&self, i: usize) -> String {
        let state = match (self.is_running(i), self.four_letter_word(i, "srvr")) {
            (false, _) => "not running".to_string(),
            (true, None) => "running, no answer to srvr".to_string(),
            (true, Some(answer)) => {
                format!("running, srvr: {}", answer.lines().next().unwrap_or(""))
            }
        };
        let log = self.log(i);
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- server {i} (myid {}): {state}; its log ends:\n{tail}", self.server(i).id)
    }

    fn server(&self, i: usize) -> &Server {
        let count = self.servers.len();
        self.servers.get(i).unwrap_or_else(|| panic!("no ZooKeeper server {i} of {count}"))
    }

    fn server_mut(&mut self, i: usize) -> &mut Server {
        let count = self.servers.len();
        self.servers.get_mut(i).unwrap_or_else(|| panic!("no ZooKeeper server {i} of {count}"))
    }
}

impl Drop for ZooKeeperEnsemble {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

impl Server {
    /// Writes server `id`'s configuration and `myid`, and starts it.
    fn create(id: usize, ports: &[Ports], root: &Path, log4j_properties: &Path) -> Self {
        let directory = root.join(format!("server-{id}"));
        let data = directory.join("data");
        fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        write(&data.join("myid"), &format!("{id}\n"));
        write(&directory.join("zoo.cfg"), &configuration(id, ports, &data));
        let mut server = Self {
            id,
            ports: ports[id - 1],
            directory,
            log4j_properties: log4j_properties.to_owned(),
            process: Mutex::new(None),
            run_log_offset: 0,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log_path = self.log_path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        self.run_log_offset = log.metadata().map_or(0, |metadata| metadata.len() as usize);
        let stderr = log.try_clone().expect("a second handle on the server's log");
        let child = Command::new(JAVA)
            .args(JVM_OPTIONS)
            .arg(format!("-Dlog4j.configuration=file:{}", self.log4j_properties.display()))
            .arg("-cp")
            .arg(CLASSPATH.join(":"))
            .arg(MAIN_CLASS)
            .arg(self.directory.join("zoo.cfg"))
            .current_dir(&self.directory)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {JAVA} for ZooKeeper server {}: {e}", self.id)
            });
        *self.child() = Some(child);
    }

    fn is_running(&self) -> bool {
        match self.child().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Why this run cannot serve: the process exited though no one killed it, or a port it
    /// needs was taken.
    fn failure(&self) -> Option<String> {
        if let Some(child) = self.child().as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Some(format!("server {} exited on its own ({status})", self.id));
        }
        let taken = self.run_log().contains(PORT_TAKEN);
        taken.then(|| format!("server {} could not bind one of {:?}", self.id, self.ports))
    }

    fn log_path(&self) -> PathBuf {
        self.directory.join("server.log")
    }

    /// The current run's part of the log.
    fn run_log(&self) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let run = log.get(self.run_log_offset..).unwrap_or_default();
        String::from_utf8_lossy(run).into_owned()
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `zoo.cfg` of server `id`: standalone alone, otherwise with every server's quorum and
/// election ports.
fn configuration(id: usize, ports: &[Ports], data: &Path) -> String {
    let mut config = format!(
        "{SETTINGS}dataDir={}\nclientPortAddress=127.0.0.1\nclientPort={}\n",
        data.display(),
        ports[id - 1].client
    );
    if ports.len() > 1 {
        for (index, server) in ports.iter().enumerate() {
            let line =
                format!("server.{}=127.0.0.1:{}:{}\n", index + 1, server.quorum, server.election);
            config.push_str(&line);
        }
    }
    config
}

/// Three free ports per server, all held at once so that none repeats, then released for
/// ZooKeeper to bind.
fn free_ports(servers: usize) -> Vec<Ports> {
    let listeners: Vec<TcpListener> = (0..servers * 3)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|listener| listener.local_addr().expect("a bound listener's address").port())
        .collect();
    ports
        .chunks(3)
        .map(|chunk| Ports { client: chunk[0], quorum: chunk[1], election: chunk[2] })
        .collect()
}

fn require_installed() {
    let missing: Vec<&str> =
        [JAVA].iter().chain(&CLASSPATH).copied().filter(|path| !Path::new(path).exists()).collect();
    assert!(
        missing.is_empty(),
        "ZooKeeper is not installed ({} missing): run `apt-get install zookeeper`, as scripts/test does",
        missing.join(", ")
    );
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
