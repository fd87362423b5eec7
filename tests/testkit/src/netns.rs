//! Network namespaces for tests that need nodes to be separate hosts: each gets its own
//! namespace, joined to the test's by a veth pair on a /24 of its own.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// A namespace and its link to the test's namespace; both go when it is dropped.
pub struct NetworkNamespace {
    pub name: String,
    /// The address of the test's end of the link: what the node reaches the test's services at.
    pub host_address: Ipv4Addr,
    /// The node's own address, as the services see it.
    pub node_address: Ipv4Addr,
}

impl NetworkNamespace {
    /// Makes namespace `flk<tag><index>` on 10.<subnet>.<index>.0/24.
    pub fn create(tag: &str, subnet: u8, index: u8) -> Result<Self, String> {
        let name = format!("flk{tag}{index}");
        let (host_end, node_end) = (format!("fv{tag}{index}h"), format!("fv{tag}{index}n"));
        let host_address = Ipv4Addr::new(10, subnet, index, 1);
        let node_address = Ipv4Addr::new(10, subnet, index, 2);
        let this = Self { name: name.clone(), host_address, node_address };
        for arguments in [
            vec!["netns", "add", &name],
            vec!["link", "add", &host_end, "type", "veth", "peer", "name", &node_end],
            vec!["link", "set", &node_end, "netns", &name],
            vec!["addr", "add", &format!("{host_address}/24"), "dev", &host_end],
            vec!["link", "set", &host_end, "up"],
            vec!["-n", &name, "addr", "add", &format!("{node_address}/24"), "dev", &node_end],
            vec!["-n", &name, "link", "set", &node_end, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            ip(&arguments)?;
        }
        Ok(this)
    }

    /// The namespace's file, for `nsenter --net=` and `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
}

impl Drop for NetworkNamespace {
    fn drop(&mut self) {
        // Deleting the namespace takes its end of the veth pair, and with it the other end.
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

fn ip(arguments: &[&str]) -> Result<(), String> {
    let output =
        Command::new("ip").args(arguments).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
