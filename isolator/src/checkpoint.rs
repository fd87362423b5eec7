//! What the isolator has done for each container, on persistent disk, written before every
//! side effect so that after a crash — of the agent or of the machine — recover knows what to
//! keep and what to undo.
//!
//! ```text
//! <state_dir>/containers/<root>+<child>.json    one container's checkpoint (crash-safe writes)
//! <state_dir>/quarantine/                        checkpoints that could not be read, set aside
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use flocker_host::durable::{sync_directory, write_atomically};
use serde::{Deserialize, Serialize};

use crate::container::ContainerId;
use crate::request::{FlockerId, TaskPath};

const FORMAT_VERSION: u32 = 1;

/// One container's volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub container_id: ContainerId,
    pub volumes: Vec<CheckpointedVolume>,
}

/// A volume a container asked for. Written before anything is done for it, and enough to undo
/// all of it: the lease is found again by the FLOCKER_ID (and released only if this node holds
/// it), the link by its path (and removed only if it is still ours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointedVolume {
    pub flocker_id: FlockerId,
    pub path: TaskPath,
    /// The symbolic link the volume gets on the host, if it gets one.
    #[serde(default)]
    pub link: Option<PathBuf>,
}

impl Checkpoint {
    pub fn new(container_id: ContainerId, volumes: Vec<CheckpointedVolume>) -> Self {
        Self { version: FORMAT_VERSION, container_id, volumes }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub struct CheckpointError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The checkpoint directory.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    containers: PathBuf,
    quarantine: PathBuf,
}

impl Checkpoints {
    /// Opens (creating) the directories under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, CheckpointError> {
        let this = Self {
            containers: state_dir.join("containers"),
            quarantine: state_dir.join("quarantine"),
        };
        for directory in [&this.containers, &this.quarantine] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(directory)
                .map_err(|source| error("create", directory, source))?;
        }
        Ok(this)
    }

    fn path_of(&self, id: &ContainerId) -> PathBuf {
        self.containers.join(format!("{}.json", id.file_name()))
    }

    /// Replaces a container's checkpoint, durably.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let path = self.path_of(&checkpoint.container_id);
        let bytes = serde_json::to_vec_pretty(checkpoint)
            .map_err(|e| error("encode", &path, io::Error::other(e)))?;
        write_atomically(&path, &bytes, 0o600).map_err(|source| error("write", &path, source))
    }

    /// A container's checkpoint, if it has one.
    pub fn read(&self, id: &ContainerId) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = self.path_of(id);
        match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(error("read", &path, source)),
        }
    }

    /// Forgets a container, durably.
    pub fn remove(&self, id: &ContainerId) -> Result<(), CheckpointError> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_directory(&self.containers)
                .map_err(|source| error("sync", &self.containers, source)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(error("remove", &path, source)),
        }
    }

    /// Every checkpoint; the ones that cannot be read are moved to the quarantine and named
    /// with the problem, so one bad file never stops the others.
    pub fn all(&self) -> Result<(Vec<Checkpoint>, Vec<String>), CheckpointError> {
        let entries = fs::read_dir(&self.containers)
            .map_err(|source| error("read", &self.containers, source))?;
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue; // a temporary file of an interrupted write
            }
            match fs::read(&path)
                .map_err(|source| error("read", &path, source))
                .and_then(|b| parse(&path, &b))
            {
                Ok(checkpoint) => good.push(checkpoint),
                Err(problem) => bad.push(self.set_aside(&path, &problem)),
            }
        }
        good.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        Ok((good, bad))
    }

    /// The other containers whose checkpoints name `flocker_id`: while there are any, the
    /// volume is in use on this node.
    pub fn users(
        &self,
        flocker_id: &FlockerId,
        except: &ContainerId,
    ) -> Result<Vec<ContainerId>, CheckpointError> {
        let (all, _) = self.all()?;
        Ok(all
            .into_iter()
            .filter(|c| {
                c.container_id != *except && c.volumes.iter().any(|v| v.flocker_id == *flocker_id)
            })
            .map(|c| c.container_id)
            .collect())
    }

    fn set_aside(&self, path: &Path, problem: &CheckpointError) -> String {
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let aside = self.quarantine.join(name);
        let moved = fs::rename(path, &aside).is_ok();
        let whereabouts = if moved {
            format!("moved to {}", aside.display())
        } else {
            "left in place".to_owned()
        };
        format!("{problem}: {}; {whereabouts}", problem.source)
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let checkpoint: Checkpoint = serde_json::from_slice(bytes)
        .map_err(|e| error("decode", path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
    if checkpoint.version != FORMAT_VERSION {
        let problem = format!("format version {} is not {FORMAT_VERSION}", checkpoint.version);
        return Err(error("read", path, io::Error::new(io::ErrorKind::InvalidData, problem)));
    }
    Ok(checkpoint)
}

fn error(action: &'static str, path: &Path, source: io::Error) -> CheckpointError {
    CheckpointError { action, path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> ContainerId {
        ContainerId { value: value.to_owned(), parent: None }
    }

    fn volume(name: &str) -> Vec<CheckpointedVolume> {
        let (flocker_id, path) = (name.parse().unwrap(), "/tmp/data".parse().unwrap());
        vec![CheckpointedVolume { flocker_id, path, link: Some("/tmp/data".into()) }]
    }

    #[test]
    fn a_checkpoint_reads_back_and_goes() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let mut checkpoint = Checkpoint::new(id("c1"), volume("webapp-data"));
        checkpoints.write(&checkpoint).unwrap();
        checkpoint.volumes[0].link = None;
        checkpoints.write(&checkpoint).unwrap();
        assert_eq!(checkpoints.read(&id("c1")).unwrap(), Some(checkpoint));
        checkpoints.remove(&id("c1")).unwrap();
        checkpoints.remove(&id("c1")).unwrap();
        assert_eq!(checkpoints.read(&id("c1")).unwrap(), None);
    }

    #[test]
    fn users_of_a_volume_are_the_other_containers_that_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.write(&Checkpoint::new(id("a"), volume("shared"))).unwrap();
        checkpoints.write(&Checkpoint::new(id("b"), volume("shared"))).unwrap();
        checkpoints.write(&Checkpoint::new(id("c"), volume("other"))).unwrap();
        let shared: FlockerId = "shared".parse().unwrap();
        assert_eq!(checkpoints.users(&shared, &id("a")).unwrap(), [id("b")]);
    }

    #[test]
    fn a_damaged_checkpoint_is_set_aside_and_the_others_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.write(&Checkpoint::new(id("good"), volume("v"))).unwrap();
        fs::write(dir.path().join("containers/bad.json"), b"{not json").unwrap();
        let (good, bad) = checkpoints.all().unwrap();
        assert_eq!(good.len(), 1);
        assert!(bad[0].contains("bad.json"), "{bad:?}");
        assert!(dir.path().join("quarantine/bad.json").exists());
    }
}
