//! The real-Mesos suite's parts: the runtime `scripts/mesos-runtime` builds, a Mesos node
//! (`mesos-local`: a real master and agent loading our module), and a test framework on the
//! v1 scheduler HTTP API.

pub mod http;
pub mod node;
pub mod runtime;
pub mod scheduler;
pub mod suite;

pub use node::{Launcher, MesosNode};
pub use runtime::Runtime;
pub use scheduler::{Framework, Launched, Status, Task};
