//! What Mesos hands the isolator for a task of the Marathon app `/webapp`: the ContainerConfig
//! of a command task (the fixture the system suite uses, captured as the shim serialises it),
//! with the app's FLOCKER variables, and a fresh ContainerID.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

/// The app's volume, as its Marathon definition names it.
pub const FLOCKER_ID: &str = "webapp-data";

/// The ContainerConfig of a command task of `/webapp`, as the shim hands it over.
const COMMAND_TASK: &str =
    include_str!("../../../tests/fixtures/container-config/command-task.json");

/// Where Mesos puts a task's environment in a ContainerConfig.
const ENVIRONMENTS: [&str; 3] = [
    "/command_info/environment/variables",
    "/task_info/command/environment/variables",
    "/executor_info/command/environment/variables",
];

/// One container of the app, as one `prepare` sees it.
#[derive(Debug, Clone)]
pub struct Container {
    /// A Mesos ContainerID's value: a UUID, new for every launch.
    pub id: String,
    pub config: Value,
}

impl Container {
    /// A new container asking for the volume `flocker_id` at `volume_path`, its sandbox under
    /// `sandboxes`.
    pub fn new(flocker_id: &str, volume_path: &Path, sandboxes: &Path) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut config: Value =
            serde_json::from_str(COMMAND_TASK).context("the embedded ContainerConfig")?;
        let variables = [
            ("FLOCKER_ID", flocker_id.to_owned()),
            ("FLOCKER_CONTAINER_VOLUME_PATH", volume_path.to_string_lossy().into_owned()),
        ];
        for pointer in ENVIRONMENTS {
            if let Some(Value::Array(list)) = config.pointer_mut(pointer) {
                list.retain(|v| !v["name"].as_str().unwrap_or_default().starts_with("FLOCKER_"));
                list.extend(variables.iter().map(|(name, value)| variable(name, value)));
            }
        }
        config["directory"] = json!(sandboxes.join(&id));
        Ok(Self { id, config })
    }

    /// The ContainerID as JSON.
    pub fn id_json(&self) -> String {
        json!({ "value": self.id }).to_string()
    }

    /// The task's environment, as Mesos gives it to the task's process.
    pub fn environment(&self) -> Vec<(String, String)> {
        let variables = self.config.pointer(ENVIRONMENTS[1]).and_then(Value::as_array);
        variables
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v["value"].as_str()?.to_owned())))
            .collect()
    }

    /// The sandbox directory Mesos made for the container.
    pub fn sandbox(&self) -> &str {
        self.config["directory"].as_str().unwrap_or_default()
    }
}

fn variable(name: &str, value: &str) -> Value {
    json!({ "name": name, "type": "VALUE", "value": value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_asks_for_the_volume_at_the_given_path_everywhere_mesos_looks() {
        let container =
            Container::new("webapp-data", Path::new("/w/node-a/tmp/data"), Path::new("/w/sb"))
                .unwrap();
        let environment = container.environment();
        let flocker: Vec<_> =
            environment.iter().filter(|(n, _)| n.starts_with("FLOCKER_")).collect();
        assert_eq!(flocker.len(), 2, "{flocker:?}");
        assert!(environment.contains(&("FLOCKER_ID".into(), "webapp-data".into())));
        let text = container.config.to_string();
        assert_eq!(text.matches("/w/node-a/tmp/data").count(), 3, "{text}");
        assert!(!text.contains("\"/tmp/data\""), "{text}");
        assert_eq!(container.sandbox(), format!("/w/sb/{}", container.id));
        assert!(environment.contains(&("MARATHON_APP_ID".into(), "/webapp".into())));
    }
}
