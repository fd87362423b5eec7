//! `flocker-control`'s command line, in Flocker's style.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

use crate::limits::Limits;
use crate::migrate::Location;
use crate::store::zookeeper::{Credentials, Settings, StoreUrl};

/// The Flocker-compatible control service: the v1 REST API for clients, the agent API for
/// `flocker-dataset-agent`, and the cluster's desired configuration, stored crash-safely.
#[derive(Debug, Clone, Parser)]
#[command(name = "flocker-control", version, about)]
pub struct Options {
    /// Holds cluster.crt, control-service.crt and control-service.key.
    #[arg(long, default_value = "/etc/flocker")]
    pub certificates_directory: PathBuf,

    /// Where the configuration is stored (the journal store), unless --store names ZooKeeper.
    #[arg(long, default_value = "/var/lib/flocker")]
    pub data_path: PathBuf,

    /// Keep the configuration in ZooKeeper, shared by a control service on every Mesos master:
    /// `zk://HOST:2181,HOST:2181,HOST:2181/flocker` (the path is the znode it lives under).
    #[arg(long, value_parser = StoreUrl::parse)]
    pub store: Option<StoreUrl>,

    /// Seconds a write waits for ZooKeeper before it fails (503); reads answer from the last
    /// view meanwhile.
    #[arg(long, global = true, default_value_t = 5.0, value_parser = parse_seconds)]
    pub store_timeout: f64,

    /// A file (mode 600) holding `user:password`: the control services authenticate to
    /// ZooKeeper with it, and the configuration's znodes are theirs alone.
    #[arg(long, global = true)]
    pub store_credentials: Option<PathBuf>,

    /// Write a snapshot of the ZooKeeper store after this many changes instead of 1,000 (for
    /// tests of compaction).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub store_compact_every: Option<u64>,

    /// The REST API's endpoint: `4523`, `tcp:4523`, `tcp:4523:interface=ADDR` or `ADDR:PORT`.
    #[arg(long, default_value = "4523", value_parser = parse_endpoint)]
    pub port: SocketAddr,

    /// The agent API's endpoint, in the same forms.
    #[arg(long, default_value = "4524", value_parser = parse_endpoint)]
    pub agent_port: SocketAddr,

    /// Seconds a client has for a request head or body; an idle connection is closed after it.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub request_timeout: f64,

    /// Seconds after which a node whose agent stopped calling leaves /v1/state/nodes.
    #[arg(long, default_value_t = 120.0, value_parser = parse_seconds)]
    pub node_expiry: f64,

    /// Authenticated connections per port; past this, the least recently active idle one is
    /// closed to make room.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,

    /// The most datasets the configuration keeps (tombstones count too).
    #[arg(long, default_value_t = Limits::default().max_datasets)]
    pub max_datasets: usize,

    /// The most bytes of metadata (keys and values) all datasets together may carry.
    #[arg(long, default_value_t = Limits::default().max_metadata_bytes)]
    pub max_metadata_bytes: usize,

    /// The largest maximum_size a dataset may have, in bytes (default 1 PiB).
    #[arg(long, default_value_t = Limits::default().max_dataset_size)]
    pub max_dataset_size: u64,

    /// The longest a lease may be asked to last, in seconds (default a year).
    #[arg(long, default_value_t = Limits::default().max_lease_seconds, value_parser = parse_seconds)]
    pub max_lease_seconds: f64,

    /// `openssl` also accepts X.509 v1 client certificates (Flocker 1.x's flocker-ca made
    /// them), their chains verified by the system's OpenSSL; `rustls` accepts only v3.
    #[arg(long, value_enum, default_value_t = crate::tls::TlsLibrary::Rustls)]
    pub tls_library: crate::tls::TlsLibrary,

    /// Seconds a client has for its TLS handshake.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub handshake_timeout: f64,

    /// Connections per port that may be in their TLS handshake at once; past this, the oldest
    /// handshake of the address with the most is closed to make room.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_handshakes: u16,

    /// Connections from one IP address (an IPv6 one: its /64) that may be in their TLS
    /// handshake at once, per port; past this, new ones from it are closed at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_handshakes_per_address: u16,

    /// Serve Prometheus metrics over plain HTTP at `http://ADDR:PORT/metrics` (port 0: any
    /// free port, logged). Off unless given. Anyone who can reach the address can read them:
    /// keep it on 127.0.0.1 unless a firewall keeps others out.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_address: Option<SocketAddr>,

    /// Start even though the store lost changes it had acknowledged (its journal deleted or cut
    /// short, another store's files in its place, its mark damaged), carrying on with what is
    /// left. Restore from a backup first if you can; give it for one start only.
    #[arg(long)]
    pub accept_data_loss: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Copy the configuration into an empty store: from the journal (a --data-path directory,
    /// or Flocker 1.x's current_configuration.json) into ZooKeeper, or back. Stop every control
    /// service first.
    Migrate {
        /// A directory, Flocker's current_configuration.json, or zk://HOST:2181,…/PATH.
        #[arg(long, value_parser = Location::parse)]
        from: Location,
        /// An empty store: a directory or zk://HOST:2181,…/PATH.
        #[arg(long, value_parser = Location::parse)]
        to: Location,
    },
}

impl Options {
    /// How to reach ZooKeeper, for `--store` and `migrate`.
    pub fn zookeeper_settings(&self) -> Result<Settings, String> {
        let credentials = self.store_credentials.as_deref().map(Credentials::read).transpose()?;
        Ok(Settings {
            timeout: std::time::Duration::from_secs_f64(self.store_timeout),
            credentials,
        })
    }

    /// The bounds the flags set.
    pub fn limits(&self) -> Limits {
        Limits {
            max_datasets: self.max_datasets,
            max_metadata_bytes: self.max_metadata_bytes,
            max_dataset_size: self.max_dataset_size,
            max_lease_seconds: self.max_lease_seconds,
        }
    }
}

/// Twisted's endpoint strings as Flocker took them (`4523`, `tcp:4523`,
/// `tcp:4523:interface=127.0.0.1`, `tcp:port=4523:interface=\:\:1`), and plain `ADDR:PORT`.
pub fn parse_endpoint(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let mut port = None;
    let mut interface = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let fields = twisted_fields(text.strip_prefix("tcp:").unwrap_or(text));
    for (index, field) in fields.iter().enumerate() {
        match field.split_once('=') {
            None if index == 0 => port = Some(field.as_str()),
            Some(("port", value)) => port = Some(value),
            Some(("interface", value)) => {
                interface = value.parse().map_err(|_| format!("'{value}' is not an IP address"))?;
            }
            Some(("backlog", _)) => {}
            _ => {
                return Err(format!(
                    "'{text}' is not an endpoint: use 4523, tcp:4523 or ADDR:PORT"
                ));
            }
        }
    }
    let port = port.ok_or_else(|| format!("'{text}' names no port"))?;
    let port: u16 = port.parse().map_err(|_| format!("'{port}' is not a port number"))?;
    Ok(SocketAddr::new(interface, port))
}

/// Splits at `:`, where Twisted writes a colon inside a value as `\:`.
fn twisted_fields(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut characters = text.chars();
    while let Some(c) = characters.next() {
        match c {
            '\\' => field.extend(characters.next()),
            ':' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(seconds),
        _ => Err(format!("'{text}' is not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_form_flocker_accepted_parses() {
        let any = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        assert_eq!(parse_endpoint("4523"), Ok(any(4523)));
        assert_eq!(parse_endpoint("tcp:4523"), Ok(any(4523)));
        assert_eq!(parse_endpoint("tcp:port=4524"), Ok(any(4524)));
        assert_eq!(
            parse_endpoint("tcp:4523:interface=127.0.0.1"),
            Ok("127.0.0.1:4523".parse().unwrap())
        );
        assert_eq!(parse_endpoint("127.0.0.1:0"), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(parse_endpoint("[::1]:4523"), Ok("[::1]:4523".parse().unwrap()));
        assert_eq!(parse_endpoint(r"tcp:4523:interface=\:\:1"), Ok("[::1]:4523".parse().unwrap()));
    }

    #[test]
    fn a_bad_endpoint_says_why() {
        assert!(parse_endpoint("tcp:http").unwrap_err().contains("not a port"));
        assert!(parse_endpoint("tcp:4523:interface=eth0").unwrap_err().contains("not an IP"));
        assert!(parse_endpoint("unix:/run/x").is_err());
        assert!(parse_endpoint("70000").is_err());
    }
}
