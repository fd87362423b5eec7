//! A control service's hosts, as one string: `"10.0.0.1,10.0.0.2,master-3"`. One string, not a
//! list, because every place a host is given (a flag, an environment variable, a Mesos module
//! parameter, `agent.yml`) already holds one string: a list then passes through unchanged.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// The most hosts a list may name: a call may spend a connect timeout on each.
pub const MAXIMUM_HOSTS: usize = 16;

/// A host list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostListError {
    #[error("no control service host given")]
    Empty,
    #[error("control service hosts '{list}': host {position} of {count} is empty")]
    EmptyItem { list: String, position: usize, count: usize },
    #[error("control service hosts '{list}': {count} hosts, more than {MAXIMUM_HOSTS}")]
    TooMany { list: String, count: usize },
}

/// The hosts of a comma-separated list, each trimmed. Only `,` separates them, so an IPv6
/// literal may be written bare (`::1`) or in brackets (`[::1]`).
pub fn split_hosts(list: &str) -> Result<Vec<String>, HostListError> {
    if list.trim().is_empty() {
        return Err(HostListError::Empty);
    }
    let hosts: Vec<String> = list.split(',').map(|host| host.trim().to_owned()).collect();
    let count = hosts.len();
    if let Some(position) = hosts.iter().position(String::is_empty) {
        return Err(HostListError::EmptyItem {
            list: list.to_owned(),
            position: position + 1,
            count,
        });
    }
    if count > MAXIMUM_HOSTS {
        return Err(HostListError::TooMany { list: list.to_owned(), count });
    }
    Ok(hosts)
}

/// `host:port` as dialled, with an IPv6 literal in brackets.
pub fn host_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A checked host list as a configuration file may give it: one host, hosts separated by
/// commas, or a list of hosts (`hostname: [m1, m2, m3]` in YAML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList(Vec<String>);

impl HostList {
    pub fn hosts(&self) -> &[String] {
        &self.0
    }

    /// The hosts separated by commas, as [`crate::ClientConfig::host`] takes them.
    pub fn joined(&self) -> String {
        self.0.join(",")
    }
}

impl<'de> Deserialize<'de> for HostList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HostListVisitor)
    }
}

struct HostListVisitor;

impl<'de> Visitor<'de> for HostListVisitor {
    type Value = HostList;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a host, hosts separated by commas, or a list of hosts")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HostList, E> {
        split_hosts(text).map(HostList).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<HostList, A::Error> {
        let mut hosts = Vec::new();
        while let Some(host) = items.next_element::<String>()? {
            hosts.push(host);
        }
        self.visit_str(&hosts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_is_a_list_of_one() {
        assert_eq!(split_hosts("control.example.com").unwrap(), ["control.example.com"]);
    }

    #[test]
    fn hosts_are_split_on_commas_and_trimmed() {
        assert_eq!(
            split_hosts(" 10.0.0.1, 10.0.0.2 ,master-3").unwrap(),
            ["10.0.0.1", "10.0.0.2", "master-3"]
        );
    }

    #[test]
    fn ipv6_literals_may_be_bare_or_bracketed() {
        let hosts = split_hosts("::1,[fe80::2],10.0.0.3").unwrap();
        assert_eq!(hosts, ["::1", "[fe80::2]", "10.0.0.3"]);
        let addresses: Vec<String> = hosts.iter().map(|h| host_address(h, 4523)).collect();
        assert_eq!(addresses, ["[::1]:4523", "[fe80::2]:4523", "10.0.0.3:4523"]);
    }

    #[test]
    fn an_empty_list_or_item_is_refused_with_its_place() {
        assert_eq!(split_hosts(" "), Err(HostListError::Empty));
        let error = split_hosts("a,,b").unwrap_err();
        assert_eq!(error, HostListError::EmptyItem { list: "a,,b".into(), position: 2, count: 3 });
        assert_eq!(error.to_string(), "control service hosts 'a,,b': host 2 of 3 is empty");
        assert!(matches!(split_hosts("a,"), Err(HostListError::EmptyItem { position: 2, .. })));
    }

    #[test]
    fn at_most_sixteen_hosts() {
        let sixteen = vec!["h"; MAXIMUM_HOSTS].join(",");
        assert_eq!(split_hosts(&sixteen).unwrap().len(), MAXIMUM_HOSTS);
        let error = split_hosts(&format!("{sixteen},h")).unwrap_err();
        assert!(error.to_string().contains("17 hosts, more than 16"), "{error}");
    }

    #[test]
    fn a_configuration_file_may_give_one_host_several_or_a_list() {
        let read = |json: &str| serde_json::from_str::<HostList>(json).map(|l| l.joined());
        assert_eq!(read(r#""control""#).unwrap(), "control");
        assert_eq!(read(r#""m1, m2""#).unwrap(), "m1,m2");
        assert_eq!(read(r#"["m1", " m2 ", "::1"]"#).unwrap(), "m1,m2,::1");
        assert!(read(r#"["m1", ""]"#).unwrap_err().to_string().contains("host 2 of 2 is empty"));
        assert!(read("[]").unwrap_err().to_string().contains("no control service host"));
        assert!(read("4524").unwrap_err().to_string().contains("a list of hosts"));
    }
}
