//! Who owns a volume's root. An agent makes a new volume's root owned by root, mode 0755, so
//! no other local user can write to it; the first task to use it claims it: the root becomes
//! the task's user's, as Mesos' `--docker_volume_chown` does for Docker volumes. The owner lives
//! in the volume's file system, so it moves with the volume.

use std::path::Path;

use flocker_host::beneath::{Directory, WalkError};
use nix::unistd::{Gid, Uid, User};

/// The user a task runs as, on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOwner {
    pub uid: Uid,
    pub gid: Gid,
}

/// The task's user (`ContainerConfig.user`), or, when the agent names none, the agent's own.
/// `Ok(None)`: the user is not known on this host (it may exist only in the task's image).
pub fn task_owner(user: Option<&str>) -> Result<Option<TaskOwner>, String> {
    let Some(name) = user else {
        return Ok(Some(TaskOwner { uid: Uid::effective(), gid: Gid::effective() }));
    };
    match User::from_name(name) {
        Ok(Some(user)) => Ok(Some(TaskOwner { uid: user.uid, gid: user.gid })),
        Ok(None) => Ok(None),
        Err(errno) => Err(format!("cannot look up user '{name}': {errno}")),
    }
}

/// Whether a volume root should become the task's: nobody but root has it yet, nothing has
/// been written to it, and the task is not root. Pure.
pub fn should_claim(root_owner: Uid, empty: bool, task: Uid) -> bool {
    root_owner.is_root() && empty && !task.is_root()
}

/// Gives a fresh volume's root to the task's user; whether it did.
pub fn claim_if_fresh(volume: &Path, owner: TaskOwner) -> Result<bool, WalkError> {
    if owner.uid.is_root() {
        return Ok(false); // nothing to change, and no need to look
    }
    let root = Directory::open_trusted(volume)?;
    let current = Uid::from_raw(root.stat()?.st_uid);
    if !should_claim(current, root.is_empty()?, owner.uid) {
        return Ok(false);
    }
    root.set_owner(owner.uid, owner.gid)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_root_owned_volume_is_claimed_and_only_for_another_user() {
        let (root, user) = (Uid::from_raw(0), Uid::from_raw(1000));
        assert!(should_claim(root, true, user));
        assert!(!should_claim(root, false, user), "someone wrote to it: keep its owner");
        assert!(!should_claim(Uid::from_raw(1001), true, user), "another user has it");
        assert!(!should_claim(root, true, root), "a root task needs nothing");
    }

    #[test]
    fn users_are_found_on_this_host() {
        let root = task_owner(Some("root")).unwrap().unwrap();
        assert!(root.uid.is_root());
        assert_eq!(task_owner(Some("no-such-user-flocker")).unwrap(), None);
        assert_eq!(task_owner(None).unwrap().unwrap().uid, Uid::effective());
    }
}
