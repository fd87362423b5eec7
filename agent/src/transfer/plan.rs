//! What to send, decided without I/O: names of snapshots, the choice between a full send, an
//! incremental one and none, and which snapshots a finished push lets go.
//!
//! **Identity.** A snapshot and its received copy on another node are the same content; btrfs
//! says so by the copy's `received_uuid`, which is the sender's `uuid`. So each snapshot is known
//! by its *origin*: its `received_uuid` if it was received, else its own `uuid`. Two nodes share a
//! snapshot when they hold the same origin; that is also the UUID `btrfs send -p` writes for the
//! parent (the kernel uses the parent's `received_uuid` when it has one), and the one `btrfs
//! receive` looks up, so a common origin is exactly what an incremental send needs.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// How many digits a generation has in a name, so that names sort as numbers.
const GENERATION_DIGITS: usize = 10;

/// The number of one of a dataset's snapshots on its owner: 1, 2, 3… in the order taken. Named
/// with [`GENERATION_DIGITS`] digits (`0000000003`); a received snapshot keeps its sender's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u32);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.0, width = GENERATION_DIGITS)
    }
}

/// A name that is not a generation: exactly ten ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a snapshot name (ten digits)")]
pub struct NotAGeneration(pub String);

impl FromStr for Generation {
    type Err = NotAGeneration;

    fn from_str(name: &str) -> Result<Self, NotAGeneration> {
        let digits = name.len() == GENERATION_DIGITS && name.bytes().all(|b| b.is_ascii_digit());
        match name.parse() {
            Ok(number) if digits => Ok(Generation(number)),
            _ => Err(NotAGeneration(name.to_owned())),
        }
    }
}

/// One snapshot of a dataset, as a node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub generation: Generation,
    /// `received_uuid` if received, else `uuid`: see the module's documentation.
    pub origin: Uuid,
}

/// The generation of the next snapshot a node takes of a dataset: one past every generation it
/// holds, or has sent and the receiver still holds, so that no name is used twice for two
/// contents.
pub fn next_generation(ours: &[Held], theirs: &[Held]) -> Generation {
    let highest = ours.iter().chain(theirs).map(|held| held.generation.0).max().unwrap_or(0);
    Generation(highest.saturating_add(1))
}

/// What to send to bring the receiver up to our latest snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// The receiver holds it already.
    Nothing,
    /// The receiver shares nothing with us: the whole snapshot.
    Full { snapshot: Generation },
    /// Only the difference from `parent`, which the receiver holds.
    Incremental { parent: Generation, snapshot: Generation },
}

/// The send that brings `theirs` up to our latest snapshot, from the newest snapshot we share
/// (the smallest difference); `Nothing` when we have no snapshot at all.
pub fn choose_send(ours: &[Held], theirs: &[Held]) -> Send {
    let Some(latest) = ours.iter().max_by_key(|held| held.generation) else { return Send::Nothing };
    if shared(latest, theirs) {
        return Send::Nothing;
    }
    match latest_common(ours, theirs) {
        Some(parent) => Send::Incremental { parent, snapshot: latest.generation },
        None => Send::Full { snapshot: latest.generation },
    }
}

/// The newest of our snapshots the receiver holds too.
pub fn latest_common(ours: &[Held], theirs: &[Held]) -> Option<Generation> {
    ours.iter().filter(|held| shared(held, theirs)).map(|held| held.generation).max()
}

fn shared(held: &Held, theirs: &[Held]) -> bool {
    theirs.iter().any(|other| other.origin == held.origin)
}

/// The two phases of a push (Flocker's 2-phase push): most of the data moves while the task still
/// writes, and only what changed since moves while nobody can use the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The volume is mounted and in use: a snapshot of it now, sent in full or as the difference
    /// from what the receiver has; it may be repeated to shrink the final difference.
    PreCopy,
    /// The volume is unmounted: a last snapshot, whose difference completes the copy; after it the
    /// receiver holds every byte and may promote it.
    Final,
}

/// One step of a push: take snapshot `take` of the volume, then send it as `send` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushStep {
    pub phase: Phase,
    pub take: Generation,
    pub send: Send,
}

/// The next step of a push in `phase`. Each phase takes a fresh snapshot: during the pre-copy
/// the volume has changed since the last one, and only a snapshot taken after the unmount is
/// known to hold the task's last write. What it is sent against is what the receiver confirmed.
pub fn push_step(phase: Phase, ours: &[Held], theirs: &[Held]) -> PushStep {
    let take = next_generation(ours, theirs);
    let send = match latest_common(ours, theirs) {
        Some(parent) => Send::Incremental { parent, snapshot: take },
        None => Send::Full { snapshot: take },
    };
    PushStep { phase, take, send }
}

/// Where a push stands, for [`deletable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// The receiver does not own the volume yet: more differences may be sent.
    InProgress,
    /// The receiver promoted the last snapshot and owns the volume.
    Done,
}

/// Which of our snapshots may be deleted, given what the receiver confirmed it holds. Until the
/// handoff is done we keep the newest snapshot we share (the parent of the next difference) and
/// our newest snapshot (it may be on its way); every other is superseded. Once done, none is
/// needed for this push.
pub fn deletable(ours: &[Held], theirs: &[Held], handoff: Handoff) -> Vec<Generation> {
    let mut keep = Vec::new();
    if handoff == Handoff::InProgress {
        keep.extend(latest_common(ours, theirs));
        keep.extend(ours.iter().map(|held| held.generation).max());
    }
    let mut doomed: Vec<Generation> =
        ours.iter().map(|held| held.generation).filter(|g| !keep.contains(g)).collect();
    doomed.sort();
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(generation: u32, origin: u128) -> Held {
        Held { generation: Generation(generation), origin: Uuid::from_u128(origin) }
    }

    #[test]
    fn a_generation_is_named_with_ten_digits_and_only_such_names_parse() {
        assert_eq!(Generation(42).to_string(), "0000000042");
        assert_eq!("0000000042".parse(), Ok(Generation(42)));
        for bad in ["42", "+000000042", "00000000042", "000000004a", "", "../0000042"] {
            assert!(bad.parse::<Generation>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_receiver_that_holds_nothing_gets_everything() {
        let ours = [held(1, 0xa1), held(2, 0xa2)];
        assert_eq!(choose_send(&ours, &[]), Send::Full { snapshot: Generation(2) });
    }

    #[test]
    fn a_receiver_that_holds_an_older_snapshot_gets_the_difference_from_the_newest_it_holds() {
        let ours = [held(1, 0xa1), held(2, 0xa2), held(3, 0xa3)];
        // The receiver names its copies as it likes: only the origin counts.
        let theirs = [held(7, 0xa1), held(9, 0xa2)];
        let send = choose_send(&ours, &theirs);
        assert_eq!(send, Send::Incremental { parent: Generation(2), snapshot: Generation(3) });
    }

    #[test]
    fn a_receiver_that_holds_our_latest_snapshot_gets_nothing() {
        let ours = [held(1, 0xa1), held(2, 0xa2)];
        assert_eq!(choose_send(&ours, &[held(2, 0xa2)]), Send::Nothing);
        assert_eq!(choose_send(&[], &[held(2, 0xa2)]), Send::Nothing);
    }

    #[test]
    fn a_snapshot_we_received_is_shared_with_its_sender() {
        // We got generation 1 from the other node earlier (our copy's origin is its uuid).
        let ours = [held(1, 0xb1), held(2, 0xa2)];
        let send = choose_send(&ours, &[held(1, 0xb1)]);
        assert_eq!(send, Send::Incremental { parent: Generation(1), snapshot: Generation(2) });
    }

    #[test]
    fn the_first_pre_copy_is_full_and_the_final_sends_the_difference_from_it() {
        let first = push_step(Phase::PreCopy, &[], &[]);
        let take = Generation(1);
        assert_eq!(
            first,
            PushStep { phase: Phase::PreCopy, take, send: Send::Full { snapshot: take } }
        );
        let ours = [held(1, 0xa1)];
        let last = push_step(Phase::Final, &ours, &[held(1, 0xa1)]);
        let send = Send::Incremental { parent: Generation(1), snapshot: Generation(2) };
        assert_eq!(last, PushStep { phase: Phase::Final, take: Generation(2), send });
    }

    #[test]
    fn a_pre_copy_that_did_not_arrive_is_sent_again_against_what_the_receiver_confirmed() {
        let ours = [held(1, 0xa1), held(2, 0xa2)]; // 2 was cut short on its way
        let step = push_step(Phase::Final, &ours, &[held(1, 0xa1)]);
        let send = Send::Incremental { parent: Generation(1), snapshot: Generation(3) };
        assert_eq!(step, PushStep { phase: Phase::Final, take: Generation(3), send });
    }

    #[test]
    fn a_new_generation_is_past_every_name_either_node_uses() {
        assert_eq!(next_generation(&[held(3, 0xa3)], &[held(5, 0xb5)]), Generation(6));
    }

    #[test]
    fn during_a_push_the_common_parent_and_the_newest_snapshot_are_kept() {
        let ours = [held(1, 0xa1), held(2, 0xa2), held(3, 0xa3), held(4, 0xa4)];
        let theirs = [held(1, 0xa1), held(2, 0xa2)];
        let doomed = deletable(&ours, &theirs, Handoff::InProgress);
        assert_eq!(doomed, [Generation(1), Generation(3)]);
    }

    #[test]
    fn nothing_is_deleted_before_the_receiver_confirms_anything() {
        let ours = [held(1, 0xa1)];
        assert_eq!(deletable(&ours, &[], Handoff::InProgress), []);
    }

    #[test]
    fn after_the_handoff_no_snapshot_is_needed() {
        let ours = [held(1, 0xa1), held(2, 0xa2)];
        let doomed = deletable(&ours, &[held(2, 0xa2)], Handoff::Done);
        assert_eq!(doomed, [Generation(1), Generation(2)]);
    }
}
