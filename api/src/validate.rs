//! What a server accepts: the schema rules of the Flocker v1 API, checked on decoded JSON.
//!
//! Each function takes a request body and returns either the typed request or every problem
//! found, worded after the Python `jsonschema` messages Flocker answered with (clients must not
//! parse them; people read them).

use serde_json::{Map, Value};

use crate::ids::{DatasetId, NodeUuid, is_v4_pattern};
use crate::types::{AcquireLease, CreateDataset, Metadata, UpdateDataset};

/// The smallest `maximum_size` the API accepts: 64 MiB.
pub const MINIMUM_MAXIMUM_SIZE: u64 = 64 * 1024 * 1024;
/// `maximum_size` must be a multiple of this.
pub const MAXIMUM_SIZE_MULTIPLE: u64 = 1024;
/// The size agents use when a dataset has none: 75 GiB, as Flocker's agents did.
pub const DEFAULT_MAXIMUM_SIZE: u64 = 75 * 1024 * 1024 * 1024;
/// At most this many metadata keys.
pub const MAXIMUM_METADATA_KEYS: usize = 16;
/// Metadata keys are 1 to this many characters.
pub const MAXIMUM_METADATA_KEY_LENGTH: usize = 256;
/// Metadata values are at most this many characters.
pub const MAXIMUM_METADATA_VALUE_LENGTH: usize = 256;

/// Every way a body broke the schema, one message each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaErrors(pub Vec<String>);

/// Checks a create body (`POST /v1/configuration/datasets`).
pub fn create_dataset(body: &Value) -> Result<CreateDataset, SchemaErrors> {
    let mut check = Checker::object(body)?;
    check.only_keys(&["primary", "dataset_id", "maximum_size", "metadata", "deleted"]);
    if check.fields.contains_key("deleted") {
        check.fail("'deleted' cannot be set when creating a dataset".to_owned());
    }
    let primary = check.required("primary", v4_node);
    let dataset_id = check.optional("dataset_id", v4_dataset);
    let maximum_size = check.optional("maximum_size", maximum_size).flatten();
    let metadata = check.optional("metadata", metadata);
    check.finish()?;
    Ok(CreateDataset {
        primary: primary.ok_or_else(unreachable_missing)?,
        dataset_id,
        maximum_size,
        metadata: metadata.unwrap_or_default(),
    })
}

/// Checks an update body (`POST /v1/configuration/datasets/<id>`): `primary` and nothing else.
pub fn update_dataset(body: &Value) -> Result<UpdateDataset, SchemaErrors> {
    let mut check = Checker::object(body)?;
    check.only_keys(&["primary"]);
    let primary = check.optional("primary", v4_node);
    check.finish()?;
    Ok(UpdateDataset { primary })
}

/// Checks a lease body (`POST /v1/configuration/leases`): all three keys, nothing else.
pub fn acquire_lease(body: &Value) -> Result<AcquireLease, SchemaErrors> {
    let mut check = Checker::object(body)?;
    check.only_keys(&["dataset_id", "node_uuid", "expires"]);
    let dataset_id = check.required("dataset_id", any_version_dataset);
    let node_uuid = check.required("node_uuid", v4_node);
    let expires = check.required("expires", expires);
    check.finish()?;
    let missing = unreachable_missing;
    Ok(AcquireLease {
        dataset_id: dataset_id.ok_or_else(missing)?,
        node_uuid: node_uuid.ok_or_else(missing)?,
        expires: expires.ok_or_else(missing)?,
    })
}

/// `finish` already failed for any missing required key; this only keeps the code free of
/// `unwrap`.
fn unreachable_missing() -> SchemaErrors {
    SchemaErrors(vec!["a required property is missing".to_owned()])
}

/// Walks one JSON object, collecting every problem rather than stopping at the first.
struct Checker<'a> {
    fields: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl<'a> Checker<'a> {
    fn object(body: &'a Value) -> Result<Self, SchemaErrors> {
        match body {
            Value::Object(fields) => Ok(Self { fields, errors: Vec::new() }),
            other => Err(SchemaErrors(vec![format!("{other} is not of type 'object'")])),
        }
    }

    fn fail(&mut self, message: String) {
        self.errors.push(message);
    }

    fn only_keys(&mut self, allowed: &[&str]) {
        let unexpected: Vec<String> = self
            .fields
            .keys()
            .filter(|key| !allowed.contains(&key.as_str()))
            .map(|key| format!("'{key}'"))
            .collect();
        if !unexpected.is_empty() {
            let verb = if unexpected.len() == 1 { "was" } else { "were" };
            self.fail(format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                unexpected.join(", ")
            ));
        }
    }

    fn required<T>(&mut self, key: &str, rule: fn(&Value) -> Result<T, String>) -> Option<T> {
        if !self.fields.contains_key(key) {
            self.fail(format!("'{key}' is a required property"));
        }
        self.optional(key, rule)
    }

    fn optional<T>(&mut self, key: &str, rule: fn(&Value) -> Result<T, String>) -> Option<T> {
        let value = self.fields.get(key)?;
        rule(value).map_err(|problem| self.fail(format!("{key}: {problem}"))).ok()
    }

    fn finish(self) -> Result<(), SchemaErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(SchemaErrors(self.errors)) }
    }
}

fn string(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| format!("{value} is not of type 'string'"))
}

fn v4_uuid(value: &Value) -> Result<&str, String> {
    let text = string(value)?;
    if is_v4_pattern(text) {
        Ok(text)
    } else {
        Err(format!("'{text}' does not match the version 4 UUID pattern"))
    }
}

fn v4_node(value: &Value) -> Result<NodeUuid, String> {
    v4_uuid(value)?.parse().map_err(|e| format!("{e}"))
}

fn v4_dataset(value: &Value) -> Result<DatasetId, String> {
    v4_uuid(value)?.parse().map_err(|e| format!("{e}"))
}

/// Lease ids are only required to be 36 characters long by Flocker's schema, and any UUID
/// version is accepted; a 36-character non-UUID is refused here rather than failing later.
fn any_version_dataset(value: &Value) -> Result<DatasetId, String> {
    let text = string(value)?;
    if text.chars().count() != 36 {
        return Err(format!("'{text}' is not 36 characters long"));
    }
    text.parse().map_err(|e| format!("{e}"))
}

fn maximum_size(value: &Value) -> Result<Option<u64>, String> {
    if value.is_null() {
        return Ok(None);
    }
    if let Some(negative) = value.as_i64().filter(|n| *n < 0) {
        return Err(format!("{negative} is less than the minimum of {MINIMUM_MAXIMUM_SIZE}"));
    }
    let Some(size) = value.as_u64() else {
        return Err(format!("{value} is not of type 'integer', 'null'"));
    };
    if size < MINIMUM_MAXIMUM_SIZE {
        Err(format!("{size} is less than the minimum of {MINIMUM_MAXIMUM_SIZE}"))
    } else if size % MAXIMUM_SIZE_MULTIPLE != 0 {
        Err(format!("{size} is not a multiple of {MAXIMUM_SIZE_MULTIPLE}"))
    } else {
        Ok(Some(size))
    }
}

fn metadata(value: &Value) -> Result<Metadata, String> {
    let Value::Object(pairs) = value else {
        return Err(format!("{value} is not of type 'object'"));
    };
    if pairs.len() > MAXIMUM_METADATA_KEYS {
        return Err(format!(
            "{} keys is more than the maximum of {MAXIMUM_METADATA_KEYS}",
            pairs.len()
        ));
    }
    pairs.iter().map(|(key, value)| Ok((metadata_key(key)?, metadata_value(key, value)?))).collect()
}

fn metadata_key(key: &str) -> Result<String, String> {
    let length = key.chars().count();
    if length == 0 || length > MAXIMUM_METADATA_KEY_LENGTH || key.contains('\n') {
        Err(format!(
            "key '{key}' must be 1 to {MAXIMUM_METADATA_KEY_LENGTH} characters on one line"
        ))
    } else {
        Ok(key.to_owned())
    }
}

fn metadata_value(key: &str, value: &Value) -> Result<String, String> {
    let text = value.as_str().ok_or_else(|| format!("'{key}': {value} is not of type 'string'"))?;
    if text.chars().count() > MAXIMUM_METADATA_VALUE_LENGTH {
        Err(format!("'{key}': value is longer than {MAXIMUM_METADATA_VALUE_LENGTH} characters"))
    } else {
        Ok(text.to_owned())
    }
}

fn expires(value: &Value) -> Result<Option<f64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| format!("{n} is out of range")),
        other => Err(format!("{other} is not of type 'number', 'null'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NODE: &str = "6a1e7f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b";

    fn create_errors(body: Value) -> Vec<String> {
        create_dataset(&body).expect_err("body should be refused").0
    }

    #[test]
    fn a_create_needs_primary_and_nothing_unknown() {
        assert_eq!(create_errors(json!({})), ["'primary' is a required property"]);
        let errors = create_errors(json!({"primary": NODE, "junk": 1}));
        assert_eq!(errors, ["Additional properties are not allowed ('junk' was unexpected)"]);
    }

    #[test]
    fn maximum_size_is_at_least_64_mib_and_a_multiple_of_1024() {
        let size = |s: Value| create_dataset(&json!({"primary": NODE, "maximum_size": s}));
        assert!(size(json!(67108863)).is_err());
        assert_eq!(size(json!(67108864)).unwrap().maximum_size, Some(67108864));
        assert!(size(json!(67108865)).is_err());
        assert!(size(json!(1.5e9)).is_err());
        assert!(size(json!(true)).is_err());
        assert!(size(json!(-1)).is_err());
        assert_eq!(size(json!(null)).unwrap().maximum_size, None);
    }

    #[test]
    fn metadata_has_at_most_16_short_string_pairs() {
        let with = |m: Value| create_dataset(&json!({"primary": NODE, "metadata": m}));
        let pairs =
            |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect());
        assert!(with(pairs(16)).is_ok());
        assert!(with(pairs(17)).is_err());
        assert!(with(json!({"k": "x".repeat(256)})).is_ok());
        assert!(with(json!({"k": "x".repeat(257)})).is_err());
        assert!(with(json!({"k": 1})).is_err());
        assert!(with(json!({"": "v"})).is_err());
        assert!(with(json!({"k".repeat(256): "v"})).is_ok());
        assert!(with(json!({"k".repeat(257): "v"})).is_err());
    }

    #[test]
    fn ids_in_a_create_must_be_version_4() {
        assert!(create_dataset(&json!({"primary": "192.0.2.1"})).is_err());
        let v1 = "0d7d8c1e-5b6a-1c1f-9a57-3e1b2c4d5e6f";
        assert!(create_dataset(&json!({"primary": NODE, "dataset_id": v1})).is_err());
    }

    #[test]
    fn deleted_cannot_be_given_on_create() {
        assert!(create_dataset(&json!({"primary": NODE, "deleted": false})).is_err());
    }

    #[test]
    fn an_update_takes_only_primary() {
        assert_eq!(update_dataset(&json!({})).unwrap().primary, None);
        assert!(update_dataset(&json!({"maximum_size": 67108864})).is_err());
        assert!(update_dataset(&json!({"metadata": {}})).is_err());
        assert!(update_dataset(&json!([])).is_err());
    }

    #[test]
    fn a_lease_needs_all_three_keys() {
        let d = "0d7d8c1e-5b6a-1c1f-9a57-3e1b2c4d5e6f"; // any UUID version will do for a lease
        let ok =
            acquire_lease(&json!({"dataset_id": d, "node_uuid": NODE, "expires": 30})).unwrap();
        assert_eq!(ok.expires, Some(30.0));
        assert!(acquire_lease(&json!({"dataset_id": d, "node_uuid": NODE})).is_err());
        assert!(acquire_lease(&json!({"dataset_id": d, "node_uuid": d, "expires": null})).is_err());
        let not_uuid = "x".repeat(36);
        let bad = json!({"dataset_id": not_uuid, "node_uuid": NODE, "expires": null});
        assert!(acquire_lease(&bad).is_err());
        let bool_expiry = json!({"dataset_id": d, "node_uuid": NODE, "expires": true});
        assert!(acquire_lease(&bool_expiry).is_err());
    }
}
