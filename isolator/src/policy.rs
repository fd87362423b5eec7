//! What the operator lets a task ask for, decided before anything is done for it (pure):
//! where on the host a volume may be linked (`host_path_roots`), that a read-only volume is
//! never a host link (a link cannot be read-only), and which volume names each Mesos role may
//! use (`volume_prefixes_by_role`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::placement::Placement;
use crate::request::{FlockerId, ID_VARIABLE, MODE_VARIABLE, PATH_VARIABLE, Request};

/// Where host links may go unless the operator says otherwise: enough for the original
/// module's example (`FLOCKER_CONTAINER_VOLUME_PATH=/tmp/data`) and nothing a system reads.
pub const DEFAULT_HOST_PATH_ROOTS: &str = "/tmp";

/// The directories beneath which a task without an image may have its volume linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathRoots(Vec<PathBuf>);

impl HostPathRoots {
    /// Absolute directories, comma-separated; empty allows no host link at all.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut roots = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let root = PathBuf::from(entry);
            let plain = entry.split('/').skip(1).all(|c| !matches!(c, "" | "." | ".."));
            if entry == "/" {
                return Err("'/' would let a task put a link anywhere; name the directories \
                            tasks may use, such as /tmp or /srv/volumes"
                    .to_owned());
            }
            if !entry.starts_with('/') || !plain {
                return Err(format!(
                    "'{entry}' is not an absolute directory without '.', '..' or a trailing '/'"
                ));
            }
            roots.push(root);
        }
        Ok(Self(roots))
    }

    /// The root a link at `path` is made beneath: the deepest root strictly above it.
    pub fn root_of(&self, path: &Path) -> Option<&Path> {
        self.0
            .iter()
            .filter(|root| path.starts_with(root) && path != root.as_path())
            .max_by_key(|root| root.components().count())
            .map(PathBuf::as_path)
    }

    /// The roots that are not directories here (an operator's typo, or one not made yet).
    pub fn missing(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().filter(|root| !root.is_dir()).map(PathBuf::as_path)
    }

    /// For messages: the roots, comma-separated, or "none".
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none: host links are off".to_owned();
        }
        self.0.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

impl Default for HostPathRoots {
    fn default() -> Self {
        Self(vec![PathBuf::from(DEFAULT_HOST_PATH_ROOTS)])
    }
}

/// Which volume names each role may use; `None` (the default) lets every role use any name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumePrefixes(Option<BTreeMap<String, Vec<String>>>);

/// In `volume_prefixes_by_role`, the prefix that allows any name.
const ANY_NAME: &str = "*";

impl VolumePrefixes {
    /// `role=prefix,prefix;role=prefix`, e.g. `billing=billing-;web=web-,shared-;*=scratch-`
    /// (`*` is Mesos's default role; a prefix `*` allows every name).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_role = BTreeMap::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((role, prefixes)) = entry.split_once('=') else {
                return Err(format!("'{entry}' is not role=prefix,prefix"));
            };
            let role = role.trim();
            let prefixes: Vec<String> = prefixes
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            if role.is_empty() || prefixes.is_empty() {
                return Err(format!("'{entry}' needs a role and at least one prefix"));
            }
            if let Some(bad) =
                prefixes.iter().find(|p| *p != ANY_NAME && FlockerId::new(p.as_str()).is_err())
            {
                return Err(format!(
                    "'{bad}' cannot begin a FLOCKER_ID (ASCII letters, digits, '.', '_', '-'), nor is it '*'"
                ));
            }
            if by_role.insert(role.to_owned(), prefixes).is_some() {
                return Err(format!("role '{role}' is listed twice"));
            }
        }
        if by_role.is_empty() {
            return Err(
                "lists no role: leave the parameter out to let every role use any name".to_owned()
            );
        }
        Ok(Self(Some(by_role)))
    }

    /// Whether a container whose resources are allocated to `roles` may use volume `id`.
    fn check(&self, roles: &BTreeSet<String>, id: &FlockerId) -> Result<(), String> {
        let Some(by_role) = &self.0 else { return Ok(()) };
        let role = match roles.iter().collect::<Vec<_>>().as_slice() {
            [role] => *role,
            [] => return Err("the container's resources name no role, and volume_prefixes_by_role allows volumes by role".to_owned()),
            several => return Err(format!("the container's resources are allocated to several roles ({}); volume_prefixes_by_role needs one", several.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))),
        };
        let Some(prefixes) = by_role.get(role) else {
            return Err(format!(
                "role '{role}' may use no volume (volume_prefixes_by_role lists {})",
                by_role.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ));
        };
        if prefixes.iter().any(|p| p == ANY_NAME || id.as_str().starts_with(p.as_str())) {
            return Ok(());
        }
        Err(format!(
            "role '{role}' may only use volumes whose name begins with {} (volume_prefixes_by_role)",
            prefixes.join(" or ")
        ))
    }
}

/// A request the operator's policy refuses: which variable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} is {value:?}: {reason}")]
pub struct Refusal {
    pub variable: String,
    pub value: String,
    pub reason: String,
}

/// Checks every volume of a request against the policy. `placement` says where each goes.
pub fn check(
    request: &Request,
    roots: &HostPathRoots,
    prefixes: &VolumePrefixes,
    placement: impl Fn(&crate::request::VolumeRequest) -> Placement,
) -> Result<(), Refusal> {
    for volume in &request.volumes {
        let refuse = |base: &str, value: String, reason: String| Refusal {
            variable: volume.variable(base),
            value,
            reason,
        };
        prefixes
            .check(&request.roles, &volume.flocker_id)
            .map_err(|reason| refuse(ID_VARIABLE, volume.flocker_id.to_string(), reason))?;
        let Placement::Link(link) = placement(volume) else { continue };
        if volume.read_only {
            return Err(refuse(
                MODE_VARIABLE,
                "ro".into(),
                format!(
                    "{} would be a link on the host, and a link cannot be read-only: give a relative \
                 {} (the volume is then mounted read-only in the sandbox) or run the task with \
                 an image",
                    link.display(),
                    volume.variable(PATH_VARIABLE)
                ),
            ));
        }
        if roots.root_of(&link).is_none() {
            return Err(refuse(
                PATH_VARIABLE,
                link.display().to_string(),
                format!(
                    "a task without an image may only have its volume linked beneath the module's \
                 host_path_roots ({}): choose a path there, or a relative path (the volume is \
                 then mounted in the sandbox)",
                    roots.describe()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(text: &str) -> HostPathRoots {
        HostPathRoots::parse(text).unwrap()
    }

    #[test]
    fn a_link_goes_only_strictly_beneath_a_root() {
        let roots = roots("/tmp, /srv/volumes");
        assert_eq!(roots.root_of(Path::new("/tmp/data")), Some(Path::new("/tmp")));
        assert_eq!(roots.root_of(Path::new("/srv/volumes/a/b")), Some(Path::new("/srv/volumes")));
        for outside in
            ["/tmp", "/tmpx/data", "/etc/cron.d/x", "/root/.ssh", "/srv/volumesx", "/srv"]
        {
            assert_eq!(roots.root_of(Path::new(outside)), None, "{outside}");
        }
        assert_eq!(HostPathRoots::parse("").unwrap().root_of(Path::new("/tmp/data")), None);
        assert_eq!(HostPathRoots::default(), self::roots("/tmp"));
    }

    #[test]
    fn the_deepest_root_wins() {
        let roots = roots("/srv,/srv/volumes");
        assert_eq!(roots.root_of(Path::new("/srv/volumes/a")), Some(Path::new("/srv/volumes")));
    }

    #[test]
    fn roots_must_be_plain_absolute_directories_and_never_the_whole_disk() {
        for bad in ["tmp", "/tmp/../etc", "/tmp/./x", "/", "/tmp/"] {
            assert!(HostPathRoots::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_by_role_parse_and_refuse_what_they_do_not_list() {
        let prefixes = VolumePrefixes::parse("billing=billing-,pg-; *=scratch-; ops=*").unwrap();
        let id = |text: &str| FlockerId::new(text).unwrap();
        let roles = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        assert!(prefixes.check(&roles(&["billing"]), &id("pg-orders")).is_ok());
        assert!(prefixes.check(&roles(&["*"]), &id("scratch-1")).is_ok());
        assert!(prefixes.check(&roles(&["ops"]), &id("anything")).is_ok());
        let refused = prefixes.check(&roles(&["billing"]), &id("web-x")).unwrap_err();
        assert!(refused.contains("begins with billing- or pg-"), "{refused}");
        assert!(
            prefixes.check(&roles(&["web"]), &id("x")).unwrap_err().contains("may use no volume")
        );
        assert!(prefixes.check(&roles(&[]), &id("x")).unwrap_err().contains("name no role"));
        assert!(prefixes.check(&roles(&["a", "b"]), &id("x")).unwrap_err().contains("several"));
        assert!(VolumePrefixes::default().check(&roles(&[]), &id("x")).is_ok(), "unrestricted");
        for bad in ["", "billing", "billing=", "=x", "a=x;a=y", "a=x y"] {
            assert!(VolumePrefixes::parse(bad).is_err(), "{bad}");
        }
    }
}
