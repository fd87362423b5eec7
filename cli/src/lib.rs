//! `flocker_cli`: the library behind `flockerctl`, the command-line tool of
//! the Flocker control plane.
//!
//! - [`ca`] is the cluster certificate authority, compatible with Flocker's
//!   `flocker-ca`: it creates the cluster CA (`cluster.crt`/`cluster.key`)
//!   and the control-service, node and API-user certificates it signs.
//!   Other crates' tests call it directly to make certificates.
//! - [`files`] writes new files crash-safely and never overwrites one.

pub mod ca;
pub mod files;
