//! The send stream as bytes, without I/O: its SHA-256 and its framing.
//!
//! A stream is a header (`btrfs-stream\0`, a little-endian u32 version) and commands, each a
//! 10-byte header (u32 payload length, u16 command, u32 crc32c) and its payload; it ends with an
//! `END` command. Following the framing lets the receiver stop reading at `END`, so a stream can
//! travel inside a longer conversation (a digest may follow it), and lets it read the first
//! command, which names the subvolume to create, before `btrfs receive` sees it.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The SHA-256 of a whole send stream.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a SHA-256 digest (64 hexadecimal digits)")]
pub struct NotADigest(pub String);

impl FromStr for Digest {
    type Err = NotADigest;

    fn from_str(text: &str) -> Result<Self, NotADigest> {
        let bad = || NotADigest(text.to_owned());
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Digest(bytes))
    }
}

/// Counts and hashes the bytes of a stream as they pass.
#[derive(Default)]
pub struct Tally {
    hasher: Sha256,
    pub bytes: u64,
}

impl Tally {
    pub fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
    }

    pub fn finish(self) -> (u64, Digest) {
        (self.bytes, Digest(self.hasher.finalize().into()))
    }
}

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
const STREAM_HEADER: usize = 17;
const COMMAND_HEADER: usize = 10;
/// `BTRFS_SEND_C_SUBVOL`, `BTRFS_SEND_C_SNAPSHOT`, `BTRFS_SEND_C_END` (`fs/btrfs/send.h`).
const SUBVOL: u16 = 1;
const SNAPSHOT: u16 = 2;
const END: u16 = 21;
/// `BTRFS_SEND_A_UUID`, `BTRFS_SEND_A_PATH`, `BTRFS_SEND_A_CLONE_UUID`.
const ATTRIBUTE_UUID: u16 = 1;
const ATTRIBUTE_PATH: u16 = 15;
const ATTRIBUTE_CLONE_UUID: u16 = 20;
/// The largest command payload: the kernel's send buffer (`BTRFS_SEND_BUF_SIZE_V2`, 64 KiB plus
/// one page) with room to spare; a longer length is a damaged header, not a command.
const LARGEST_PAYLOAD: u32 = 1 << 20;

/// What the first command of a stream says: the subvolume it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvolume {
    /// Its name, relative to where it is received.
    pub name: String,
    /// The sender's `uuid` of it: the copy's `received_uuid` will be this.
    pub uuid: Uuid,
    /// For an incremental stream, the origin of the parent the receiver must hold.
    pub parent: Option<Uuid>,
}

/// A stream that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("it does not start with the btrfs stream header")]
    NotAStream,
    #[error("command {command} claims {length} bytes, more than any command has")]
    TooLong { command: u16, length: u32 },
    #[error("its first command ({command}) creates no subvolume")]
    NoSubvolume { command: u16 },
    #[error("its first command lacks the subvolume's {0}")]
    Missing(&'static str),
}

/// Where the reader is in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    StreamHeader,
    CommandHeader,
    Payload { command: u16, left: u32 },
    Ended,
}

/// Follows the framing of a stream fed to it piece by piece, each piece no longer than
/// [`Framing::wanted`], so that nothing past `END` is ever read.
#[derive(Debug)]
pub struct Framing {
    part: Part,
    /// The bytes of the current header, or of the first command until it is complete.
    pending: Vec<u8>,
    commands: u64,
    first: Option<Subvolume>,
}

impl Default for Framing {
    fn default() -> Self {
        Self { part: Part::StreamHeader, pending: Vec::new(), commands: 0, first: None }
    }
}

impl Framing {
    /// How many bytes may be read next; 0 once the stream has ended.
    pub fn wanted(&self) -> usize {
        match self.part {
            Part::StreamHeader => STREAM_HEADER - self.pending.len(),
            Part::CommandHeader => COMMAND_HEADER - self.pending.len(),
            Part::Payload { left, .. } => left as usize,
            Part::Ended => 0,
        }
    }

    /// Whether the `END` command has been read.
    pub fn ended(&self) -> bool {
        self.part == Part::Ended
    }

    /// Whether the bytes so far stop exactly between two commands (a clean cut still is no end).
    pub fn between_commands(&self) -> bool {
        self.part == Part::CommandHeader && self.pending.is_empty()
    }

    /// The subvolume the first command creates, once it has been read whole.
    pub fn subvolume(&self) -> Option<&Subvolume> {
        self.first.as_ref()
    }

    /// Takes `bytes` (at most [`Framing::wanted`] of them).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Malformed> {
        debug_assert!(bytes.len() <= self.wanted());
        match self.part {
            Part::StreamHeader => {
                self.pending.extend_from_slice(bytes);
                if self.pending.len() == STREAM_HEADER {
                    if !self.pending.starts_with(MAGIC) {
                        return Err(Malformed::NotAStream);
                    }
                    self.pending.clear();
                    self.part = Part::CommandHeader;
                }
            }
            Part::CommandHeader => {
                self.pending.extend_from_slice(bytes);
                if self.pending.len() == COMMAND_HEADER {
                    let length = u32::from_le_bytes(array(&self.pending[0..4]));
                    let command = u16::from_le_bytes(array(&self.pending[4..6]));
                    if length > LARGEST_PAYLOAD {
                        return Err(Malformed::TooLong { command, length });
                    }
                    if self.commands > 0 {
                        self.pending.clear();
                    }
                    self.part = Part::Payload { command, left: length };
                    self.complete_empty_payload()?;
                }
            }
            Part::Payload { command, left } => {
                if self.commands == 0 {
                    self.pending.extend_from_slice(bytes);
                }
                self.part = Part::Payload { command, left: left - bytes.len() as u32 };
                self.complete_empty_payload()?;
            }
            Part::Ended => {}
        }
        Ok(())
    }

    fn complete_empty_payload(&mut self) -> Result<(), Malformed> {
        let Part::Payload { command, left: 0 } = self.part else { return Ok(()) };
        if self.commands == 0 {
            self.first = Some(first_command(command, &self.pending[COMMAND_HEADER..])?);
            self.pending.clear();
        }
        self.commands += 1;
        self.part = if command == END { Part::Ended } else { Part::CommandHeader };
        Ok(())
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(bytes);
    array
}

/// The subvolume a `SUBVOL` or `SNAPSHOT` command creates, from its attributes (each a u16
/// type, a u16 length and the value; version 2 changes only the data attribute, not found here).
fn first_command(command: u16, mut attributes: &[u8]) -> Result<Subvolume, Malformed> {
    if command != SUBVOL && command != SNAPSHOT {
        return Err(Malformed::NoSubvolume { command });
    }
    let (mut name, mut uuid, mut parent) = (None, None, None);
    while attributes.len() >= 4 {
        let kind = u16::from_le_bytes(array(&attributes[0..2]));
        let length = u16::from_le_bytes(array(&attributes[2..4])) as usize;
        let Some(value) = attributes.get(4..4 + length) else { break };
        match kind {
            ATTRIBUTE_PATH => name = Some(String::from_utf8_lossy(value).into_owned()),
            ATTRIBUTE_UUID => uuid = Uuid::from_slice(value).ok(),
            ATTRIBUTE_CLONE_UUID => parent = Uuid::from_slice(value).ok(),
            _ => {}
        }
        attributes = &attributes[4 + length..];
    }
    Ok(Subvolume {
        name: name.ok_or(Malformed::Missing("name"))?,
        uuid: uuid.ok_or(Malformed::Missing("uuid"))?,
        parent: if command == SNAPSHOT {
            Some(parent.ok_or(Malformed::Missing("parent"))?)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
        bytes.extend(kind.to_le_bytes());
        bytes.extend([0u8; 4]); // the crc, which btrfs receive checks, not we
        bytes.extend(payload);
        bytes
    }

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut bytes = kind.to_le_bytes().to_vec();
        bytes.extend((value.len() as u16).to_le_bytes());
        bytes.extend(value);
        bytes
    }

    fn stream(first: u16, attributes: &[Vec<u8>], then: &[u16]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(command(first, &attributes.concat()));
        for kind in then {
            bytes.extend(command(*kind, &[7; 100]));
        }
        bytes.extend(command(END, &[]));
        bytes
    }

    /// Feeds `bytes` as the receiver reads them; the number of bytes taken.
    fn feed_all(framing: &mut Framing, bytes: &[u8], piece: usize) -> Result<usize, Malformed> {
        let mut taken = 0;
        while taken < bytes.len() && !framing.ended() {
            let n = framing.wanted().min(piece).min(bytes.len() - taken);
            framing.feed(&bytes[taken..taken + n])?;
            taken += n;
        }
        Ok(taken)
    }

    const SENDER: Uuid = Uuid::from_u128(0xa1);
    const PARENT: Uuid = Uuid::from_u128(0xa0);

    fn snapshot_stream() -> Vec<u8> {
        let attributes = [
            attribute(ATTRIBUTE_PATH, b"0000000002"),
            attribute(ATTRIBUTE_UUID, SENDER.as_bytes()),
            attribute(ATTRIBUTE_CLONE_UUID, PARENT.as_bytes()),
        ];
        stream(SNAPSHOT, &attributes, &[15, 15, 20])
    }

    #[test]
    fn the_reader_stops_at_the_end_command_and_knows_the_subvolume() {
        let mut bytes = snapshot_stream();
        let length = bytes.len();
        bytes.extend(b"a digest may follow");
        for piece in [1, 3, 4096] {
            let mut framing = Framing::default();
            assert_eq!(feed_all(&mut framing, &bytes, piece), Ok(length));
            assert!(framing.ended());
            let expected =
                Subvolume { name: "0000000002".into(), uuid: SENDER, parent: Some(PARENT) };
            assert_eq!(framing.subvolume(), Some(&expected));
        }
    }

    #[test]
    fn a_stream_cut_between_commands_has_not_ended() {
        let bytes = snapshot_stream();
        let mut framing = Framing::default();
        feed_all(&mut framing, &bytes[..bytes.len() - COMMAND_HEADER], 4096).unwrap();
        assert!(framing.between_commands() && !framing.ended());
    }

    #[test]
    fn a_full_stream_has_no_parent() {
        let attributes = [
            attribute(ATTRIBUTE_PATH, b"0000000001"),
            attribute(ATTRIBUTE_UUID, SENDER.as_bytes()),
        ];
        let mut framing = Framing::default();
        feed_all(&mut framing, &stream(SUBVOL, &attributes, &[]), 4096).unwrap();
        assert_eq!(framing.subvolume().and_then(|s| s.parent), None);
    }

    #[test]
    fn what_is_not_a_stream_is_refused() {
        let mut framing = Framing::default();
        assert_eq!(feed_all(&mut framing, &[0u8; 64], 4096), Err(Malformed::NotAStream));
        let mut framing = Framing::default();
        let no_subvolume = stream(15, &[attribute(ATTRIBUTE_PATH, b"x")], &[]);
        assert_eq!(
            feed_all(&mut framing, &no_subvolume, 4096),
            Err(Malformed::NoSubvolume { command: 15 })
        );
        let mut huge = snapshot_stream();
        huge[STREAM_HEADER..STREAM_HEADER + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut framing = Framing::default();
        assert!(matches!(feed_all(&mut framing, &huge, 4096), Err(Malformed::TooLong { .. })));
    }

    #[test]
    fn a_digest_prints_as_hex_and_parses_back() {
        let mut tally = Tally::default();
        tally.add(b"abc");
        let (bytes, digest) = tally.finish();
        assert_eq!(bytes, 3);
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(digest.to_string(), hex);
        assert_eq!(hex.parse(), Ok(digest));
        assert!("ba78".parse::<Digest>().is_err());
    }
}
