//! Where the configuration lives in ZooKeeper, and how each znode is encoded (pure).
//!
//! ```text
//! <root>                          (default /flocker; the path of the zk:// URL)
//!   identity                      {"format":…,"version":1,"store_id":"<uuid>"}: written once
//!   head                          {"generation":G}: every write sets it, conditional on its
//!                                 znode version, in the transaction that adds change G
//!   changes/<G, 20 digits>        {"generation":G,"change":{…}}: one per change since the
//!                                 snapshot (and a few before it, for services catching up)
//!   snapshot                      {"generation":S,"chunks":n,"bytes":b,"crc32":c}: which
//!                                 snapshot is current; moved only once its chunks are written
//!   snapshots/<S, 20 digits>/<i, 6 digits>
//!                                 the configuration at S as JSON, cut in chunks of 512 KiB
//!   nodes/<node uuid>             ephemeral: one agent's latest hello and report (soft state)
//! ```
//!
//! ZooKeeper refuses a znode or a request over 1 MiB (`jute.maxbuffer`). A change is a few
//! hundred bytes (a report's new volumes are recorded 2,048 at a time); the whole configuration,
//! 10,000 datasets being about 3 MiB, is only ever written in chunks, one request each.

use serde::{Deserialize, Serialize};

use crate::model::{Change, Configuration};

pub const IDENTITY: &str = "/identity";
pub const HEAD: &str = "/head";
pub const CHANGES: &str = "/changes";
pub const SNAPSHOT: &str = "/snapshot";
pub const SNAPSHOTS: &str = "/snapshots";
pub const NODES: &str = "/nodes";

pub const FORMAT: &str = "flocker-rs-zookeeper-store";
pub const VERSION: u32 = 1;

/// Well under ZooKeeper's 1 MiB, with room for the request around it.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// The most a change or a node's record may take.
pub const MAX_RECORD_BYTES: usize = 900 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub format: String,
    pub version: u32,
    pub store_id: uuid::Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub generation: u64,
}

/// One change; written from a borrowed change, read back as an owned one.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeRecord<C = Change> {
    pub generation: u64,
    pub change: C,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPointer {
    pub generation: u64,
    pub chunks: u32,
    pub bytes: u64,
    pub crc32: u32,
}

pub fn change_path(generation: u64) -> String {
    format!("{CHANGES}/{generation:020}")
}

pub fn snapshot_directory(generation: u64) -> String {
    format!("{SNAPSHOTS}/{generation:020}")
}

pub fn chunk_path(generation: u64, index: u32) -> String {
    format!("{SNAPSHOTS}/{generation:020}/{index:06}")
}

pub fn node_path(node: &str) -> String {
    format!("{NODES}/{node}")
}

/// The generation a `changes/` or `snapshots/` child names, if it is one of ours.
pub fn generation_of(name: &str) -> Option<u64> {
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok())?
}

/// A configuration cut into chunks, with the pointer that describes them.
pub fn chunk(configuration: &Configuration, generation: u64) -> (SnapshotPointer, Vec<Vec<u8>>) {
    let bytes = serde_json::to_vec(configuration).unwrap_or_default();
    let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
    let pointer = SnapshotPointer {
        generation,
        chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    };
    (pointer, chunks)
}

/// Puts chunks back together, checking them against their pointer.
pub fn unchunk(pointer: &SnapshotPointer, chunks: Vec<Vec<u8>>) -> Result<Configuration, String> {
    if chunks.len() != pointer.chunks as usize {
        return Err(format!("{} chunks of {} are there", chunks.len(), pointer.chunks));
    }
    let bytes = chunks.concat();
    if bytes.len() as u64 != pointer.bytes || crc32fast::hash(&bytes) != pointer.crc32 {
        return Err("its chunks do not add up to what its pointer says (size or CRC-32)".into());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("it is not a configuration: {e}"))
}

/// JSON of a record that must fit in one znode.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(format!("a record of {} bytes is over ZooKeeper's limit", bytes.len()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flocker_api::{Dataset, DatasetId, NodeUuid};

    fn configuration_of(datasets: usize) -> Configuration {
        let mut configuration = Configuration::default();
        for _ in 0..datasets {
            let dataset = Dataset {
                dataset_id: DatasetId::random(),
                primary: NodeUuid::random(),
                maximum_size: Some(1 << 30),
                metadata: [("name".to_owned(), "a-volume-name".to_owned())].into(),
                deleted: false,
            };
            configuration.apply(&Change::CreateDataset { dataset });
        }
        configuration
    }

    #[test]
    fn ten_thousand_datasets_go_in_chunks_that_each_fit_a_znode_and_come_back_whole() {
        let configuration = configuration_of(10_000);
        let (pointer, chunks) = chunk(&configuration, 42);
        assert!(chunks.len() > 1, "{} bytes", pointer.bytes);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(unchunk(&pointer, chunks).unwrap(), configuration);
    }

    #[test]
    fn a_missing_or_altered_chunk_is_refused() {
        let (pointer, mut chunks) = chunk(&configuration_of(3_000), 1);
        let mut altered = chunks.clone();
        altered[0][10] ^= 1;
        assert!(unchunk(&pointer, altered).unwrap_err().contains("CRC"));
        chunks.pop();
        assert!(unchunk(&pointer, chunks).unwrap_err().contains("chunks of"));
    }

    #[test]
    fn generations_are_named_so_that_they_sort() {
        assert_eq!(change_path(7), "/changes/00000000000000000007");
        assert_eq!(generation_of("00000000000000000007"), Some(7));
        assert_eq!(generation_of("7"), None);
        assert_eq!(generation_of("0000000000000000000x"), None);
        assert!(change_path(9) < change_path(10));
    }

    #[test]
    fn a_record_over_the_limit_is_refused() {
        assert!(encode(&"x".repeat(MAX_RECORD_BYTES)).is_err());
        assert!(encode(&"x".repeat(1000)).is_ok());
    }
}
