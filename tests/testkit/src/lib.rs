//! Fixtures for tests that run the real thing: a cluster's certificates made by our own CA in a
//! temporary directory, and `flocker-control` started as a process on ephemeral ports.

mod certificates;
mod control;
mod handshake;
pub mod openssl;
mod running;

pub use certificates::{ClusterCertificates, NodeCertificate};
pub use control::{ControlProcess, control_binary};
pub use handshake::{openssl_client_request, tls_handshake};
pub use running::RunningControl;
