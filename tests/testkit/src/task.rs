//! Mesos's side of a prepare, for tests: the ContainerConfig fixtures (exactly as the shim hands
//! them over) with the FLOCKER variables a test wants, and container ids.

use serde_json::{Value, json};

/// A fixture of `tests/fixtures/container-config/`, by name without `.json`.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/../fixtures/container-config/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The command-task fixture (a Marathon app) asking for `volumes`: (FLOCKER_ID, path) pairs,
/// numbered `_1`, `_2`, … when there are several.
pub fn command_task(volumes: &[(&str, &str)]) -> Value {
    let variables: Vec<(String, String)> = match volumes {
        [(id, path)] => vec![
            ("FLOCKER_ID".into(), (*id).into()),
            ("FLOCKER_CONTAINER_VOLUME_PATH".into(), (*path).into()),
        ],
        many => many
            .iter()
            .enumerate()
            .flat_map(|(i, (id, path))| {
                [
                    (format!("FLOCKER_ID_{}", i + 1), (*id).to_owned()),
                    (format!("FLOCKER_CONTAINER_VOLUME_PATH_{}", i + 1), (*path).to_owned()),
                ]
            })
            .collect(),
    };
    with_variables(fixture("command-task"), &variables)
}

/// `config` with every FLOCKER variable replaced by `variables`, wherever Mesos puts the task's
/// environment (the command, the task, the executor).
pub fn with_variables(mut config: Value, variables: &[(String, String)]) -> Value {
    for pointer in [
        "/command_info/environment/variables",
        "/task_info/command/environment/variables",
        "/executor_info/command/environment/variables",
    ] {
        if let Some(Value::Array(list)) = config.pointer_mut(pointer) {
            list.retain(|v| !v["name"].as_str().unwrap_or_default().starts_with("FLOCKER_"));
            list.extend(
                variables
                    .iter()
                    .map(|(name, value)| json!({"name": name, "type": "VALUE", "value": value})),
            );
        }
    }
    config
}

/// A fresh top-level container id.
pub fn container_id() -> Value {
    json!({"value": uuid::Uuid::new_v4().to_string()})
}
