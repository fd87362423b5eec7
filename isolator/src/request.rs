//! A task's Flocker volume request, read out of the `mesos::slave::ContainerConfig` that
//! `Isolator::prepare` gets, serialised by stout's `JSON::protobuf` (proto field names).
//!
//! The request is a set of environment variables: `FLOCKER_ID` and
//! `FLOCKER_CONTAINER_VOLUME_PATH` (with optional `FLOCKER_MAXIMUM_SIZE`, `FLOCKER_PROFILE` and
//! `FLOCKER_CONTAINER_VOLUME_MODE`) for one volume, and the same names suffixed `_1` to `_9` for more. They are read from
//! `command_info.environment.variables`, which holds the task's own environment in every case
//! the isolator can see: a command task (the agent merges the task's environment into the
//! generated executor's command), a custom executor (its command is the container's), and each
//! task of a task group (a nested container whose command is the task's). For command tasks
//! `task_info.command.environment.variables` is read as well and must agree.
//!
//! `executor_info` is never read. For a nested container it is a copy of the *root* container's
//! executor, so a debug shell or a task-group member would otherwise claim the root task's
//! volumes (debug-container.json shows exactly that). Everything a container asks for is in
//! its own `command_info`. Debug containers (`container_class` `DEBUG`) ask for nothing: they
//! run inside a task that already has its volumes.
//!
//! Placement facts come along: the host sandbox (`directory`), the provisioned `rootfs` if the
//! task has an image, the `user` the task runs as, and the roles its `resources` are allocated
//! to (for the operator's volume name prefixes by role).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flocker_api::validate::{
    MAXIMUM_METADATA_VALUE_LENGTH, MAXIMUM_SIZE_MULTIPLE, MINIMUM_MAXIMUM_SIZE,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The volume's name, cluster-wide.
pub const ID_VARIABLE: &str = "FLOCKER_ID";
/// Where the task wants the volume.
pub const PATH_VARIABLE: &str = "FLOCKER_CONTAINER_VOLUME_PATH";
/// The size a new volume is created with.
pub const MAXIMUM_SIZE_VARIABLE: &str = "FLOCKER_MAXIMUM_SIZE";
/// The storage profile a new volume is created with.
pub const PROFILE_VARIABLE: &str = "FLOCKER_PROFILE";
/// `rw` (the default) or `ro`: whether the task may write to the volume.
pub const MODE_VARIABLE: &str = "FLOCKER_CONTAINER_VOLUME_MODE";
/// Numbered volumes go from `_1` to this.
pub const LAST_VOLUME_NUMBER: u8 = 9;

/// A Flocker id and a profile are at most this many characters (they become dataset metadata).
const MAXIMUM_TEXT_LENGTH: usize = MAXIMUM_METADATA_VALUE_LENGTH;
/// A volume path is at most this many bytes (Linux's `PATH_MAX`).
const MAXIMUM_PATH_BYTES: usize = 4096;
/// Paths a volume may never be mounted on (compared without a trailing `/`).
const SYSTEM_DIRECTORIES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/sbin",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/tmp",
    "/var/lib/mesos",
];
/// Trees a volume may never be mounted anywhere in.
const SYSTEM_TREES: &[&str] = &["/proc/", "/sys/", "/dev/", "/boot/"];
/// Size units, all powers of 1024 as Flocker's Docker plugin read them.
const SIZE_UNITS: &[(&[&str], u32)] = &[
    (&["k", "kb", "kib"], 1),
    (&["m", "mb", "mib"], 2),
    (&["g", "gb", "gib"], 3),
    (&["t", "tb", "tib"], 4),
];
/// The environments read, in order: the container's own, then a command task's.
const ENVIRONMENTS: &[&[&str]] =
    &[&["command_info", "environment"], &["task_info", "command", "environment"]];

/// A `FLOCKER_ID`: the volume's name, cluster-wide. Only the constructor makes one, so every
/// value holds 1 to 256 ASCII letters, digits, `.`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FlockerId(String);

impl FlockerId {
    /// Checks `text` and wraps it; the error says which rule it broke.
    pub fn new(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        check_flocker_id(&text)?;
        Ok(Self(text))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FlockerId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::new(text)
    }
}

impl TryFrom<String> for FlockerId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::new(text)
    }
}

impl From<FlockerId> for String {
    fn from(id: FlockerId) -> String {
        id.0
    }
}

impl fmt::Display for FlockerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the task wants the volume: absolute (a host path, or a path inside the rootfs when the
/// task has an image) or relative (to the sandbox, or to the container's sandbox mount).
/// Only the constructor makes one; it is stored normalised (no repeated or trailing `/`), so
/// two equal paths compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskPath(PathBuf);

impl TaskPath {
    /// Checks `text` and normalises it; the error says which rule it broke.
    pub fn new(text: &str) -> Result<Self, String> {
        check_path_text(text)?;
        let normalised = normalise_path(text)?;
        check_not_system_directory(&normalised)?;
        Ok(Self(PathBuf::from(normalised)))
    }

    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// Whether the path starts at `/` (else it is relative to the sandbox).
    pub fn is_absolute(&self) -> bool {
        self.0.is_absolute()
    }
}

impl FromStr for TaskPath {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::new(text)
    }
}

impl TryFrom<String> for TaskPath {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::new(&text)
    }
}

impl From<TaskPath> for String {
    fn from(path: TaskPath) -> String {
        path.0.to_string_lossy().into_owned()
    }
}

impl fmt::Display for TaskPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.display(), f)
    }
}

/// One volume the task asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRequest {
    pub flocker_id: FlockerId,
    pub path: TaskPath,
    /// Bytes, from `FLOCKER_MAXIMUM_SIZE`: at least 64 MiB and a multiple of 1024.
    pub maximum_size: Option<u64>,
    /// From `FLOCKER_PROFILE`: 1 to 256 characters, no control characters.
    pub profile: Option<String>,
    /// From `FLOCKER_CONTAINER_VOLUME_MODE=ro`: a read-only bind mount.
    #[serde(default)]
    pub read_only: bool,
    /// `""` for the unnumbered volume, `"_1"` … `"_9"` for numbered ones: for messages.
    pub variable_suffix: String,
}

impl VolumeRequest {
    /// The name of this volume's variable with the given base, e.g. `FLOCKER_ID_2`.
    pub fn variable(&self, base: &str) -> String {
        format!("{base}{}", self.variable_suffix)
    }
}

/// Everything a container asks of the isolator, and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The unnumbered volume first, then by number.
    pub volumes: Vec<VolumeRequest>,
    /// The container's sandbox on the host (`directory`).
    pub sandbox: PathBuf,
    /// The host path of the task's provisioned root filesystem, if it has an image.
    pub rootfs: Option<PathBuf>,
    /// The user the task runs as, if the agent says.
    pub user: Option<String>,
    /// The roles the container's resources are allocated to (one, for any real task).
    #[serde(default)]
    pub roles: BTreeSet<String>,
}

/// Why a container's request was refused. Every message names the field or variable at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A field the isolator reads does not have the shape of its proto field.
    #[error("malformed container config: {at} {problem}")]
    Malformed { at: String, problem: String },
    /// One of our variables has no string value.
    #[error("{name} has no value (at {at}): Flocker variables need a plain string value")]
    NoValue { name: String, at: String },
    /// One of our variables is a Mesos secret, whose value isolators never see.
    #[error(
        "{name} is a SECRET variable (at {at}): Flocker variables cannot be secrets, give {name} as a plain value"
    )]
    Secret { name: String, at: String },
    /// `FLOCKER_ID_10`, `FLOCKER_ID_0`, `FLOCKER_ID_x` and the like.
    #[error(
        "{name} is not a valid Flocker variable: numbered volumes go from 1 to 9 (FLOCKER_ID_1 to FLOCKER_ID_9), the unnumbered one has no suffix"
    )]
    NumberOutOfRange { name: String },
    /// The same variable given twice with different values.
    #[error(
        "{name} is given twice with different values, {first:?} at {first_at} and {second:?} at {second_at}: give one value"
    )]
    Conflicting { name: String, first: String, first_at: String, second: String, second_at: String },
    /// Half of an id/path pair.
    #[error("{present} is set but {missing} is not: give both, or neither")]
    HalfPair { present: String, missing: String },
    /// A size, profile or mode with no volume to apply to.
    #[error(
        "{name} is set but neither {id} nor {path} is: it only applies to a volume given by both"
    )]
    WithoutVolume { name: String, id: String, path: String },
    /// A value that breaks its variable's rules.
    #[error("{name} is {value:?}: {reason}")]
    InvalidValue { name: String, value: String, reason: String },
    /// Two volumes with the same `FLOCKER_ID`.
    #[error(
        "{first} and {second} both ask for volume {id:?}: a container can mount each volume once"
    )]
    DuplicateId { id: String, first: String, second: String },
    /// Two volumes at the same path.
    #[error("{first} and {second} are both {path:?}: each volume needs its own path")]
    DuplicatePath { path: String, first: String, second: String },
}

/// Reads and checks the Flocker request of one container. `Ok(None)` means the container asks
/// for no Flocker volume (no id or path variable at all, or a debug container).
pub fn parse(container_config: &Value) -> Result<Option<Request>, RequestError> {
    let Value::Object(config) = container_config else {
        return Err(malformed("the container config", "is not an object"));
    };
    if is_debug_container(config)? {
        return Ok(None);
    }
    let volumes = volumes(&flocker_variables(config)?)?;
    if volumes.is_empty() {
        return Ok(None);
    }
    let (sandbox, rootfs, user) = placement(config)?;
    let roles = allocation_roles(config)?;
    Ok(Some(Request { volumes, sandbox, rootfs, user, roles }))
}

/// Reads a size: a whole number of bytes, optionally followed (after optional spaces) by a
/// binary unit, case-insensitive: `k`/`kb`/`kib`, `m`/`mb`/`mib`, `g`/`gb`/`gib`, `t`/`tb`/`tib`.
/// The result must be at least 64 MiB and a multiple of 1024 bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(
            "a size must start with a whole number of bytes, e.g. 10GiB or 1073741824".to_owned()
        );
    }
    let number: u64 = digits.parse().map_err(|_| too_large_size())?;
    let bytes = number
        .checked_mul(unit_multiplier(unit.trim_start_matches(' '))?)
        .ok_or_else(too_large_size)?;
    check_size_rule(bytes)?;
    Ok(bytes)
}

fn unit_multiplier(unit: &str) -> Result<u64, String> {
    if unit.is_empty() {
        return Ok(1);
    }
    if unit.starts_with(['.', ',']) {
        return Err("a size must be a whole number: give a fraction in a smaller unit (1536MiB, not 1.5GiB)".to_owned());
    }
    let lower = unit.to_ascii_lowercase();
    SIZE_UNITS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map(|(_, power)| 1024u64.pow(*power))
        .ok_or_else(|| {
            format!(
                "unknown unit {unit:?}: use k, m, g or t (or kb/kib, mb/mib, …), all powers of 1024"
            )
        })
}

fn too_large_size() -> String {
    "the size is too large to count in bytes".to_owned()
}

fn check_size_rule(bytes: u64) -> Result<(), String> {
    if bytes < MINIMUM_MAXIMUM_SIZE || !bytes.is_multiple_of(MAXIMUM_SIZE_MULTIPLE) {
        return Err(format!(
            "{bytes} bytes: a maximum size must be at least 64 MiB ({MINIMUM_MAXIMUM_SIZE} bytes) and a multiple of {MAXIMUM_SIZE_MULTIPLE} bytes"
        ));
    }
    Ok(())
}

fn check_flocker_id(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("a Flocker id cannot be empty".to_owned());
    }
    let length = text.chars().count();
    if length > MAXIMUM_TEXT_LENGTH {
        return Err(format!(
            "a Flocker id is at most {MAXIMUM_TEXT_LENGTH} characters, this one has {length}"
        ));
    }
    match text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(bad) => Err(format!(
            "a Flocker id may only hold ASCII letters, digits, '.', '_' and '-', not {bad:?}"
        )),
        None => Ok(()),
    }
}

fn check_profile(text: &str) -> Result<(), String> {
    let length = text.chars().count();
    if length == 0 {
        return Err("a profile cannot be empty".to_owned());
    }
    if length > MAXIMUM_TEXT_LENGTH {
        return Err(format!(
            "a profile is at most {MAXIMUM_TEXT_LENGTH} characters, this one has {length}"
        ));
    }
    match text.chars().find(|c| c.is_control()) {
        Some(bad) => Err(format!("a profile cannot hold control characters such as {bad:?}")),
        None if text.trim() != text => Err(SPACE_AT_THE_ENDS.replace("{what}", "a profile")),
        None => Ok(()),
    }
}

/// Spaces that would make two values that look alike differ.
const SPACE_AT_THE_ENDS: &str =
    "{what} cannot begin or end with white space: it would name something else than it seems";

fn check_mode(text: &str) -> Result<bool, String> {
    match text {
        "rw" => Ok(false),
        "ro" => Ok(true),
        _ => Err("the mode is \"rw\" (read-write, the default) or \"ro\" (read-only)".to_owned()),
    }
}

fn check_path_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("a volume path cannot be empty".to_owned());
    }
    if text.len() > MAXIMUM_PATH_BYTES {
        return Err(format!(
            "a volume path is at most {MAXIMUM_PATH_BYTES} bytes, this one has {}",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err("a volume path cannot hold a NUL byte".to_owned());
    }
    if let Some(bad) = text.chars().find(|c| c.is_control()) {
        return Err(format!("a volume path cannot hold control characters such as {bad:?}"));
    }
    let spaced = |part: &str| part.trim() != part;
    if spaced(text) || text.split('/').any(spaced) {
        return Err(SPACE_AT_THE_ENDS.replace("{what}", "a volume path or one of its components"));
    }
    Ok(())
}

/// Drops repeated and trailing `/`; refuses `.` and `..` components.
fn normalise_path(text: &str) -> Result<String, String> {
    let mut components = Vec::new();
    for component in text.split('/').filter(|c| !c.is_empty()) {
        if component == "." || component == ".." {
            return Err(format!(
                "a volume path cannot have a {component:?} component: give it without"
            ));
        }
        components.push(component);
    }
    let joined = components.join("/");
    Ok(if text.starts_with('/') { format!("/{joined}") } else { joined })
}

fn check_not_system_directory(normalised: &str) -> Result<(), String> {
    if normalised == "/" {
        return Err("a volume cannot be mounted over the root directory".to_owned());
    }
    if SYSTEM_DIRECTORIES.contains(&normalised) {
        return Err(format!(
            "{normalised} is a system directory: choose a path of its own for the volume"
        ));
    }
    match SYSTEM_TREES.iter().find(|tree| normalised.starts_with(*tree)) {
        Some(tree) => {
            Err(format!("{tree} is a system tree: choose a path outside it for the volume"))
        }
        None => Ok(()),
    }
}

/// Which of a volume's variables a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Id,
    Path,
    MaximumSize,
    Profile,
    Mode,
}

impl Field {
    const ALL: [Field; 5] =
        [Field::Id, Field::Path, Field::MaximumSize, Field::Profile, Field::Mode];

    fn base(self) -> &'static str {
        match self {
            Field::Id => ID_VARIABLE,
            Field::Path => PATH_VARIABLE,
            Field::MaximumSize => MAXIMUM_SIZE_VARIABLE,
            Field::Profile => PROFILE_VARIABLE,
            Field::Mode => MODE_VARIABLE,
        }
    }

    /// This field's variable for volume `number` (0 = unnumbered).
    fn variable(self, number: u8) -> String {
        format!("{}{}", self.base(), suffix(number))
    }
}

fn suffix(number: u8) -> String {
    if number == 0 { String::new() } else { format!("_{number}") }
}

/// What an environment variable's name means to us.
enum Name {
    /// One of our variables, for volume `number` (0 = unnumbered).
    Ours(Field, u8),
    /// Our base name with a suffix that is not 1 to 9.
    OutOfRange,
    /// Someone else's.
    NotOurs,
}

fn classify(name: &str) -> Name {
    for field in Field::ALL {
        let Some(rest) = name.strip_prefix(field.base()) else { continue };
        if rest.is_empty() {
            return Name::Ours(field, 0);
        }
        let Some(number) = rest.strip_prefix('_') else { continue };
        return match number.as_bytes() {
            [digit @ b'1'..=b'9'] => Name::Ours(field, digit - b'0'),
            _ => Name::OutOfRange,
        };
    }
    Name::NotOurs
}

/// A volume's number (0 = unnumbered) and which of its variables.
type Key = (u8, Field);

/// One of our variables as found: which it is, its value and where.
struct Found {
    key: Key,
    name: String,
    value: String,
    at: String,
}

/// Our variables, by volume number and field.
type Variables = BTreeMap<Key, Found>;

/// Our variables from every environment read, checked to agree.
fn flocker_variables(config: &Map<String, Value>) -> Result<Variables, RequestError> {
    let mut found = Variables::new();
    for path in ENVIRONMENTS {
        let label = format!("{}.variables", path.join("."));
        for (index, item) in environment_variables(config, path, &label)?.iter().enumerate() {
            if let Some(variable) = flocker_variable(item, &format!("{label}[{index}]"))? {
                record(&mut found, variable)?;
            }
        }
    }
    Ok(found)
}

/// The `variables` array of the `Environment` at `path`; empty if any part is absent.
fn environment_variables<'a>(
    config: &'a Map<String, Value>,
    path: &[&str],
    label: &str,
) -> Result<&'a [Value], RequestError> {
    let mut object = config;
    for (depth, key) in path.iter().enumerate() {
        match member(object, key) {
            None => return Ok(&[]),
            Some(Value::Object(inner)) => object = inner,
            Some(_) => return Err(malformed(&path[..=depth].join("."), "is not an object")),
        }
    }
    match member(object, "variables") {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(malformed(label, "is not an array")),
    }
}

/// Reads one `Environment.Variable`; `None` if it is not ours.
fn flocker_variable(item: &Value, at: &str) -> Result<Option<Found>, RequestError> {
    let Value::Object(fields) = item else {
        return Err(malformed(at, "is not an object"));
    };
    let Some(name) = string_member(fields, "name", at)? else {
        return Err(malformed(&format!("{at}.name"), "is missing"));
    };
    let key = match classify(name) {
        Name::NotOurs => return Ok(None),
        Name::OutOfRange => return Err(RequestError::NumberOutOfRange { name: name.to_owned() }),
        Name::Ours(field, number) => (number, field),
    };
    if string_member(fields, "type", at)? == Some("SECRET") {
        return Err(RequestError::Secret { name: name.to_owned(), at: at.to_owned() });
    }
    let Some(value) = string_member(fields, "value", at)? else {
        return Err(RequestError::NoValue { name: name.to_owned(), at: at.to_owned() });
    };
    Ok(Some(Found { key, name: name.to_owned(), value: value.to_owned(), at: at.to_owned() }))
}

/// Keeps the first sighting of a variable; a later one must have the same value.
fn record(found: &mut Variables, variable: Found) -> Result<(), RequestError> {
    match found.get(&variable.key) {
        Some(first) if first.value != variable.value => Err(RequestError::Conflicting {
            name: variable.name,
            first: first.value.clone(),
            first_at: first.at.clone(),
            second: variable.value,
            second_at: variable.at,
        }),
        Some(_) => Ok(()),
        None => {
            found.insert(variable.key, variable);
            Ok(())
        }
    }
}

/// Every volume asked for, unnumbered first, then by number; ids and paths all distinct.
fn volumes(variables: &Variables) -> Result<Vec<VolumeRequest>, RequestError> {
    let mut volumes = Vec::new();
    for number in 0..=LAST_VOLUME_NUMBER {
        if let Some(volume) = volume(variables, number)? {
            volumes.push(volume);
        }
    }
    check_distinct(&volumes)?;
    Ok(volumes)
}

/// Volume `number`, if its pair is given.
fn volume(variables: &Variables, number: u8) -> Result<Option<VolumeRequest>, RequestError> {
    let get = |field: Field| variables.get(&(number, field));
    match (get(Field::Id), get(Field::Path)) {
        (None, None) => check_no_extras(variables, number).map(|()| None),
        (Some(id), None) => Err(half_pair(id, Field::Path.variable(number))),
        (None, Some(path)) => Err(half_pair(path, Field::Id.variable(number))),
        (Some(id), Some(path)) => Ok(Some(VolumeRequest {
            flocker_id: FlockerId::new(id.value.as_str()).map_err(|reason| invalid(id, reason))?,
            path: TaskPath::new(&path.value).map_err(|reason| invalid(path, reason))?,
            maximum_size: get(Field::MaximumSize).map(checked_size).transpose()?,
            profile: get(Field::Profile).map(checked_profile).transpose()?,
            read_only: get(Field::Mode).map(checked_mode).transpose()?.unwrap_or(false),
            variable_suffix: suffix(number),
        })),
    }
}

fn checked_size(found: &Found) -> Result<u64, RequestError> {
    parse_size(&found.value).map_err(|reason| invalid(found, reason))
}

fn checked_mode(found: &Found) -> Result<bool, RequestError> {
    check_mode(&found.value).map_err(|reason| invalid(found, reason))
}

fn checked_profile(found: &Found) -> Result<String, RequestError> {
    check_profile(&found.value).map_err(|reason| invalid(found, reason))?;
    Ok(found.value.clone())
}

/// A size, profile or mode without its id/path pair is a mistake, not something to ignore.
fn check_no_extras(variables: &Variables, number: u8) -> Result<(), RequestError> {
    let extra = [Field::MaximumSize, Field::Profile, Field::Mode]
        .into_iter()
        .find_map(|field| variables.get(&(number, field)));
    match extra {
        Some(found) => Err(RequestError::WithoutVolume {
            name: found.name.clone(),
            id: Field::Id.variable(number),
            path: Field::Path.variable(number),
        }),
        None => Ok(()),
    }
}

fn check_distinct(volumes: &[VolumeRequest]) -> Result<(), RequestError> {
    for (index, later) in volumes.iter().enumerate() {
        for earlier in &volumes[..index] {
            if earlier.flocker_id == later.flocker_id {
                return Err(RequestError::DuplicateId {
                    id: later.flocker_id.to_string(),
                    first: earlier.variable(ID_VARIABLE),
                    second: later.variable(ID_VARIABLE),
                });
            }
            if earlier.path == later.path {
                return Err(RequestError::DuplicatePath {
                    path: later.path.to_string(),
                    first: earlier.variable(PATH_VARIABLE),
                    second: later.variable(PATH_VARIABLE),
                });
            }
        }
    }
    Ok(())
}

fn is_debug_container(config: &Map<String, Value>) -> Result<bool, RequestError> {
    Ok(string_member(config, "container_class", "")? == Some("DEBUG"))
}

/// The sandbox (required, absolute), the rootfs (absolute if set) and the user.
fn placement(
    config: &Map<String, Value>,
) -> Result<(PathBuf, Option<PathBuf>, Option<String>), RequestError> {
    let Some(directory) = string_member(config, "directory", "")? else {
        return Err(malformed("directory", "is missing"));
    };
    let sandbox = absolute_path("directory", directory)?;
    let rootfs =
        string_member(config, "rootfs", "")?.map(|r| absolute_path("rootfs", r)).transpose()?;
    let user = string_member(config, "user", "")?.map(str::to_owned);
    Ok((sandbox, rootfs, user))
}

/// The roles of `resources[].allocation_info.role`: those the container's resources were
/// allocated to.
fn allocation_roles(config: &Map<String, Value>) -> Result<BTreeSet<String>, RequestError> {
    let mut roles = BTreeSet::new();
    let Some(resources) = member(config, "resources") else { return Ok(roles) };
    let Value::Array(resources) = resources else {
        return Err(malformed("resources", "is not an array"));
    };
    for (index, resource) in resources.iter().enumerate() {
        let at = format!("resources[{index}]");
        let Value::Object(resource) = resource else {
            return Err(malformed(&at, "is not an object"));
        };
        let allocation = match member(resource, "allocation_info") {
            None => continue,
            Some(Value::Object(allocation)) => allocation,
            Some(_) => return Err(malformed(&format!("{at}.allocation_info"), "is not an object")),
        };
        if let Some(role) = string_member(allocation, "role", &format!("{at}.allocation_info"))? {
            roles.insert(role.to_owned());
        }
    }
    Ok(roles)
}

fn absolute_path(at: &str, text: &str) -> Result<PathBuf, RequestError> {
    let path = PathBuf::from(text);
    if !path.is_absolute() {
        return Err(malformed(at, &format!("is {text:?}, not an absolute path")));
    }
    Ok(path)
}

/// A member of a JSON object; `null` counts as absent.
fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// A string member of the object at `at` (`""` for the top level), if present.
fn string_member<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, RequestError> {
    match member(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => {
            let field = if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
            Err(malformed(&field, "is not a string"))
        }
    }
}

fn malformed(at: &str, problem: &str) -> RequestError {
    RequestError::Malformed { at: at.to_owned(), problem: problem.to_owned() }
}

fn half_pair(present: &Found, missing: String) -> RequestError {
    RequestError::HalfPair { present: present.name.clone(), missing }
}

fn invalid(found: &Found, reason: String) -> RequestError {
    RequestError::InvalidValue { name: found.name.clone(), value: found.value.clone(), reason }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FIXTURES: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/container-config");
    const SANDBOX: &str = "/var/lib/mesos/slaves/S0/frameworks/F0/executors/E0/runs/C0";

    /// A fixture; a missing or unreadable one fails the test.
    fn fixture(name: &str) -> Value {
        let path = format!("{FIXTURES}/{name}.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn variables(pairs: &[(&str, &str)]) -> Value {
        let list: Vec<Value> = pairs
            .iter()
            .map(|(name, value)| json!({"name": name, "type": "VALUE", "value": value}))
            .collect();
        json!({ "variables": list })
    }

    /// A config whose `command_info` environment holds `pairs`.
    fn config(pairs: &[(&str, &str)]) -> Value {
        json!({"directory": SANDBOX, "user": "root", "command_info": {"environment": variables(pairs)}})
    }

    fn request(pairs: &[(&str, &str)]) -> Request {
        parse(&config(pairs)).unwrap().unwrap()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        parse(&config(pairs)).unwrap_err().to_string()
    }

    /// The error for a single unnumbered volume with this id and path.
    fn volume_error(id: &str, path: &str) -> String {
        error(&[(ID_VARIABLE, id), (PATH_VARIABLE, path)])
    }

    fn only_volume(request: &Request) -> &VolumeRequest {
        assert_eq!(request.volumes.len(), 1, "{request:?}");
        &request.volumes[0]
    }

    #[test]
    fn command_task_asks_for_webapp_data_at_tmp_data() {
        let config = fixture("command-task");
        let request = parse(&config).unwrap().unwrap();
        let volume = only_volume(&request);
        assert_eq!(volume.flocker_id.as_str(), "webapp-data");
        assert_eq!(volume.path.as_path(), Path::new("/tmp/data"));
        assert!(volume.path.is_absolute());
        assert_eq!((volume.maximum_size, volume.profile.as_deref()), (None, None));
        assert_eq!(volume.variable_suffix, "");
        assert_eq!(request.sandbox, Path::new(config["directory"].as_str().unwrap()));
        assert_eq!(request.rootfs, None);
        assert_eq!(request.user.as_deref(), Some("root"));
    }

    #[test]
    fn custom_executor_asks_for_billing_db_as_postgres() {
        let request = parse(&fixture("custom-executor")).unwrap().unwrap();
        let volume = only_volume(&request);
        assert_eq!(volume.flocker_id.as_str(), "billing-db");
        assert_eq!(volume.path.as_path(), Path::new("/var/lib/postgresql/data"));
        assert_eq!(request.user.as_deref(), Some("postgres"));
    }

    #[test]
    fn nested_task_of_a_group_asks_for_orders_data() {
        let config = fixture("task-group-nested");
        let request = parse(&config).unwrap().unwrap();
        let volume = only_volume(&request);
        assert_eq!(volume.flocker_id.as_str(), "orders-data");
        assert_eq!(volume.path.as_path(), Path::new("/var/lib/orders"));
        assert_eq!(request.sandbox, Path::new(config["directory"].as_str().unwrap()));
    }

    #[test]
    fn image_task_asks_for_a_relative_path_and_has_a_rootfs() {
        let config = fixture("docker-image-task");
        let request = parse(&config).unwrap().unwrap();
        let volume = only_volume(&request);
        assert_eq!(volume.flocker_id.as_str(), "redis-data");
        assert_eq!(volume.path.as_path(), Path::new("data"));
        assert!(!volume.path.is_absolute());
        assert_eq!(request.rootfs.as_deref(), Some(Path::new(config["rootfs"].as_str().unwrap())));
    }

    #[test]
    fn two_volumes_come_in_number_order_whatever_the_variable_order() {
        let request = parse(&fixture("two-volumes")).unwrap().unwrap();
        let [data, wal] = request.volumes.as_slice() else { panic!("{request:?}") };
        assert_eq!((data.flocker_id.as_str(), data.variable_suffix.as_str()), ("pg-data", "_1"));
        assert_eq!(data.path.as_path(), Path::new("/var/lib/postgresql/data"));
        assert_eq!(data.maximum_size, Some(10 * 1024 * 1024 * 1024));
        assert_eq!(data.profile, None);
        assert_eq!((wal.flocker_id.as_str(), wal.variable_suffix.as_str()), ("pg-wal", "_2"));
        assert_eq!(wal.path.as_path(), Path::new("/var/lib/postgresql/wal"));
        assert_eq!((wal.maximum_size, wal.profile.as_deref()), (None, Some("gold")));
        assert_eq!(wal.variable(PROFILE_VARIABLE), "FLOCKER_PROFILE_2");
    }

    #[test]
    fn a_task_without_flocker_variables_asks_for_nothing() {
        assert_eq!(parse(&fixture("not-flocker")).unwrap(), None);
    }

    #[test]
    fn a_debug_container_asks_for_nothing_though_its_executor_info_has_flocker_id() {
        let config = fixture("debug-container");
        let inherited =
            config["executor_info"]["command"]["environment"]["variables"].as_array().unwrap();
        assert!(
            inherited.iter().any(|v| v["name"] == ID_VARIABLE),
            "the fixture no longer tests anything"
        );
        assert_eq!(parse(&config).unwrap(), None);
    }

    #[test]
    fn a_debug_container_is_skipped_whatever_its_own_environment() {
        let mut config = config(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/data")]);
        config["container_class"] = json!("DEBUG");
        assert_eq!(parse(&config).unwrap(), None);
        config["container_class"] = json!("DEFAULT");
        assert!(parse(&config).unwrap().is_some());
    }

    #[test]
    fn half_a_pair_in_a_fixture_names_the_missing_variable() {
        let message = parse(&fixture("bad-half-pair")).unwrap_err().to_string();
        assert_eq!(
            message,
            "FLOCKER_ID is set but FLOCKER_CONTAINER_VOLUME_PATH is not: give both, or neither"
        );
    }

    #[test]
    fn half_a_pair_either_way_names_the_missing_variable() {
        assert_eq!(
            error(&[(PATH_VARIABLE, "/data")]),
            "FLOCKER_CONTAINER_VOLUME_PATH is set but FLOCKER_ID is not: give both, or neither"
        );
        assert_eq!(
            error(&[("FLOCKER_ID_3", "x")]),
            "FLOCKER_ID_3 is set but FLOCKER_CONTAINER_VOLUME_PATH_3 is not: give both, or neither"
        );
    }

    #[test]
    fn executor_info_is_never_read() {
        let pairs = variables(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/data")]);
        let config =
            json!({"directory": SANDBOX, "executor_info": {"command": {"environment": pairs}}});
        assert_eq!(parse(&config).unwrap(), None);
    }

    #[test]
    fn unnumbered_and_numbered_volumes_combine() {
        let request = request(&[
            ("FLOCKER_ID_9", "c"),
            ("FLOCKER_CONTAINER_VOLUME_PATH_9", "/c"),
            (ID_VARIABLE, "a"),
            (PATH_VARIABLE, "/a"),
            ("FLOCKER_ID_1", "b"),
            ("FLOCKER_CONTAINER_VOLUME_PATH_1", "/b"),
        ]);
        let ids: Vec<&str> = request.volumes.iter().map(|v| v.flocker_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn flocker_id_holds_1_to_256_safe_ascii_characters() {
        assert_eq!(
            volume_error("my data", "/data"),
            "FLOCKER_ID is \"my data\": a Flocker id may only hold ASCII letters, digits, '.', '_' and '-', not ' '"
        );
        assert!(volume_error("é", "/data").contains("not 'é'"));
        assert!(volume_error("a\nb", "/data").contains("\"a\\nb\""), "the value is escaped");
        assert!(
            volume_error(&"a".repeat(257), "/data")
                .contains("at most 256 characters, this one has 257")
        );
        assert!(volume_error("", "/data").contains("cannot be empty"));
        let longest = "a".repeat(256);
        assert_eq!(
            request(&[(ID_VARIABLE, &longest), (PATH_VARIABLE, "/d")]).volumes[0]
                .flocker_id
                .as_str(),
            longest
        );
        assert!(FlockerId::new("Db_01.x-y").is_ok());
    }

    #[test]
    fn volume_paths_refuse_dot_components_root_and_system_directories() {
        let refused = |path: &str, reason: &str| {
            let message = volume_error("x", path);
            assert!(message.starts_with("FLOCKER_CONTAINER_VOLUME_PATH is "), "{message}");
            assert!(message.contains(reason), "{path:?}: {message}");
        };
        refused("/data/../etc", "cannot have a \"..\" component");
        refused("..", "\"..\" component");
        refused("./x", "cannot have a \".\" component");
        refused("a/./b", "\".\" component");
        refused("/", "over the root directory");
        refused("//", "over the root directory");
        refused("/etc", "/etc is a system directory");
        refused("/etc/", "/etc is a system directory");
        refused("/var/lib/mesos", "/var/lib/mesos is a system directory");
        refused("/proc/x", "/proc/ is a system tree");
        refused("/sys/fs/cgroup", "/sys/ is a system tree");
        refused("", "cannot be empty");
        refused("/a\0b", "NUL");
        refused(&format!("/{}", "a".repeat(4096)), "at most 4096 bytes, this one has 4097");
    }

    #[test]
    fn volume_paths_may_be_absolute_or_relative_and_are_normalised() {
        let path = |text: &str| TaskPath::new(text).unwrap().as_path().to_owned();
        assert_eq!(path("/tmp/data"), Path::new("/tmp/data"));
        assert_eq!(path("/etc/app/"), Path::new("/etc/app"));
        assert_eq!(path("//srv//www/"), Path::new("/srv/www"));
        assert_eq!(path("etc"), Path::new("etc"));
        assert_eq!(path("data/db/"), Path::new("data/db"));
        assert!(!TaskPath::new("data").unwrap().is_absolute());
        assert!(TaskPath::new(&format!("/{}", "a".repeat(4095))).is_ok());
    }

    #[test]
    fn paths_refuse_control_characters_and_white_space_that_changes_their_meaning() {
        let refused = |path: &str, reason: &str| {
            let message = volume_error("x", path);
            assert!(message.contains(reason), "{path:?}: {message}");
        };
        refused("/tmp/data\n", "control characters such as '\\n'");
        refused("/tmp/\u{1b}[31m", "control characters");
        refused(" /tmp/data", "white space");
        refused("/tmp/data ", "white space");
        refused("/tmp/ data/x", "white space");
        refused("/tmp/data/.", "\".\" component");
        assert!(TaskPath::new("/tmp/my data").is_ok(), "inner spaces are a plain name");
        let profile = |text: &str| {
            error(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/a"), (PROFILE_VARIABLE, text)])
        };
        assert!(profile(" gold").contains("white space"));
    }

    #[test]
    fn a_volume_is_read_write_unless_its_mode_says_ro() {
        let volume = |pairs: &[(&str, &str)]| only_volume(&request(pairs)).read_only;
        assert!(!volume(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "a")]));
        assert!(!volume(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "a"), (MODE_VARIABLE, "rw")]));
        assert!(volume(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "a"), (MODE_VARIABLE, "ro")]));
        let numbered = request(&[
            ("FLOCKER_ID_2", "x"),
            ("FLOCKER_CONTAINER_VOLUME_PATH_2", "a"),
            ("FLOCKER_CONTAINER_VOLUME_MODE_2", "ro"),
        ]);
        assert!(only_volume(&numbered).read_only);
        assert_eq!(
            error(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "a"), (MODE_VARIABLE, "RO ")]),
            "FLOCKER_CONTAINER_VOLUME_MODE is \"RO \": the mode is \"rw\" (read-write, the default) or \"ro\" (read-only)"
        );
        assert!(
            error(&[(MODE_VARIABLE, "ro")])
                .starts_with("FLOCKER_CONTAINER_VOLUME_MODE is set but neither")
        );
    }

    #[test]
    fn the_roles_come_from_the_containers_own_resources() {
        assert_eq!(
            parse(&fixture("custom-executor")).unwrap().unwrap().roles,
            ["billing".to_owned()].into()
        );
        assert_eq!(
            parse(&fixture("command-task")).unwrap().unwrap().roles,
            ["*".to_owned()].into()
        );
        assert!(request(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "a")]).roles.is_empty());
        let mut config = config(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "a")]);
        config["resources"] = json!([{"name": "cpus", "allocation_info": "web"}]);
        assert_eq!(
            parse(&config).unwrap_err().to_string(),
            "malformed container config: resources[0].allocation_info is not an object"
        );
    }

    #[test]
    fn two_volumes_cannot_share_an_id_or_a_path() {
        let shared_id = error(&[
            (ID_VARIABLE, "x"),
            (PATH_VARIABLE, "/a"),
            ("FLOCKER_ID_1", "x"),
            ("FLOCKER_CONTAINER_VOLUME_PATH_1", "/b"),
        ]);
        assert_eq!(
            shared_id,
            "FLOCKER_ID and FLOCKER_ID_1 both ask for volume \"x\": a container can mount each volume once"
        );
        let shared_path = error(&[
            ("FLOCKER_ID_1", "x"),
            ("FLOCKER_CONTAINER_VOLUME_PATH_1", "/data"),
            ("FLOCKER_ID_2", "y"),
            ("FLOCKER_CONTAINER_VOLUME_PATH_2", "/data/"),
        ]);
        assert_eq!(
            shared_path,
            "FLOCKER_CONTAINER_VOLUME_PATH_1 and FLOCKER_CONTAINER_VOLUME_PATH_2 are both \"/data\": each volume needs its own path"
        );
    }

    #[test]
    fn numbered_volumes_go_from_1_to_9() {
        for name in
            ["FLOCKER_ID_10", "FLOCKER_ID_0", "FLOCKER_ID_x", "FLOCKER_ID_", "FLOCKER_PROFILE_01"]
        {
            let message = error(&[(name, "x")]);
            assert!(
                message.starts_with(&format!("{name} is not a valid Flocker variable")),
                "{message}"
            );
            assert!(message.contains("numbered volumes go from 1 to 9"), "{message}");
        }
    }

    #[test]
    fn names_are_matched_exactly_not_as_prefixes() {
        assert_eq!(
            parse(&config(&[("FLOCKER_IDX", "x"), ("FLOCKER_CONTAINER_VOLUME_PATHS", "/a")]))
                .unwrap(),
            None
        );
        assert_eq!(
            parse(&config(&[("FLOCKER_CONTROL_SERVICE", "x"), ("flocker_id", "x")])).unwrap(),
            None
        );
    }

    #[test]
    fn a_size_or_profile_needs_its_volume() {
        assert_eq!(
            error(&[
                (ID_VARIABLE, "x"),
                (PATH_VARIABLE, "/a"),
                ("FLOCKER_MAXIMUM_SIZE_2", "10GiB")
            ]),
            "FLOCKER_MAXIMUM_SIZE_2 is set but neither FLOCKER_ID_2 nor FLOCKER_CONTAINER_VOLUME_PATH_2 is: it only applies to a volume given by both"
        );
        assert!(
            error(&[(MAXIMUM_SIZE_VARIABLE, "10GiB")])
                .starts_with("FLOCKER_MAXIMUM_SIZE is set but neither")
        );
        assert!(
            error(&[(PROFILE_VARIABLE, "gold")]).starts_with("FLOCKER_PROFILE is set but neither")
        );
    }

    #[test]
    fn flocker_variables_cannot_be_secrets() {
        let secret =
            json!({"name": ID_VARIABLE, "type": "SECRET", "secret": {"type": "REFERENCE"}});
        let config =
            json!({"directory": SANDBOX, "command_info": {"environment": {"variables": [secret]}}});
        assert_eq!(
            parse(&config).unwrap_err().to_string(),
            "FLOCKER_ID is a SECRET variable (at command_info.environment.variables[0]): Flocker variables cannot be secrets, give FLOCKER_ID as a plain value"
        );
    }

    #[test]
    fn other_secrets_are_ignored() {
        let secret =
            json!({"name": "DB_PASSWORD", "type": "SECRET", "secret": {"type": "REFERENCE"}});
        let mut config = config(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/a")]);
        config["command_info"]["environment"]["variables"].as_array_mut().unwrap().push(secret);
        assert!(parse(&config).unwrap().is_some());
    }

    #[test]
    fn command_info_and_task_info_must_agree() {
        let mut config = config(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/a")]);
        config["task_info"] = json!({"command": {"environment": variables(&[(ID_VARIABLE, "y")])}});
        assert_eq!(
            parse(&config).unwrap_err().to_string(),
            "FLOCKER_ID is given twice with different values, \"x\" at command_info.environment.variables[0] and \"y\" at task_info.command.environment.variables[0]: give one value"
        );
        config["task_info"] = json!({"command": {"environment": variables(&[(ID_VARIABLE, "x"), (PROFILE_VARIABLE, "gold")])}});
        let request = parse(&config).unwrap().unwrap();
        assert_eq!(
            only_volume(&request).profile.as_deref(),
            Some("gold"),
            "task_info's own variables count"
        );
    }

    #[test]
    fn sizes_are_bytes_or_binary_units() {
        assert_eq!(parse_size("10GiB"), Ok(10_737_418_240));
        assert_eq!(parse_size("500 MiB"), Ok(500 * 1024 * 1024));
        assert_eq!(parse_size("64m"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_size("1073741824"), Ok(1_073_741_824));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert_eq!(parse_size("2 TB"), Ok(2 << 40));
        assert_eq!(parse_size("65536kib"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), parse_size("1GB"));
    }

    #[test]
    fn sizes_must_be_whole_large_enough_multiples_of_1024() {
        let refused = |text: &str, reason: &str| {
            let message = parse_size(text).unwrap_err();
            assert!(message.contains(reason), "{text:?}: {message}");
        };
        refused("1.5GiB", "whole number");
        refused("63MiB", "at least 64 MiB (67108864 bytes) and a multiple of 1024 bytes");
        refused("67108865", "at least 64 MiB (67108864 bytes) and a multiple of 1024 bytes");
        refused("99999999999999T", "too large");
        refused("99999999999999999999999", "too large");
        refused("10 GiBs", "unknown unit \"GiBs\"");
        refused("10 PiB", "unknown unit");
        refused("GiB", "start with a whole number");
        refused("-1GiB", "start with a whole number");
        refused("", "start with a whole number");
    }

    #[test]
    fn a_bad_size_names_its_variable() {
        let message =
            error(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/a"), (MAXIMUM_SIZE_VARIABLE, "63MiB")]);
        assert!(
            message.starts_with(
                "FLOCKER_MAXIMUM_SIZE is \"63MiB\": 66060288 bytes: a maximum size must be"
            ),
            "{message}"
        );
    }

    #[test]
    fn profiles_hold_1_to_256_printable_characters() {
        let with_profile = |profile: &str| {
            error(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/a"), (PROFILE_VARIABLE, profile)])
        };
        assert_eq!(with_profile(""), "FLOCKER_PROFILE is \"\": a profile cannot be empty");
        assert!(with_profile("gold\n").contains("control characters such as '\\n'"));
        assert!(
            with_profile(&"é".repeat(257)).contains("at most 256 characters, this one has 257")
        );
        let fine = "é".repeat(256);
        assert_eq!(
            request(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/a"), (PROFILE_VARIABLE, &fine)])
                .volumes[0]
                .profile,
            Some(fine)
        );
    }

    #[test]
    fn shapes_that_are_read_are_checked() {
        let with_environment = |environment: Value| {
            let config =
                json!({"directory": SANDBOX, "command_info": {"environment": environment}});
            parse(&config).unwrap_err().to_string()
        };
        assert_eq!(
            with_environment(json!({"variables": {"FLOCKER_ID": "x"}})),
            "malformed container config: command_info.environment.variables is not an array"
        );
        assert_eq!(
            with_environment(json!({"variables": [{"value": "x"}]})),
            "malformed container config: command_info.environment.variables[0].name is missing"
        );
        assert_eq!(
            with_environment(json!({"variables": ["FLOCKER_ID=x"]})),
            "malformed container config: command_info.environment.variables[0] is not an object"
        );
        assert_eq!(
            with_environment(json!({"variables": [{"name": "FLOCKER_ID", "value": 7}]})),
            "malformed container config: command_info.environment.variables[0].value is not a string"
        );
        assert_eq!(
            with_environment(json!({"variables": [{"name": "FLOCKER_ID", "type": "VALUE"}]})),
            "FLOCKER_ID has no value (at command_info.environment.variables[0]): Flocker variables need a plain string value"
        );
        assert_eq!(
            with_environment(json!([])),
            "malformed container config: command_info.environment is not an object"
        );
        let task_info = json!({"directory": SANDBOX, "task_info": {"command": "sh -c true"}});
        assert_eq!(
            parse(&task_info).unwrap_err().to_string(),
            "malformed container config: task_info.command is not an object"
        );
        assert!(parse(&json!([])).is_err());
    }

    #[test]
    fn placement_is_checked_only_for_flocker_containers() {
        let mut flocker = config(&[(ID_VARIABLE, "x"), (PATH_VARIABLE, "/a")]);
        flocker["directory"] = json!(7);
        assert_eq!(
            parse(&flocker).unwrap_err().to_string(),
            "malformed container config: directory is not a string"
        );
        flocker["directory"] = json!("sandbox");
        assert_eq!(
            parse(&flocker).unwrap_err().to_string(),
            "malformed container config: directory is \"sandbox\", not an absolute path"
        );
        flocker.as_object_mut().unwrap().remove("directory");
        assert_eq!(
            parse(&flocker).unwrap_err().to_string(),
            "malformed container config: directory is missing"
        );
        let mut other = config(&[("PATH", "/bin")]);
        other.as_object_mut().unwrap().remove("directory");
        assert_eq!(parse(&other).unwrap(), None);
    }

    #[test]
    fn unknown_keys_and_missing_optional_fields_are_tolerated() {
        let config = json!({
            "directory": SANDBOX,
            "some_future_field": {"x": 1},
            "command_info": {
                "value": "true",
                "environment": {
                    "extra": true,
                    "variables": [
                        {"name": ID_VARIABLE, "value": "x", "future": 1},
                        {"name": PATH_VARIABLE, "type": "VALUE", "value": "/a"},
                        {"name": "OTHER", "value": 42},
                    ],
                },
            },
        });
        let request = parse(&config).unwrap().unwrap();
        assert_eq!((request.rootfs, request.user), (None, None));
        assert_eq!(parse(&json!({"directory": SANDBOX})).unwrap(), None);
    }

    #[test]
    fn ids_and_paths_serialise_as_checked_strings() {
        let id = FlockerId::new("pg-data").unwrap();
        assert_eq!(serde_json::to_value(&id).unwrap(), json!("pg-data"));
        assert_eq!(serde_json::from_value::<FlockerId>(json!("pg-data")).unwrap(), id);
        assert!(serde_json::from_value::<FlockerId>(json!("pg data")).is_err());
        let path: TaskPath = "/srv/pg/".parse().unwrap();
        assert_eq!(serde_json::to_value(&path).unwrap(), json!("/srv/pg"));
        assert_eq!(serde_json::from_value::<TaskPath>(json!("/srv/pg")).unwrap(), path);
        assert!(serde_json::from_value::<TaskPath>(json!("/etc")).is_err());
        assert_eq!(id.to_string(), "pg-data");
        assert_eq!(path.to_string(), "/srv/pg");
    }
}
