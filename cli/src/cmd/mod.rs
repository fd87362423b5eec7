//! The subcommands of `flockerctl`, one module each, and what they share: the connection to the
//! control service and the wait for a change to become real.

pub mod ca;
pub mod connection;
pub mod create;
pub mod demo;
pub mod destroy;
pub mod leases;
pub mod list;
pub mod list_nodes;
pub mod lookup;
pub mod move_dataset;
pub mod version;
pub mod wait;
