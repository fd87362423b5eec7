//! This node's mounts of each volume, as Docker asked for them (one per container, by the mount
//! ID Docker 1.12+ sends), kept on disk crash-safely: a plugin restarted while containers run
//! still knows which of them hold a volume, and releases the lease only when the last lets go.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use flocker_api::DatasetId;
use serde::{Deserialize, Serialize};

/// A volume's mounts on one node: at most this many (Docker makes one per container).
pub const MOST_MOUNTS: usize = 4096;
/// A mount ID's longest (Docker's are 64 hexadecimal digits).
pub const LONGEST_ID: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// By volume name.
    pub volumes: BTreeMap<String, Held>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub dataset: DatasetId,
    /// The mount IDs of the containers using it here (`""` for a Docker that sends none).
    pub mounts: BTreeSet<String>,
}

/// What an unmount leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// No container here uses the volume any more: its lease goes.
    Nobody(DatasetId),
    /// Others here still use it.
    Others,
    /// This mount was not recorded (Docker unmounts after a failed mount, too).
    Unknown,
}

impl Record {
    /// Records a mount; refuses past the limits.
    pub fn mount(&mut self, name: &str, dataset: DatasetId, id: &str) -> Result<(), String> {
        if id.len() > LONGEST_ID {
            return Err(format!("mount ID longer than {LONGEST_ID} bytes"));
        }
        let held = self
            .volumes
            .entry(name.to_owned())
            .or_insert_with(|| Held { dataset, mounts: BTreeSet::new() });
        if held.dataset != dataset {
            // The name now names another dataset (the old one was deleted): start afresh.
            *held = Held { dataset, mounts: BTreeSet::new() };
        }
        if held.mounts.len() >= MOST_MOUNTS && !held.mounts.contains(id) {
            return Err(format!("volume '{name}' has {MOST_MOUNTS} mounts on this node already"));
        }
        held.mounts.insert(id.to_owned());
        Ok(())
    }

    pub fn unmount(&mut self, name: &str, id: &str) -> Left {
        let Some(held) = self.volumes.get_mut(name) else { return Left::Unknown };
        if !held.mounts.remove(id) {
            return Left::Unknown;
        }
        if held.mounts.is_empty() {
            let dataset = held.dataset;
            self.volumes.remove(name);
            return Left::Nobody(dataset);
        }
        Left::Others
    }

    /// Whether a container here uses the volume.
    pub fn in_use(&self, name: &str) -> bool {
        self.volumes.get(name).is_some_and(|held| !held.mounts.is_empty())
    }
}

/// The record's file: read at start (a file that is not a record stops the plugin, never
/// silently forgotten), written whole after every change.
pub struct RecordFile {
    path: PathBuf,
}

impl RecordFile {
    pub fn new(directory: &Path) -> Self {
        Self { path: directory.join("mounts.json") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Record, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not this plugin's record of mounts ({e}); move it away to start \
                     afresh",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Record::default()),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    pub fn save(&self, record: &Record) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        flocker_host::durable::write_atomically(&self.path, &bytes, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_goes_with_the_last_mount_on_the_node() {
        let (mut record, dataset) = (Record::default(), DatasetId::random());
        record.mount("web", dataset, "a").unwrap();
        record.mount("web", dataset, "b").unwrap();
        record.mount("web", dataset, "b").unwrap(); // Docker may repeat a call
        assert!(record.in_use("web"));
        assert_eq!(record.unmount("web", "a"), Left::Others);
        assert_eq!(record.unmount("web", "a"), Left::Unknown);
        assert_eq!(record.unmount("web", "b"), Left::Nobody(dataset));
        assert!(!record.in_use("web"));
        assert_eq!(record.unmount("db", ""), Left::Unknown);
    }

    #[test]
    fn mounts_are_limited() {
        let (mut record, dataset) = (Record::default(), DatasetId::random());
        assert!(record.mount("web", dataset, &"x".repeat(LONGEST_ID + 1)).is_err());
        for i in 0..MOST_MOUNTS {
            record.mount("web", dataset, &i.to_string()).unwrap();
        }
        assert!(record.mount("web", dataset, "one more").is_err());
    }

    #[test]
    fn the_record_survives_a_restart_and_a_broken_one_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let file = RecordFile::new(directory.path());
        assert_eq!(file.load(), Ok(Record::default()));
        let mut record = Record::default();
        record.mount("web", DatasetId::random(), "a").unwrap();
        file.save(&record).unwrap();
        assert_eq!(file.load(), Ok(record));
        std::fs::write(file.path(), b"{not json").unwrap();
        assert!(file.load().unwrap_err().contains("move it away"));
    }
}
