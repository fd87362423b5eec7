//! `flocker_cli`: the library behind `flockerctl`, the operator's tool of the Flocker control
//! plane.
//!
//! - [`ca`] is the cluster certificate authority, compatible with Flocker's `flocker-ca`: it
//!   creates the cluster CA (`cluster.crt`/`cluster.key`) and the control-service, node and
//!   API-user certificates it signs. Other crates' tests call it directly to make certificates.
//! - [`ops`] is the pure logic of the dataset commands: prefixes, sizes, the rows of a listing,
//!   how far a change has come, aligned tables.
//! - [`demo`] runs the whole system on one machine, the isolator library loaded as a Mesos agent
//!   loads it.
//! - [`files`] writes new files crash-safely and never overwrites one.

pub mod ca;
pub mod demo;
pub mod files;
pub mod ops;
