//! `btrfs send`, streamed into any writer, counted and hashed on the way.

use std::io::{ErrorKind, Read, Write};
use std::process::Stdio;

use flocker_host::PathError;

use super::TransferError;
use super::child::Child;
use super::snapshots::{Snapshot, text};
use super::stream::{Digest, Tally};

/// What a send wrote: to be compared with what the receiver read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub bytes: u64,
    pub digest: Digest,
}

/// Large enough that a pipe's worth moves per call.
const BUFFER: usize = 256 << 10;

/// Writes the stream of `snapshot` into `writer`: all of it, or its difference from `parent`,
/// which the receiver must hold (see [`super::plan::choose_send`]). `progress` hears the bytes
/// written so far after each write. If the writer fails, `btrfs send` is killed and the error
/// says how far it came; if `btrfs send` fails, its own words are the error.
pub fn send(
    snapshot: &Snapshot,
    parent: Option<&Snapshot>,
    mut writer: impl Write,
    mut progress: impl FnMut(u64),
) -> Result<Sent, TransferError> {
    // Protocol 1, the default, pinned: any receiver's btrfs reads it, and the receiving side
    // follows its framing.
    let mut arguments = vec!["-q", "send", "--proto", "1"];
    if let Some(parent) = parent {
        arguments.extend(["-p", text(&parent.path)?]);
    }
    arguments.push(text(&snapshot.path)?);
    let mut child = Child::spawn(&arguments, Stdio::null(), Stdio::piped())?;
    let mut stdout = child.stdout()?;
    let mut tally = Tally::default();
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let read = match stdout.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                child.kill();
                return Err(PathError::new("read the stream of", &snapshot.path, e).into());
            }
        };
        if let Err(source) = writer.write_all(&buffer[..read]).and_then(|()| writer.flush()) {
            child.kill();
            let snapshot = snapshot.path.clone();
            return Err(TransferError::Write { snapshot, bytes: tally.bytes, source });
        }
        tally.add(&buffer[..read]);
        progress(tally.bytes);
    }
    drop(stdout);
    child.finish()?;
    let (bytes, digest) = tally.finish();
    Ok(Sent { bytes, digest })
}
