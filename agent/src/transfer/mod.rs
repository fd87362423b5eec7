//! Moving a btrfs volume's bytes to another node by push and handoff (Flocker's 2-phase push):
//! the owner sends a read-only snapshot while the task still writes ([`plan::Phase::PreCopy`]),
//! then, after the unmount, a last snapshot's difference ([`plan::Phase::Final`]).
//!
//! - [`plan`] decides what to send (pure);
//! - [`stream`] hashes the stream and follows its framing (pure).

pub mod plan;
pub mod stream;
