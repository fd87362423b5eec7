//! What is mounted where, from `/proc/self/mountinfo`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    /// `major:minor` of the mounted file system.
    pub device: String,
    /// The directory of that file system mounted here (`/` unless a bind mount of a subtree).
    pub root: PathBuf,
    pub fs_type: String,
    /// What was mounted, as the kernel records it (`/dev/loop3`, …).
    pub source: String,
}

/// The mounts of this mount namespace, by mount point; where mounts are stacked, the top one.
#[derive(Debug, Default)]
pub struct MountTable {
    by_mount_point: HashMap<PathBuf, Mount>,
}

impl MountTable {
    pub fn read() -> io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
    }

    pub fn parse(text: &str) -> Self {
        let by_mount_point = text
            .lines()
            .filter_map(parse_line)
            .map(|mount| (mount.mount_point.clone(), mount))
            .collect();
        Self { by_mount_point }
    }

    /// The mount whose mount point is exactly `path`.
    pub fn at(&self, path: &Path) -> Option<&Mount> {
        self.by_mount_point.get(path)
    }

    /// The mounts whose mount points are `directory` or under it.
    pub fn under<'a>(&'a self, directory: &'a Path) -> impl Iterator<Item = &'a Mount> + 'a {
        self.by_mount_point.values().filter(move |m| m.mount_point.starts_with(directory))
    }
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let (_id, _parent) = (fields.next()?, fields.next()?);
    let device = fields.next()?.to_owned();
    let root = PathBuf::from(unescape(fields.next()?));
    let mount_point = PathBuf::from(unescape(fields.next()?));
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_owned();
    let source = unescape(after.next()?);
    Some(Mount { mount_point, device, root, fs_type, source })
}

/// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
98 22 7:3 / /flocker/0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f rw,relatime shared:50 - ext4 /dev/loop3 rw
99 22 254:0 /srv/with\\040space /mnt/a\\040b rw,relatime shared:1 - ext4 /dev/vda rw
100 22 254:0 / /mnt/a\\040b rw - tmpfs tmpfs rw
";

    #[test]
    fn a_mount_is_found_by_its_mount_point() {
        let table = MountTable::parse(SAMPLE);
        let mount = table.at(Path::new("/flocker/0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f")).unwrap();
        assert_eq!(
            (mount.device.as_str(), mount.fs_type.as_str(), mount.source.as_str()),
            ("7:3", "ext4", "/dev/loop3")
        );
        assert!(table.at(Path::new("/flocker")).is_none());
    }

    #[test]
    fn escaped_spaces_are_read_and_the_top_of_a_stack_wins() {
        let table = MountTable::parse(SAMPLE);
        let mount = table.at(Path::new("/mnt/a b")).unwrap();
        assert_eq!(mount.fs_type, "tmpfs");
    }

    #[test]
    fn the_mounts_under_a_directory_are_listed_with_type_and_source() {
        let table = MountTable::parse(
            "36 35 7:3 / /tmp/demo\\040x/flocker/abc rw,relatime - ext4 /dev/loop3 rw\n\
             37 35 7:4 / /tmp/other rw - ext4 /dev/loop4 rw\n",
        );
        let under: Vec<&Mount> = table.under(Path::new("/tmp/demo x")).collect();
        assert_eq!(under.len(), 1);
        assert_eq!(under[0].mount_point, PathBuf::from("/tmp/demo x/flocker/abc"));
        assert_eq!((under[0].fs_type.as_str(), under[0].source.as_str()), ("ext4", "/dev/loop3"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(MountTable::parse("nonsense\n\n1 2 3").at(Path::new("/")).is_none());
    }
}
