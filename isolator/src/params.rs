//! The module's parameters: the `parameters` of `modules.json`, matched by key and handed over
//! as one JSON object. Every key is checked at `create`: an unknown or malformed one fails it
//! with a message naming the parameter, so a typo never turns into a default silently.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use flocker_api::NodeUuid;
use flocker_api::client::{DEFAULT_REST_PORT, HostListError, TlsLibrary, split_hosts};
use flocker_api::validate::{MAXIMUM_SIZE_MULTIPLE, MINIMUM_MAXIMUM_SIZE};
use serde_json::Value;

use crate::policy::{HostPathRoots, VolumePrefixes};
use crate::request::parse_size;

/// How a path in `/v1/state/datasets` must look before a task is given it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountCheck {
    /// A mount point (what every real backend gives).
    MountPoint,
    /// An existing directory: for the directory backend run without root (symbolic links).
    Directory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parameters {
    /// `control_service_host` (or `ipaddress`): the control service's host, or the hosts of its
    /// instances separated by commas (`m1,m2,m3`: one per Mesos master, all on the same port),
    /// which a call tries in turn when one does not answer ([`flocker_api::Client`]). No host
    /// may be empty.
    pub control_host: String,
    pub control_port: u16,
    pub cluster_certificate: PathBuf,
    /// The API user's certificate, `plugin.crt` as Flocker's plugin and the old module had it.
    pub client_certificate: PathBuf,
    pub client_key: PathBuf,
    /// Read for this node's UUID unless `node_uuid` is given.
    pub node_certificate: PathBuf,
    pub node_uuid: Option<NodeUuid>,
    /// Where checkpoints live: on persistent disk, so they survive a reboot.
    pub state_dir: PathBuf,
    pub mount_timeout: Duration,
    /// How long a prepare waits for another node's lease to go before refusing: Mesos reports a
    /// task's end before it cleans the container up, so a task started elsewhere on that news
    /// finds the lease still held for a moment.
    pub lease_wait: Duration,
    pub default_maximum_size: u64,
    pub tls: TlsLibrary,
    pub mount_check: MountCheck,
    /// The longest any one call to the control service may take.
    pub request_timeout: Duration,
    /// Threads that run prepares, cleanups and recovers.
    pub workers: usize,
    /// Where a task without an image may have its volume linked on the host.
    pub host_path_roots: HostPathRoots,
    /// Which volume names each Mesos role may use.
    pub volume_prefixes: VolumePrefixes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("the parameters are not a JSON object of key/value pairs: {0}")]
    NotAnObject(String),
    #[error("unknown parameter '{0}' (known: {known})", known = KNOWN.join(", "))]
    Unknown(String),
    #[error("parameter '{0}' is required")]
    Missing(&'static str),
    #[error("parameter '{key}': {problem}")]
    Invalid { key: String, problem: String },
}

/// Long enough for a Mesos agent to clean up after a task it reported ended (its executor
/// exits about a second after the task); short enough that a volume in use is refused soon.
pub const DEFAULT_LEASE_WAIT: Duration = Duration::from_secs(10);

/// Every key, aliases included (`ipaddress` and `port` are the original module's names).
const KNOWN: &[&str] = &[
    "control_service_host",
    "ipaddress",
    "control_service_port",
    "port",
    "certificates_directory",
    "cluster_certificate",
    "client_certificate",
    "client_key",
    "node_certificate",
    "node_uuid",
    "state_dir",
    "mount_timeout_seconds",
    "lease_wait_seconds",
    "default_maximum_size",
    "tls_library",
    "mount_check",
    "request_timeout_seconds",
    "workers",
    "host_path_roots",
    "volume_prefixes_by_role",
];

impl Parameters {
    pub fn parse(json: &str) -> Result<Self, ParameterError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| ParameterError::NotAnObject(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(ParameterError::NotAnObject(format!("{value} is not an object")));
        };
        let mut given = BTreeMap::new();
        for (key, value) in object {
            if !KNOWN.contains(&key.as_str()) {
                return Err(ParameterError::Unknown(key));
            }
            let text = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                other => return Err(invalid(&key, format!("{other} is not a string"))),
            };
            given.insert(key, text);
        }
        Self::from_pairs(&Pairs(given))
    }

    fn from_pairs(pairs: &Pairs) -> Result<Self, ParameterError> {
        let host = pairs.either("control_service_host", "ipaddress")?;
        let control_host = host.ok_or(ParameterError::Missing("control_service_host"))?;
        let certificates =
            PathBuf::from(pairs.get("certificates_directory").unwrap_or("/etc/flocker"));
        let path = |key: &str, default: &str| {
            pairs.get(key).map(PathBuf::from).unwrap_or_else(|| certificates.join(default))
        };
        Ok(Self {
            control_port: match pairs.either("control_service_port", "port")? {
                Some(port) => port.parse().map_err(|_| {
                    invalid("control_service_port", format!("'{port}' is not a port number"))
                })?,
                None => DEFAULT_REST_PORT,
            },
            control_host: control_host.to_owned(),
            cluster_certificate: path("cluster_certificate", "cluster.crt"),
            client_certificate: path("client_certificate", "plugin.crt"),
            client_key: path("client_key", "plugin.key"),
            node_certificate: path("node_certificate", "node.crt"),
            node_uuid: pairs
                .parsed("node_uuid", |text| text.parse::<NodeUuid>().map_err(|e| e.to_string()))?,
            state_dir: PathBuf::from(pairs.get("state_dir").unwrap_or("/var/lib/mesos/flocker")),
            mount_timeout: pairs
                .parsed("mount_timeout_seconds", seconds)?
                .unwrap_or(Duration::from_secs(120)),
            lease_wait: pairs
                .parsed("lease_wait_seconds", seconds_or_zero)?
                .unwrap_or(DEFAULT_LEASE_WAIT),
            default_maximum_size: pairs
                .parsed("default_maximum_size", size)?
                .unwrap_or(flocker_api::DEFAULT_MAXIMUM_SIZE),
            tls: pairs.parsed("tls_library", tls_library)?.unwrap_or_default(),
            mount_check: pairs
                .parsed("mount_check", mount_check)?
                .unwrap_or(MountCheck::MountPoint),
            request_timeout: pairs
                .parsed("request_timeout_seconds", seconds)?
                .unwrap_or(Duration::from_secs(30)),
            workers: pairs.parsed("workers", workers)?.unwrap_or(8),
            host_path_roots: pairs
                .parsed("host_path_roots", HostPathRoots::parse)?
                .unwrap_or_default(),
            volume_prefixes: pairs
                .parsed("volume_prefixes_by_role", VolumePrefixes::parse)?
                .unwrap_or_default(),
        })
        .and_then(Self::checked)
    }

    fn checked(self) -> Result<Self, ParameterError> {
        match split_hosts(&self.control_host) {
            Ok(_) => {}
            Err(HostListError::Empty) => {
                return Err(invalid("control_service_host", "is empty".into()));
            }
            Err(error) => return Err(invalid("control_service_host", error.to_string())),
        }
        if !self.state_dir.is_absolute() {
            return Err(invalid(
                "state_dir",
                format!("'{}' is not an absolute path", self.state_dir.display()),
            ));
        }
        Ok(self)
    }
}

/// The given parameters, by key.
struct Pairs(BTreeMap<String, String>);

impl Pairs {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A parameter that has an alias: either may be given, or both if they agree.
    fn either(&self, key: &str, alias: &str) -> Result<Option<&str>, ParameterError> {
        match (self.get(key), self.get(alias)) {
            (Some(a), Some(b)) if a != b => {
                Err(invalid(key, format!("'{a}' disagrees with '{alias}' = '{b}'")))
            }
            (Some(value), _) | (None, Some(value)) => Ok(Some(value)),
            (None, None) => Ok(None),
        }
    }

    fn parsed<T>(
        &self,
        key: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ParameterError> {
        self.get(key).map(|text| parse(text).map_err(|problem| invalid(key, problem))).transpose()
    }
}

fn invalid(key: &str, problem: String) -> ParameterError {
    ParameterError::Invalid { key: key.to_owned(), problem }
}

fn seconds(text: &str) -> Result<Duration, String> {
    seconds_or_zero(text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}' is not a positive number of seconds"))
}

/// Seconds where 0 means "do not wait".
fn seconds_or_zero(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("'{text}' is not a number of seconds (0 or more)"))
}

fn size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MINIMUM_MAXIMUM_SIZE || bytes % MAXIMUM_SIZE_MULTIPLE != 0 {
        return Err(format!("'{text}' must be at least 64 MiB and a multiple of 1024 bytes"));
    }
    Ok(bytes)
}

fn tls_library(text: &str) -> Result<TlsLibrary, String> {
    match text {
        "rustls" => Ok(TlsLibrary::Rustls),
        "openssl" => Ok(TlsLibrary::OpenSsl),
        _ => Err(format!("'{text}' is neither 'rustls' nor 'openssl'")),
    }
}

fn mount_check(text: &str) -> Result<MountCheck, String> {
    match text {
        "mountpoint" => Ok(MountCheck::MountPoint),
        "directory" => Ok(MountCheck::Directory),
        _ => Err(format!("'{text}' is neither 'mountpoint' nor 'directory'")),
    }
}

fn workers(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|n| (1..=256).contains(n))
        .ok_or_else(|| format!("'{text}' is not a number from 1 to 256"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_modules_two_parameters_still_work_with_every_default() {
        let parameters = Parameters::parse(r#"{"ipaddress": "10.0.0.5", "port": "4523"}"#).unwrap();
        assert_eq!((parameters.control_host.as_str(), parameters.control_port), ("10.0.0.5", 4523));
        assert_eq!(parameters.cluster_certificate, PathBuf::from("/etc/flocker/cluster.crt"));
        assert_eq!(parameters.client_certificate, PathBuf::from("/etc/flocker/plugin.crt"));
        assert_eq!(parameters.node_certificate, PathBuf::from("/etc/flocker/node.crt"));
        assert_eq!(parameters.state_dir, PathBuf::from("/var/lib/mesos/flocker"));
        assert_eq!(parameters.mount_timeout, Duration::from_secs(120));
        assert_eq!(parameters.lease_wait, DEFAULT_LEASE_WAIT);
        assert_eq!(parameters.default_maximum_size, 75 * 1024 * 1024 * 1024);
        assert_eq!(
            (parameters.tls, parameters.mount_check),
            (TlsLibrary::Rustls, MountCheck::MountPoint)
        );
        assert_eq!(parameters.host_path_roots, HostPathRoots::default());
        assert_eq!(parameters.volume_prefixes, VolumePrefixes::default(), "unrestricted");
    }

    #[test]
    fn every_parameter_can_be_set() {
        let json = r#"{"control_service_host": "control", "control_service_port": 14523,
            "certificates_directory": "/certs", "client_key": "/keys/api.key",
            "node_uuid": "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b", "state_dir": "/srv/flocker",
            "mount_timeout_seconds": "5", "default_maximum_size": "1GiB", "tls_library": "openssl",
            "mount_check": "directory", "request_timeout_seconds": "2.5", "workers": "3",
            "lease_wait_seconds": "0", "host_path_roots": "/srv/a,/srv/b",
            "volume_prefixes_by_role": "web=web-"}"#;
        let p = Parameters::parse(json).unwrap();
        assert_eq!(p.control_port, 14523);
        assert_eq!(p.cluster_certificate, PathBuf::from("/certs/cluster.crt"));
        assert_eq!(p.client_key, PathBuf::from("/keys/api.key"));
        assert_eq!(p.node_uuid.unwrap().to_string(), "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!((p.mount_timeout, p.default_maximum_size), (Duration::from_secs(5), 1 << 30));
        assert_eq!(
            (p.tls, p.mount_check, p.workers),
            (TlsLibrary::OpenSsl, MountCheck::Directory, 3)
        );
        assert_eq!(p.request_timeout, Duration::from_millis(2500));
        assert_eq!(p.lease_wait, Duration::ZERO, "0: refuse at once");
        assert_eq!(p.host_path_roots, HostPathRoots::parse("/srv/a, /srv/b").unwrap());
        assert_eq!(p.volume_prefixes, VolumePrefixes::parse("web=web-").unwrap());
        let none = Parameters::parse(r#"{"ipaddress": "h", "host_path_roots": ""}"#).unwrap();
        assert_eq!(none.host_path_roots, HostPathRoots::parse("").unwrap(), "empty: no links");
    }

    #[test]
    fn the_control_service_may_be_several_instances_separated_by_commas() {
        let json = r#"{"control_service_host": "m1, 10.0.0.2,::1,[fe80::3]"}"#;
        let parameters = Parameters::parse(json).unwrap();
        assert_eq!(parameters.control_host, "m1, 10.0.0.2,::1,[fe80::3]");
        let hosts = split_hosts(&parameters.control_host).unwrap();
        assert_eq!(hosts, ["m1", "10.0.0.2", "::1", "[fe80::3]"]);
        let old_name = Parameters::parse(r#"{"ipaddress": "m1,m2", "port": "4523"}"#).unwrap();
        assert_eq!(old_name.control_host, "m1,m2");
    }

    #[test]
    fn an_empty_host_in_the_list_is_refused() {
        let cases = [
            (r#"{"control_service_host": ""}"#, "is empty"),
            (r#"{"control_service_host": " , "}"#, "host 1 of 2 is empty"),
            (r#"{"control_service_host": "m1,,m3"}"#, "host 2 of 3 is empty"),
            (r#"{"ipaddress": "m1,"}"#, "host 2 of 2 is empty"),
        ];
        for (json, words) in cases {
            let message = Parameters::parse(json).unwrap_err().to_string();
            assert!(message.starts_with("parameter 'control_service_host': "), "{json}: {message}");
            assert!(message.contains(words), "{json}: {message}");
        }
        let many = vec!["m"; 17].join(",");
        let message = Parameters::parse(&format!(r#"{{"ipaddress": "{many}"}}"#)).unwrap_err();
        assert!(message.to_string().contains("more than 16"), "{message}");
    }

    #[test]
    fn a_bad_parameter_is_named() {
        let cases = [
            (r#"{"port": "4523"}"#, "control_service_host"),
            (r#"{"ipaddress": "h", "prot": "4523"}"#, "unknown parameter 'prot'"),
            (r#"{"ipaddress": "h", "port": "45x"}"#, "control_service_port"),
            (r#"{"ipaddress": "h", "control_service_host": "g"}"#, "disagrees"),
            (r#"{"ipaddress": "h", "mount_timeout_seconds": "-1"}"#, "mount_timeout_seconds"),
            (r#"{"ipaddress": "h", "lease_wait_seconds": "soon"}"#, "lease_wait_seconds"),
            (r#"{"ipaddress": "h", "default_maximum_size": "1MiB"}"#, "default_maximum_size"),
            (r#"{"ipaddress": "h", "tls_library": "gnutls"}"#, "tls_library"),
            (r#"{"ipaddress": "h", "node_uuid": "eth0"}"#, "node_uuid"),
            (r#"{"ipaddress": "h", "state_dir": "relative"}"#, "state_dir"),
            (r#"{"ipaddress": "h", "workers": "0"}"#, "workers"),
            (r#"{"ipaddress": "h", "host_path_roots": "/"}"#, "host_path_roots"),
            (r#"{"ipaddress": "h", "volume_prefixes_by_role": "web"}"#, "volume_prefixes_by_role"),
            (r#"{"ipaddress": ["h"]}"#, "ipaddress"),
            (r#"[{"key": "ipaddress", "value": "h"}]"#, "not an object"),
        ];
        for (json, words) in cases {
            let message = Parameters::parse(json).unwrap_err().to_string();
            assert!(message.contains(words), "{json}: {message}");
        }
    }
}
