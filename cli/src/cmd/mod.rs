//! The subcommands of `flockerctl`, one module each.

pub mod ca;
