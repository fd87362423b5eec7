//! `zk://host1:2181,host2:2181,host3:2181/flocker`: the ensemble and the znode under which
//! the configuration lives.

use std::fmt;

/// The root used when the URL names none.
pub const DEFAULT_ROOT: &str = "/flocker";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// `host:port,host:port`, as ZooKeeper clients take it.
    pub servers: String,
    /// An absolute znode path, never `/` (the configuration gets a znode of its own).
    pub root: String,
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix("zk://").ok_or_else(|| {
            format!("'{text}' is not a zk:// URL (zk://host:2181,host:2181/path)")
        })?;
        let (servers, root) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, DEFAULT_ROOT),
        };
        let servers = servers
            .split(',')
            .map(|server| check_server(server.trim()))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        Ok(Self { servers, root: check_root(root)? })
    }
}

fn check_server(server: &str) -> Result<String, String> {
    if server.is_empty() {
        return Err("a zk:// URL names an empty server".into());
    }
    if server.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@') {
        return Err(format!("'{server}' is not a host:port"));
    }
    let has_port = server.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.ends_with(':') && port.parse::<u16>().is_ok()
    });
    Ok(if has_port { server.to_owned() } else { format!("{server}:2181") })
}

fn check_root(root: &str) -> Result<String, String> {
    let root = root.trim_end_matches('/');
    let fine = |part: &str| {
        !part.is_empty() && part != "." && part != ".." && !part.chars().any(char::is_control)
    };
    if root.is_empty() || !root.split('/').skip(1).all(fine) {
        return Err(format!(
            "'{root}' is not a znode path for the configuration (for example /flocker)"
        ));
    }
    Ok(root.to_owned())
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zk://{}{}", self.servers, self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_the_default_port_and_the_root_a_default() {
        let url = StoreUrl::parse("zk://m1,m2:2182, m3:2181").unwrap();
        assert_eq!(url.servers, "m1:2181,m2:2182,m3:2181");
        assert_eq!(url.root, "/flocker");
        let url = StoreUrl::parse("zk://127.0.0.1:2181/clusters/a/").unwrap();
        assert_eq!(url.root, "/clusters/a");
        assert_eq!(url.to_string(), "zk://127.0.0.1:2181/clusters/a");
    }

    #[test]
    fn bad_urls_say_why() {
        for bad in ["http://m1/x", "zk:///flocker", "zk://m1,,m2/x", "zk://m1/", "zk://m1/a/../b"] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
