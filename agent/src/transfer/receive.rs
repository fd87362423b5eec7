//! `btrfs receive`, fed from any reader, counted and hashed on the way; a copy that is not
//! complete and verified is deleted before the error is returned.

use std::io::{ErrorKind, Read, Write};
use std::process::Stdio;

use flocker_api::DatasetId;
use flocker_host::PathError;
use uuid::Uuid;

use super::child::Child;
use super::plan::Generation;
use super::snapshots::{Snapshot, delete_subvolume, discard, lock, show, sync, text};
use super::stream::{Digest, Framing, Tally};
use super::{Pool, TransferError};

/// A complete, verified snapshot received into `<pool>/snapshots/<dataset_id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub snapshot: Snapshot,
    pub bytes: u64,
    pub digest: Digest,
    /// For a difference, the origin of the parent it was applied to.
    pub parent: Option<Uuid>,
}

const BUFFER: usize = 256 << 10;

/// Why feeding `btrfs receive` stopped before the stream's end.
enum Stop {
    /// Our side: the reader failed or ended early, or the stream is not one.
    Ours(TransferError),
    /// `btrfs receive` stopped reading: its status says why.
    Theirs(std::io::Error),
}

/// Receives one snapshot of `dataset` from `reader`, which is read up to the stream's end and
/// not beyond. The stream's first command names the snapshot, and is checked before `btrfs
/// receive` starts: a name that is not a generation, or one received already, is refused. The
/// copy is kept only if `btrfs receive` succeeded, the stream's SHA-256 is `expected` (when
/// given), and btrfs marked it complete (read-only, `received_uuid` the sender's `uuid`); then it
/// is synced to disk. A difference needs its parent here (see [`super::plan::choose_send`]).
pub fn receive(
    pool: &Pool,
    dataset: &DatasetId,
    reader: impl Read,
    expected: Option<Digest>,
) -> Result<Received, TransferError> {
    receive_then_check(pool, dataset, reader, |_| Ok(expected))
}

/// [`receive`] of a stream followed by its SHA-256 (32 bytes), as another node sends it: the
/// sender hashes while it sends, so the digest can only come last.
pub fn receive_trailed(
    pool: &Pool,
    dataset: &DatasetId,
    reader: impl Read,
) -> Result<Received, TransferError> {
    receive_then_check(pool, dataset, reader, |reader| {
        let mut digest = [0u8; 32];
        reader.read_exact(&mut digest).map_err(|source| match source.kind() {
            ErrorKind::UnexpectedEof => TransferError::Truncated { dataset: *dataset, bytes: 0 },
            _ => TransferError::Read { dataset: *dataset, bytes: 0, source },
        })?;
        Ok(Some(Digest(digest)))
    })
}

/// [`receive`], learning the expected digest from `expected` once the stream has ended.
fn receive_then_check<R: Read>(
    pool: &Pool,
    dataset: &DatasetId,
    mut reader: R,
    expected: impl FnOnce(&mut R) -> Result<Option<Digest>, TransferError>,
) -> Result<Received, TransferError> {
    let directory = pool.snapshots_of(dataset);
    let _lock = lock(&directory)?;
    let mut framing = Framing::default();
    let mut tally = Tally::default();
    let mut buffer = vec![0u8; BUFFER];
    let mut head = Vec::new();
    let subvolume = loop {
        if let Some(subvolume) = framing.subvolume() {
            break subvolume.clone();
        }
        let read = read_piece(&mut reader, &mut buffer, &mut framing, &mut tally, dataset)?;
        head.extend_from_slice(&buffer[..read]);
    };
    let generation: Generation = subvolume
        .name
        .parse()
        .map_err(|_| TransferError::BadName { dataset: *dataset, name: subvolume.name.clone() })?;
    let path = directory.join(&subvolume.name);
    if path.symlink_metadata().is_ok() {
        // Read-only: a snapshot taken here or received whole, never touched. Writable: what a
        // crash left of a receive (we hold the lock).
        if show(&path)?.readonly {
            return Err(TransferError::AlreadyReceived { path });
        }
        delete_subvolume(&path)?;
    }

    // -C: confined to the dataset's directory (a chroot), so that no path or link in a stream
    // from another node reaches anything else; a difference's parent is in there too.
    let arguments = ["-q", "receive", "-e", "--max-errors", "1", "-C", text(&directory)?];
    let mut child = Child::spawn(&arguments, Stdio::piped(), Stdio::null())?;
    let mut stdin = child.stdin()?;
    let fed = (|| {
        stdin.write_all(&head).map_err(Stop::Theirs)?;
        // -e: btrfs receive ends at the END command, and so do we; what follows is the caller's.
        while !framing.ended() {
            let read = read_piece(&mut reader, &mut buffer, &mut framing, &mut tally, dataset)
                .map_err(Stop::Ours)?;
            stdin.write_all(&buffer[..read]).map_err(Stop::Theirs)?;
        }
        Ok(())
    })();
    drop(stdin);
    let failure = match fed {
        Err(Stop::Ours(error)) => {
            child.kill();
            Some(error)
        }
        Err(Stop::Theirs(pipe)) => Some(match child.finish() {
            Err(source) => TransferError::Receive { directory: directory.clone(), source },
            Ok(()) => PathError::new("feed btrfs receive into", &directory, pipe).into(),
        }),
        Ok(()) => child
            .finish()
            .err()
            .map(|source| TransferError::Receive { directory: directory.clone(), source }),
    };
    if let Some(error) = failure {
        discard(&path);
        return Err(error);
    }

    let (bytes, digest) = tally.finish();
    let expected = match expected(&mut reader) {
        Ok(expected) => expected,
        Err(error) => {
            discard(&path);
            return Err(error);
        }
    };
    if let Some(expected) = expected.filter(|expected| *expected != digest) {
        discard(&path);
        return Err(TransferError::DigestMismatch { dataset: *dataset, expected, actual: digest });
    }
    let received = match show(&path) {
        Ok(received) => received,
        Err(error) => {
            discard(&path);
            return Err(error);
        }
    };
    let problem = if !received.is_complete_receive() {
        Some("btrfs receive did not mark it read-only and received".to_owned())
    } else if received.received_uuid != Some(subvolume.uuid) {
        Some(format!("its received_uuid is not the stream's {}", subvolume.uuid))
    } else {
        None
    };
    if let Some(problem) = problem {
        discard(&path);
        return Err(TransferError::Incomplete { path, problem });
    }
    // Until it is on disk it is not received: a crash would leave a copy nobody verified.
    if let Err(error) = sync(pool) {
        discard(&path);
        return Err(error);
    }
    let snapshot = Snapshot { path, dataset_id: *dataset, generation, subvolume: received };
    Ok(Received { snapshot, bytes, digest, parent: subvolume.parent })
}

/// Reads the next piece of the stream into `buffer` (never past its end), follows and hashes it;
/// its length.
fn read_piece(
    reader: &mut impl Read,
    buffer: &mut [u8],
    framing: &mut Framing,
    tally: &mut Tally,
    dataset: &DatasetId,
) -> Result<usize, TransferError> {
    let wanted = framing.wanted().min(buffer.len());
    let read = loop {
        match reader.read(&mut buffer[..wanted]) {
            Ok(0) => {
                return Err(TransferError::Truncated { dataset: *dataset, bytes: tally.bytes });
            }
            Ok(read) => break read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(TransferError::Read { dataset: *dataset, bytes: tally.bytes, source });
            }
        }
    };
    framing
        .feed(&buffer[..read])
        .map_err(|problem| TransferError::Malformed { dataset: *dataset, problem })?;
    tally.add(&buffer[..read]);
    Ok(read)
}
