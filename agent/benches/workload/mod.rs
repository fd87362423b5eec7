//! What the two move benches share: the running task's writes, the check of a moved volume's
//! bytes, and how figures are summed up and named.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest as _, Sha256};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// The running task's writes: 1% of the volume, one 64 KiB block every `PACE`.
pub const BLOCK: u64 = 64 << 10;
pub const PACE: Duration = Duration::from_millis(10);
pub const TARGET: &str = "handoff downtime ≤ 10% of the naive move for 1 GiB";

/// The running task: overwrites 1% of `file` (distinct 64 KiB blocks at random offsets) with
/// random bytes, one block every [`PACE`] until `stop`, then the rest at once, and syncs.
pub fn overwrite(file: &Path, size: u64, stop: &AtomicBool) {
    let out = fs::OpenOptions::new().write(true).open(file).expect("open the data file");
    let blocks = (size / BLOCK) as usize;
    let mut rng = rand::rng();
    let chosen = rand::seq::index::sample(&mut rng, blocks, blocks.div_ceil(100));
    let mut block = vec![0u8; BLOCK as usize];
    for index in chosen {
        rng.fill_bytes(&mut block);
        out.write_all_at(&block, index as u64 * BLOCK).expect("overwrite a block");
        if !stop.load(Ordering::SeqCst) {
            thread::sleep(PACE);
        }
    }
    out.sync_all().expect("sync the data file");
}

/// The SHA-256 of every regular file under `root`, by relative path.
pub fn digests(root: &Path) -> BTreeMap<String, String> {
    let mut digests = BTreeMap::new();
    let mut directories = vec![root.to_owned()];
    while let Some(directory) = directories.pop() {
        for entry in fs::read_dir(&directory).expect("list the volume") {
            let path = entry.expect("list the volume").path();
            let metadata = fs::symlink_metadata(&path).expect("stat");
            if metadata.is_dir() {
                directories.push(path);
            } else if metadata.is_file() {
                let mut hasher = Sha256::new();
                io::copy(&mut fs::File::open(&path).expect("open"), &mut hasher).expect("read");
                let name = path.strip_prefix(root).expect("under the root");
                digests.insert(
                    name.to_string_lossy().into_owned(),
                    format!("{:x}", hasher.finalize()),
                );
            }
        }
    }
    assert!(!digests.is_empty(), "{} is empty", root.display());
    digests
}

/// The median; of an even count, `mean` of the middle two.
pub fn median<T: Copy + PartialOrd>(
    values: impl Iterator<Item = T>,
    mean: impl Fn(T, T) -> T,
) -> T {
    let mut values: Vec<T> = values.collect();
    values.sort_by(|x, y| x.partial_cmp(y).expect("comparable"));
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        mean(values[middle - 1], values[middle])
    } else {
        values[middle]
    }
}

/// A volume's size: "256 MiB", "1 GiB".
pub fn size_text(bytes: u64) -> String {
    if bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}
