//! Fixtures for tests that run the real thing: a cluster's certificates made by our own CA in a
//! temporary directory, `flocker-control` started as a process on ephemeral ports, and a real
//! ZooKeeper ensemble.

mod agent;
pub mod bench_results;
pub mod btrfs;
mod certificates;
mod cleanup;
mod control;
pub mod docker;
mod flocker_one;
mod gate;
mod handshake;
mod instances;
mod local_cluster;
pub mod metrics;
pub mod netns;
pub mod openssl;
mod pair;
pub mod phantoms;
mod running;
pub mod task;
mod zookeeper;

pub use agent::{AgentProcess, BTRFS_POOL_SIZE, BackendKind, agent_binary, run_agent_to_exit};
pub use certificates::{ClusterCertificates, NodeCertificate};
pub use cleanup::{release_mounts_and_loop_devices, require_root};
pub use control::{ControlProcess, built_binary, control_binary};
pub use flocker_one::FlockerOneControlService;
pub use gate::{DirectoryGate, HeldOpen};
pub use handshake::{openssl_client_request, tls_handshake};
pub use instances::{StandIn, StandInBehaviour, closed_address, start_instances};
pub use local_cluster::{LocalCluster, SMALL, Storage};
pub use pair::RunningPair;
pub use running::RunningControl;
pub use zookeeper::ZooKeeperEnsemble;
