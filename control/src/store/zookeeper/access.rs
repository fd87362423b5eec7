//! Who may touch the configuration in ZooKeeper. ZooKeeper serves anyone who reaches it, and
//! on a Mesos cluster tasks can reach it (the agents' leader detection needs it), so with
//! `--store-credentials` every znode of the store is made readable and writable only by
//! sessions that authenticated with the same `user:password` (ZooKeeper's `digest` scheme,
//! the creator-only ACL). Without it the znodes are open to all, and the service says so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zookeeper_client as zk;

/// The ACL every znode of the store gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may read and write (no credentials given).
    Open,
    /// Only sessions authenticated as the creator.
    Creator,
}

impl Access {
    pub fn options(self, mode: zk::CreateMode) -> zk::CreateOptions<'static> {
        match self {
            Self::Open => mode.with_acls(zk::Acls::anyone_all()),
            Self::Creator => mode.with_acls(zk::Acls::creator_all()),
        }
    }
}

/// `user:password` for ZooKeeper's `digest` scheme, read from a file only its owner can read.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(Vec<u8>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(…)")
    }
}

impl Credentials {
    pub fn read(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let metadata = fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{shown} holds a secret but others may read it: chmod 600 {shown}"
            ));
        }
        let text = fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Self::parse(text.trim_end_matches(['\n', '\r'])).map_err(|e| format!("{shown}: {e}"))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let (user, password) =
            text.split_once(':').ok_or("it must hold one line, user:password")?;
        let printable = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_control());
        if !printable(user) || !printable(password) || text.contains('\n') {
            return Err("it must hold one line, user:password, both non-empty".into());
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_one_line_of_user_and_password() {
        assert!(Credentials::parse("flocker:s3cret").is_ok());
        for bad in ["flocker", ":s3cret", "flocker:", "a:b\nc:d", "a\u{7}:b"] {
            assert!(Credentials::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_credentials_file_others_can_read_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("zookeeper.secret");
        fs::write(&path, "flocker:s3cret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Credentials::read(&path).unwrap_err().contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Credentials::read(&path).unwrap(),
            Credentials::parse("flocker:s3cret").unwrap()
        );
    }
}
