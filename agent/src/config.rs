//! `agent.yml`, Flocker's format, with a few optional keys of ours:
//!
//! ```yaml
//! version: 1
//! control-service: {hostname: control.example.com, port: 4524}
//!   # or the control service's instances (one per Mesos master), all on that port, tried in
//!   # turn: hostname: [m1, m2, m3], or hostname: "m1,m2,m3" (at most 16)
//! dataset:
//!   backend: loopback            # or: directory, btrfs
//!   root_path: /var/lib/flocker/loopback   # where volumes live; share it between nodes to move them
//!   compute_instance_id: node-a  # this node's name in root_path (default: its node UUID)
//!   mount_root: /flocker         # ours: where datasets are mounted, <mount_root>/<dataset_id>
//!   mount_mode: bind             # ours, directory backend only: bind (root) or symlink
//! # or, ours: a subvolume per dataset in this node's btrfs pool, mounted at `pool`
//! dataset:
//!   backend: btrfs
//!   pool: /var/lib/flocker/btrfs # where the pool is mounted (made if missing)
//!   pool_device: /dev/sdb        # what holds it: a device (formatted only if blank), or
//!   # pool_file: /var/lib/flocker/btrfs.img   # a file of ours on a loop device, made if missing,
//!   # pool_size: 10737418240                  # of this many bytes (at least 256 MiB);
//!   # neither: `pool` is a btrfs mounted already
//!   transfer_port: 4525          # where other nodes push volumes to this one (mutual TLS)
//!   mount_root: /flocker
//! agent:                         # ours, all optional
//!   era: <uuid>                  # instead of the boot id: for several agents on one machine
//!   poll_seconds: 30             # how long a configuration poll waits for a change
//!   max_backoff_seconds: 10      # the longest pause after a failure
//!   metrics_address: 127.0.0.1:9102  # serve Prometheus metrics here (off unless given)
//! logging: {…}                   # Flocker's; ignored (use RUST_LOG)
//! ```
//!
//! `cluster.crt`, `node.crt` and `node.key` are read from the directory holding `agent.yml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flocker_api::client::{DEFAULT_AGENT_PORT, HostList};
use flocker_api::{ClientConfig, Era};
use serde::Deserialize;

/// Everything the agent was told by its `agent.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// The control service's host, or its instances' hosts separated by commas, as
    /// [`ClientConfig::host`] takes them.
    pub control_host: String,
    pub control_port: u16,
    pub backend: BackendConfig,
    /// Where datasets are mounted: `<mount_root>/<dataset_id>`.
    pub mount_root: PathBuf,
    pub era: Option<Era>,
    pub poll: Duration,
    pub max_backoff: Duration,
    /// Where to serve Prometheus metrics over plain HTTP, if anywhere.
    pub metrics_address: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    Loopback {
        root_path: PathBuf,
        compute_instance_id: Option<String>,
    },
    Directory {
        root_path: PathBuf,
        compute_instance_id: Option<String>,
        mount_mode: MountMode,
    },
    /// A subvolume per dataset in the btrfs mounted at `pool`.
    Btrfs {
        pool: PathBuf,
        source: PoolSource,
        /// Where other nodes push volumes to this one (0: any free port, for tests).
        transfer_port: u16,
    },
}

/// What the btrfs pool lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSource {
    /// Nothing to set up: `pool` is a btrfs mounted already (by the operator).
    Mounted,
    /// A block device of the node's, formatted only if it holds nothing.
    Device(PathBuf),
    /// A file of ours on a loop device (tests, demos): made sparse if missing.
    File { path: PathBuf, size: u64 },
}

/// The smallest `pool_size`: mkfs.btrfs wants room for its metadata and system chunks
/// twice over, and a pool smaller than this holds little else.
pub const SMALLEST_POOL: u64 = 256 * 1024 * 1024;

/// How the directory backend makes a dataset appear at its mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountMode {
    /// A bind mount: needs root.
    Bind,
    /// A symbolic link: for machines where the agent is not root.
    Symlink,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: serde_yaml_ng::Value,
    #[serde(rename = "control-service")]
    control_service: ControlService,
    dataset: Dataset,
    #[serde(default)]
    agent: Agent,
    /// Flocker's Python logging configuration: accepted, not used.
    #[serde(default)]
    logging: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlService {
    /// One host, or several (a YAML list, or separated by commas): checked as it is read.
    hostname: HostList,
    #[serde(default = "default_port")]
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dataset {
    backend: String,
    root_path: Option<PathBuf>,
    compute_instance_id: Option<String>,
    #[serde(default = "default_mount_root")]
    mount_root: PathBuf,
    mount_mode: Option<MountMode>,
    /// Flocker's loopback key; sizes are used exactly here.
    allocation_unit: Option<u64>,
    /// Ours, btrfs backend only.
    pool: Option<PathBuf>,
    pool_device: Option<PathBuf>,
    pool_file: Option<PathBuf>,
    pool_size: Option<u64>,
    transfer_port: Option<u16>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Agent {
    era: Option<Era>,
    poll_seconds: Option<f64>,
    max_backoff_seconds: Option<f64>,
    metrics_address: Option<String>,
}

fn default_port() -> u16 {
    DEFAULT_AGENT_PORT
}

fn default_mount_root() -> PathBuf {
    PathBuf::from("/flocker")
}

impl AgentConfig {
    /// Reads and checks `agent.yml`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Checks the text of an `agent.yml`; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid { path: path.to_owned(), problem };
        let file: File = serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.version.as_u64() != Some(1) {
            return Err(invalid("version must be 1".to_owned()));
        }
        if file.logging.is_some() {
            log::info!("{}: 'logging' is Flocker's; set RUST_LOG instead", path.display());
        }
        let dataset = file.dataset;
        if dataset.allocation_unit.is_some_and(|unit| unit != 1) {
            log::warn!("{}: allocation_unit is ignored; sizes are used exactly", path.display());
        }
        if dataset.backend != "btrfs" {
            let btrfs_keys = [
                ("pool", dataset.pool.is_some()),
                ("pool_device", dataset.pool_device.is_some()),
                ("pool_file", dataset.pool_file.is_some()),
                ("pool_size", dataset.pool_size.is_some()),
                ("transfer_port", dataset.transfer_port.is_some()),
            ];
            if let Some((key, _)) = btrfs_keys.iter().find(|(_, given)| *given) {
                return Err(invalid(format!("dataset: {key} is for the btrfs backend")));
            }
        }
        let backend = match dataset.backend.as_str() {
            "loopback" => {
                if dataset.mount_mode.is_some() {
                    return Err(invalid("dataset: mount_mode is for the directory backend".into()));
                }
                BackendConfig::Loopback {
                    root_path: dataset
                        .root_path
                        .unwrap_or_else(|| "/var/lib/flocker/loopback".into()),
                    compute_instance_id: dataset.compute_instance_id,
                }
            }
            "directory" => BackendConfig::Directory {
                root_path: dataset.root_path.unwrap_or_else(|| "/var/lib/flocker/directory".into()),
                compute_instance_id: dataset.compute_instance_id,
                mount_mode: dataset.mount_mode.unwrap_or(if nix::unistd::geteuid().is_root() {
                    MountMode::Bind
                } else {
                    MountMode::Symlink
                }),
            },
            "btrfs" => btrfs(&dataset).map_err(invalid)?,
            other => {
                return Err(invalid(format!(
                    "dataset: backend '{other}' is not one this agent has (loopback, directory, \
                     btrfs)"
                )));
            }
        };
        if let Some(id) = backend.compute_instance_id()
            && (id.is_empty() || id.contains('/') || id.starts_with('.'))
        {
            let problem = format!("dataset: compute_instance_id '{id}' cannot name a directory");
            return Err(invalid(problem));
        }
        for (key, root) in [("root_path", backend.root_path()), ("mount_root", &dataset.mount_root)]
        {
            if !root.is_absolute() {
                return Err(invalid(format!(
                    "dataset: {key} '{}' is not an absolute path",
                    root.display()
                )));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            control_host: file.control_service.hostname.joined(),
            control_port: file.control_service.port,
            backend,
            mount_root: dataset.mount_root,
            era: file.agent.era,
            poll: seconds(&invalid, "poll_seconds", file.agent.poll_seconds, 30.0)?,
            max_backoff: seconds(
                &invalid,
                "max_backoff_seconds",
                file.agent.max_backoff_seconds,
                10.0,
            )?,
            metrics_address: file
                .agent
                .metrics_address
                .map(|text| text.parse().map_err(|_| text))
                .transpose()
                .map_err(|text| {
                    invalid(format!("agent: metrics_address '{text}' is not ADDR:PORT"))
                })?,
        })
    }

    /// The directory holding `agent.yml`, where the certificates are.
    pub fn directory(&self) -> &Path {
        self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }

    /// How to reach the agent API, presenting `node.crt`.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::from_directory(
            self.directory(),
            "node",
            &self.control_host,
            self.control_port,
        )
    }
}

/// The btrfs backend's keys: `pool`, and at most one of `pool_device` and `pool_file` (with
/// its `pool_size`); the shared keys that mean nothing to it are refused, not ignored.
fn btrfs(dataset: &Dataset) -> Result<BackendConfig, String> {
    for (key, given) in [
        ("root_path", dataset.root_path.is_some()),
        ("compute_instance_id", dataset.compute_instance_id.is_some()),
        ("mount_mode", dataset.mount_mode.is_some()),
    ] {
        if given {
            return Err(format!("dataset: {key} is not for the btrfs backend (it has pool)"));
        }
    }
    let pool = dataset.pool.clone().unwrap_or_else(|| "/var/lib/flocker/btrfs".into());
    let absolute = |key: &str, path: &Path| {
        if path.is_absolute() {
            Ok(())
        } else {
            Err(format!("dataset: {key} '{}' is not an absolute path", path.display()))
        }
    };
    absolute("pool", &pool)?;
    let source = match (&dataset.pool_device, &dataset.pool_file, dataset.pool_size) {
        (Some(_), Some(_), _) => {
            return Err("dataset: pool_device and pool_file exclude each other; give one".into());
        }
        (Some(_), None, Some(_)) => {
            return Err("dataset: pool_size is for pool_file (a device has its own size)".into());
        }
        (None, None, Some(_)) => return Err("dataset: pool_size needs pool_file".into()),
        (None, Some(_), None) => {
            return Err("dataset: pool_file needs pool_size (bytes, at least 256 MiB)".into());
        }
        (None, Some(_), Some(size)) if size < SMALLEST_POOL => {
            return Err(format!(
                "dataset: pool_size {size} is less than 256 MiB ({SMALLEST_POOL} bytes)"
            ));
        }
        (None, Some(file), Some(size)) => {
            absolute("pool_file", file)?;
            if file.starts_with(&pool) {
                let problem = "is inside pool, which it holds";
                return Err(format!("dataset: pool_file '{}' {problem}", file.display()));
            }
            PoolSource::File { path: file.clone(), size }
        }
        (Some(device), None, None) => {
            absolute("pool_device", device)?;
            PoolSource::Device(device.clone())
        }
        (None, None, None) => PoolSource::Mounted,
    };
    let transfer_port = dataset.transfer_port.unwrap_or(crate::peer::DEFAULT_TRANSFER_PORT);
    Ok(BackendConfig::Btrfs { pool, source, transfer_port })
}

impl BackendConfig {
    /// Where the backend keeps its volumes: `root_path`, or the btrfs `pool`.
    pub fn root_path(&self) -> &PathBuf {
        match self {
            Self::Loopback { root_path, .. } | Self::Directory { root_path, .. } => root_path,
            Self::Btrfs { pool, .. } => pool,
        }
    }

    pub fn compute_instance_id(&self) -> Option<&str> {
        match self {
            Self::Loopback { compute_instance_id, .. }
            | Self::Directory { compute_instance_id, .. } => compute_instance_id.as_deref(),
            Self::Btrfs { .. } => None,
        }
    }
}

fn seconds(
    invalid: &impl Fn(String) -> ConfigError,
    key: &str,
    value: Option<f64>,
    default: f64,
) -> Result<Duration, ConfigError> {
    let seconds = value.unwrap_or(default);
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid(format!("agent: {key} must be a positive number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("/etc/flocker/agent.yml"), text)
    }

    #[test]
    fn flockers_own_loopback_example_is_read_with_its_defaults() {
        let config = parse(
            "version: 1\ncontrol-service: {hostname: \"flocker-control.example.internal\", port: 4524}\n\
             dataset: {backend: loopback, root_path: /var/lib/flocker/loopback, compute_instance_id: node-a}\n",
        )
        .unwrap();
        assert_eq!(config.control_host, "flocker-control.example.internal");
        assert_eq!(config.control_port, 4524);
        assert_eq!(
            config.backend,
            BackendConfig::Loopback {
                root_path: "/var/lib/flocker/loopback".into(),
                compute_instance_id: Some("node-a".into())
            }
        );
        assert_eq!(config.mount_root, Path::new("/flocker"));
        assert_eq!(config.directory(), Path::new("/etc/flocker"));
        assert_eq!(config.poll, Duration::from_secs(30));
    }

    #[test]
    fn the_port_defaults_to_the_agent_port_and_logging_is_accepted() {
        let config = parse(
            "version: 1\ncontrol-service: {hostname: c}\ndataset: {backend: directory, mount_mode: symlink}\n\
             logging: {version: 1}\nagent: {era: 6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b, poll_seconds: 0.5}\n",
        )
        .unwrap();
        assert_eq!(config.control_port, 4524);
        assert!(matches!(
            config.backend,
            BackendConfig::Directory { mount_mode: MountMode::Symlink, .. }
        ));
        assert_eq!(config.era.unwrap().to_string(), "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(config.poll, Duration::from_millis(500));
        assert_eq!(config.metrics_address, None);
    }

    #[test]
    fn metrics_are_served_where_agent_metrics_address_says() {
        let with = |address: &str| {
            parse(&format!(
                "version: 1\ncontrol-service: {{hostname: c}}\ndataset: {{backend: loopback}}\n\
                 agent: {{metrics_address: \"{address}\"}}\n"
            ))
        };
        assert_eq!(with("127.0.0.1:9102").unwrap().metrics_address, "127.0.0.1:9102".parse().ok());
        assert_eq!(with("[::1]:0").unwrap().metrics_address, "[::1]:0".parse().ok());
        for bad in ["9102", "localhost:9102", "127.0.0.1"] {
            let message = with(bad).unwrap_err().to_string();
            assert!(message.contains("/etc/flocker/agent.yml"), "{message}");
            assert!(
                message.contains(&format!("metrics_address '{bad}' is not ADDR:PORT")),
                "{message}"
            );
        }
    }

    #[test]
    fn the_control_service_may_be_several_instances_as_a_list_or_separated_by_commas() {
        let with = |hostname: &str| {
            parse(&format!(
                "version: 1\ncontrol-service: {{hostname: {hostname}, port: 4524}}\n\
                 dataset: {{backend: loopback}}\n"
            ))
        };
        assert_eq!(with("[m1, m2, m3]").unwrap().control_host, "m1,m2,m3");
        assert_eq!(with("\"m1, m2,m3\"").unwrap().control_host, "m1,m2,m3");
        assert_eq!(with("['::1', '[fe80::2]']").unwrap().control_host, "::1,[fe80::2]");
        let config = with("[m1, m2]").unwrap();
        assert_eq!(config.client_config().host, "m1,m2");
        assert_eq!(config.client_config().hosts().unwrap(), ["m1", "m2"]);
        let many = vec!["m"; 17].join(", ");
        for (hostname, words) in [
            ("\"\"", "no control service host"),
            ("[]", "no control service host"),
            ("[m1, '']", "host 2 of 2 is empty"),
            ("\"m1,,m3\"", "host 2 of 3 is empty"),
            (&format!("[{many}]"), "17 hosts, more than 16"),
        ] {
            let message = with(hostname).unwrap_err().to_string();
            assert!(message.contains("/etc/flocker/agent.yml"), "{message}");
            assert!(message.contains(words), "{hostname}: {message}");
        }
    }

    #[test]
    fn mistakes_are_refused_with_the_file_and_the_problem() {
        let cases = [
            (
                "version: 2\ncontrol-service: {hostname: c}\ndataset: {backend: loopback}\n",
                "version must be 1",
            ),
            ("version: 1\ndataset: {backend: loopback}\n", "control-service"),
            (
                "version: 1\ncontrol-service: {hostname: c}\ndataset: {backend: aws}\n",
                "backend 'aws'",
            ),
            (
                "version: 1\ncontrol-service: {hostname: c}\ndataset: {backend: loopback, rootpath: /x}\n",
                "rootpath",
            ),
            (
                "version: 1\ncontrol-service: {hostname: c}\ndataset: {backend: loopback, root_path: x}\n",
                "absolute",
            ),
            (
                "version: 1\ncontrol-service: {hostname: c}\ndataset: {backend: loopback, compute_instance_id: a/b}\n",
                "compute_instance_id",
            ),
            (
                "version: 1\ncontrol-service: {hostname: c}\ndataset: {backend: loopback}\nagent: {poll_seconds: 0}\n",
                "poll_seconds",
            ),
            (
                "version: 1\ncontrol-service: {hostname: c}\ndataset: {backend: loopback, mount_mode: bind}\n",
                "mount_mode",
            ),
            ("{{{", "/etc/flocker/agent.yml"),
        ];
        for (text, words) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains("/etc/flocker/agent.yml"), "{message}");
            assert!(message.contains(words), "{text}: {message}");
        }
    }

    fn btrfs(keys: &str) -> Result<AgentConfig, ConfigError> {
        parse(&format!(
            "version: 1\ncontrol-service: {{hostname: c}}\ndataset: {{backend: btrfs{keys}}}\n"
        ))
    }

    #[test]
    fn a_btrfs_pool_is_a_mounted_btrfs_a_device_or_a_file_of_ours() {
        let backend = |keys| btrfs(keys).unwrap().backend;
        assert_eq!(
            backend(""),
            BackendConfig::Btrfs {
                pool: "/var/lib/flocker/btrfs".into(),
                source: PoolSource::Mounted,
                transfer_port: 4525,
            }
        );
        assert_eq!(
            backend(", pool: /srv/pool, pool_device: /dev/sdb"),
            BackendConfig::Btrfs {
                pool: "/srv/pool".into(),
                source: PoolSource::Device("/dev/sdb".into()),
                transfer_port: 4525,
            }
        );
        let config = btrfs(
            ", pool_file: /var/lib/flocker/btrfs.img, pool_size: 268435456, mount_root: /mnt/f",
        )
        .unwrap();
        assert_eq!(
            config.backend,
            BackendConfig::Btrfs {
                pool: "/var/lib/flocker/btrfs".into(),
                source: PoolSource::File {
                    path: "/var/lib/flocker/btrfs.img".into(),
                    size: 1 << 28
                },
                transfer_port: 4525,
            }
        );
        assert_eq!(config.backend.root_path(), Path::new("/var/lib/flocker/btrfs"));
        assert_eq!(config.backend.compute_instance_id(), None);
        assert_eq!(config.mount_root, Path::new("/mnt/f"));
        let any_port = btrfs(", transfer_port: 0").unwrap();
        assert!(matches!(any_port.backend, BackendConfig::Btrfs { transfer_port: 0, .. }));
    }

    #[test]
    fn btrfs_mistakes_are_refused_naming_the_key() {
        let cases = [
            (", pool: pool", "pool 'pool' is not an absolute path"),
            (", pool_device: sdb", "pool_device 'sdb' is not an absolute path"),
            (
                ", pool_file: f.img, pool_size: 268435456",
                "pool_file 'f.img' is not an absolute path",
            ),
            (
                ", pool_device: /dev/sdb, pool_file: /f.img, pool_size: 268435456",
                "exclude each other",
            ),
            (", pool_file: /f.img", "pool_file needs pool_size"),
            (", pool_size: 268435456", "pool_size needs pool_file"),
            (", pool_device: /dev/sdb, pool_size: 268435456", "pool_size is for pool_file"),
            (
                ", pool_file: /f.img, pool_size: 268435455",
                "pool_size 268435455 is less than 256 MiB",
            ),
            (
                ", pool_file: /p/f.img, pool: /p, pool_size: 268435456",
                "pool_file '/p/f.img' is inside pool",
            ),
            (", pool_file: /f.img, pool_size: -1", "pool_size"),
            (", root_path: /x", "root_path is not for the btrfs backend"),
            (", compute_instance_id: a", "compute_instance_id is not for the btrfs backend"),
            (", mount_mode: bind", "mount_mode is not for the btrfs backend"),
            (", mount_root: flocker", "mount_root 'flocker' is not an absolute path"),
        ];
        for (keys, words) in cases {
            let message = btrfs(keys).unwrap_err().to_string();
            assert!(message.contains("/etc/flocker/agent.yml"), "{message}");
            assert!(message.contains(words), "{keys}: {message}");
        }
        for key in ["pool: /p", "pool_device: /dev/sdb", "pool_file: /f", "pool_size: 1"] {
            let text = format!(
                "version: 1\ncontrol-service: {{hostname: c}}\ndataset: {{backend: loopback, {key}}}\n"
            );
            let message = parse(&text).unwrap_err().to_string();
            assert!(message.contains("is for the btrfs backend"), "{key}: {message}");
        }
    }
}
