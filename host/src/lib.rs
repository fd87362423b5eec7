//! What the agent, the isolator and the control service need from the machine they run on,
//! written once: what is mounted where ([`mounts`]), paths walked without following links
//! ([`beneath`]), files replaced crash-safely ([`durable`]),
//! renames that never replace ([`no_replace`]), checksummed journal records ([`records`]), I/O
//! errors that name their path ([`PathError`]), and the kernel's boot id ([`boot_id`]).

pub mod beneath;
pub mod durable;
pub mod mounts;
pub mod no_replace;
mod path_error;
pub mod records;

pub use path_error::PathError;

/// Where the kernel keeps its boot id: a UUID, new on every boot (Flocker's "era").
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The kernel's boot id, as text.
pub fn boot_id() -> std::io::Result<String> {
    Ok(std::fs::read_to_string(BOOT_ID)?.trim().to_owned())
}
