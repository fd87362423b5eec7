//! The cluster's certificates, made in-process by our CA ([`crate::ca`], what `flockerctl ca`
//! runs), and laid out as each host would have them: the control service's in
//! `<work>/control`, each node's `node.crt`/`node.key` beside its `agent.yml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flocker_api::NodeUuid;

use crate::ca::{self, Written};
use crate::demo::Node;
use crate::demo::workdir::WorkDir;

/// The cluster CA's name.
pub const CLUSTER_NAME: &str = "flocker-demo";
/// The API user the isolators present, as Flocker's plugin did.
pub const PLUGIN_USER: &str = "plugin";
/// The API user the demo's own checks present, as an operator's `flockerctl` would.
pub const DEMO_USER: &str = "demo";

/// What was made, where.
#[derive(Debug, Clone)]
pub struct Certificates {
    pub cluster_certificate: PathBuf,
    pub plugin: Written,
    pub demo: Written,
    /// Node A's and node B's UUIDs: the CN of their `node.crt`.
    pub nodes: [NodeUuid; 2],
}

impl Certificates {
    pub fn node(&self, node: Node) -> NodeUuid {
        self.nodes[node.index()]
    }
}

/// Makes the CA, the control service's certificate (for 127.0.0.1), one per node, and the two
/// API users', and installs them where the services look for them.
pub fn make(work: &WorkDir) -> anyhow::Result<Certificates> {
    let ca_dir = work.ca();
    let authority = ca::initialize(&ca_dir, CLUSTER_NAME).context("cannot make the cluster CA")?;
    let control = ca::create_control_certificate(&ca_dir, &ca_dir, "127.0.0.1")
        .context("cannot make the control service's certificate")?;
    install(&control, &work.control(), "control-service")?;
    copy(&authority.certificate, &work.control().join(ca::CA_CERTIFICATE_FILE))?;
    let nodes = [make_node(work, Node::A)?, make_node(work, Node::B)?];
    let api_user = |name| {
        ca::create_api_certificate(&ca_dir, &ca_dir, name)
            .with_context(|| format!("cannot make the certificate of API user {name}"))
    };
    Ok(Certificates {
        cluster_certificate: authority.certificate.clone(),
        plugin: api_user(PLUGIN_USER)?,
        demo: api_user(DEMO_USER)?,
        nodes,
    })
}

/// A node certificate, installed as the node's `node.crt`/`node.key` with `cluster.crt`.
fn make_node(work: &WorkDir, node: Node) -> anyhow::Result<NodeUuid> {
    let ca_dir = work.ca();
    let (uuid, written) = ca::create_node_certificate(&ca_dir, &ca_dir)
        .with_context(|| format!("cannot make the certificate of {node}"))?;
    let directory = work.node(node);
    install(&written, &directory, "node")?;
    copy(&ca_dir.join(ca::CA_CERTIFICATE_FILE), &directory.join(ca::CA_CERTIFICATE_FILE))?;
    Ok(NodeUuid::new(uuid))
}

/// Moves a certificate and its key to `<directory>/<stem>.crt` and `.key`.
fn install(written: &Written, directory: &Path, stem: &str) -> anyhow::Result<()> {
    rename(&written.certificate, &directory.join(format!("{stem}.crt")))?;
    rename(&written.key, &directory.join(format!("{stem}.key")))
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}
