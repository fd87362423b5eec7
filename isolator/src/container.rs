//! Mesos container ids, as the shim hands them over: `{"value": "…", "parent": {…}}`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A container id with its parents (task-group tasks and debug containers are nested).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerId {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<ContainerId>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a container id (letters, digits, '-', '_', '.')")]
pub struct InvalidContainerId(pub String);

impl ContainerId {
    /// Reads the JSON form, checking every value is something Mesos would make.
    pub fn from_json(json: &serde_json::Value) -> Result<Self, InvalidContainerId> {
        let id: Self =
            serde_json::from_value(json.clone()).map_err(|e| InvalidContainerId(e.to_string()))?;
        id.check()?;
        Ok(id)
    }

    fn check(&self) -> Result<(), InvalidContainerId> {
        let good = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.value.is_empty()
            || self.value == "."
            || self.value == ".."
            || !self.value.chars().all(good)
        {
            return Err(InvalidContainerId(self.value.clone()));
        }
        self.parent.as_deref().map_or(Ok(()), Self::check)
    }

    /// The chain from the root container down to this one.
    pub fn chain(&self) -> Vec<&str> {
        let mut chain = self.parent.as_deref().map(Self::chain).unwrap_or_default();
        chain.push(&self.value);
        chain
    }

    /// A name for files: the chain joined by `+`, which Mesos ids never contain.
    pub fn file_name(&self) -> String {
        self.chain().join("+")
    }
}

/// The shim's recover request, `{"states": [ContainerState…], "orphans": [ContainerID…]}`: the
/// containers Mesos still runs, and those it will destroy itself.
pub fn recover_request(
    request: &serde_json::Value,
) -> Result<(Vec<ContainerId>, Vec<ContainerId>), InvalidContainerId> {
    let list = |key: &str| {
        request
            .get(key)
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let states = list("states")
        .iter()
        .map(|state| {
            ContainerId::from_json(state.get("container_id").unwrap_or(&serde_json::Value::Null))
        })
        .collect::<Result<_, _>>()?;
    let orphans = list("orphans").iter().map(ContainerId::from_json).collect::<Result<_, _>>()?;
    Ok((states, orphans))
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain().join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nested_id_names_its_parent_first() {
        let id = ContainerId::from_json(&json!({"value": "child", "parent": {"value": "root"}}))
            .unwrap();
        assert_eq!(id.file_name(), "root+child");
        assert_eq!(id.to_string(), "root.child");
    }

    #[test]
    fn the_recover_fixture_names_two_running_containers_and_two_orphans() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/container-config/recover.json"
        ));
        let request: serde_json::Value = serde_json::from_str(&text.unwrap()).unwrap();
        let (states, orphans) = recover_request(&request).unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(orphans.len(), 2);
        assert_eq!(orphans[0].parent.as_ref().unwrap().value, states[0].value);
    }

    #[test]
    fn ids_that_could_escape_a_directory_are_refused() {
        for bad in [
            json!({"value": ".."}),
            json!({"value": "a/b"}),
            json!({"value": ""}),
            json!({"value": "x", "parent": {"value": "../y"}}),
            json!("x"),
        ] {
            assert!(ContainerId::from_json(&bad).is_err(), "{bad}");
        }
    }
}
