//! The cluster's processes: the control service, then one agent per node, and a client of the
//! REST API (as the `demo` user) to see what they did. Every process is killed if the cluster
//! is dropped without [`Cluster::stop`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use flocker_api::{Client, ClientConfig, Node as ApiNode, NodeUuid};

use crate::demo::backend::Backend;
use crate::demo::certificates::Certificates;
use crate::demo::control::{self, Control};
use crate::demo::process::Service;
use crate::demo::workdir::WorkDir;
use crate::demo::{Node, agent};

/// How long the agents may take to say hello.
const NODES_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a service may take to end after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long any one call to the control service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Cluster {
    pub client: Client,
    /// Node A's and node B's agents, once started; dropped (killed) before the control service.
    agents: Vec<Service>,
    pub control: Control,
}

impl Cluster {
    /// Starts the control service and a client for it; no agent yet.
    pub fn start_control(
        binary: &Path,
        work: &WorkDir,
        certificates: &Certificates,
    ) -> anyhow::Result<Self> {
        let control = control::start(binary, work)?;
        let config = ClientConfig {
            host: "127.0.0.1".to_owned(),
            port: control.rest.port(),
            cluster_certificate: certificates.cluster_certificate.clone(),
            certificate: certificates.demo.certificate.clone(),
            key: certificates.demo.key.clone(),
            timeout: CALL_TIMEOUT,
            connect_timeout: CALL_TIMEOUT,
            tls: Default::default(),
        };
        let client = Client::new(&config).context("cannot make a client of the REST API")?;
        Ok(Self { client, agents: Vec::new(), control })
    }

    /// Starts both agents.
    pub fn start_agents(
        &mut self,
        binary: &Path,
        work: &WorkDir,
        backend: Backend,
    ) -> anyhow::Result<()> {
        for node in Node::BOTH {
            let agent = agent::start(binary, work, backend, node, self.control.agent.port())?;
            self.agents.push(agent);
        }
        Ok(())
    }

    pub fn agent(&self, node: Node) -> Option<&Service> {
        self.agents.get(node.index())
    }

    /// Waits until `/v1/state/nodes` lists both nodes: each agent has said hello. Both nodes
    /// as the API shows them.
    pub fn wait_for_nodes(&mut self, nodes: [NodeUuid; 2]) -> anyhow::Result<[ApiNode; 2]> {
        let deadline = Instant::now() + NODES_TIMEOUT;
        loop {
            // An agent that ended will never say hello: no need to wait for it.
            for agent in &mut self.agents {
                if let Some(status) = agent.exited() {
                    anyhow::bail!("{} ended ({status})", agent.name());
                }
            }
            let listed = self.client.list_nodes().context("cannot list the nodes")?;
            let find = |uuid: NodeUuid| listed.iter().find(|n| n.uuid == uuid).cloned();
            if let (Some(a), Some(b)) = (find(nodes[0]), find(nodes[1])) {
                return Ok([a, b]);
            }
            if Instant::now() >= deadline {
                let missing: Vec<String> = Node::BOTH
                    .iter()
                    .filter(|n| find(nodes[n.index()]).is_none())
                    .map(ToString::to_string)
                    .collect();
                anyhow::bail!(
                    "{} did not appear in /v1/state/nodes within {NODES_TIMEOUT:?}",
                    missing.join(" and ")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the agents, then the control service: SIGTERM, a bounded wait, SIGKILL. A line
    /// each on how it ended.
    pub fn stop(mut self) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        for service in self.agents.iter_mut().chain([&mut self.control.service]) {
            let ended = service.stop(STOP_GRACE)?;
            notes.push(format!("{} (pid {}): {ended}", service.name(), service.pid()));
        }
        Ok(notes)
    }
}
