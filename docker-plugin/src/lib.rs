//! `flocker-docker-plugin`: Docker's volume plugin protocol on the same cluster as the Mesos
//! isolator, and on its core: a named Docker volume is the dataset whose `name` is that name
//! (the `FLOCKER_ID` a Mesos task uses), made on first use and moved to whichever node mounts it.
//!
//! - [`protocol`]: the calls and `Create`'s options (pure);
//! - [`record`]: this node's mounts, crash-safely on disk;
//! - [`driver`]: what each call does;
//! - [`server`]: HTTP on the Unix socket.

pub mod driver;
pub mod protocol;
pub mod record;
pub mod server;
