//! The query strings of our lookups, an extension of the v1 API: one dataset's state, one
//! name's datasets, one dataset's lease. Flocker 1.x ignored every query, and clients of ours
//! filter the answer again, so a lookup answers exactly what the full list would, filtered.
//! Anything else than the one parameter an endpoint takes, given once, is a 400: a typo must
//! not quietly turn a lookup into the whole cluster's list.

use flocker_api::DatasetId;
use flocker_api::validate::MAXIMUM_METADATA_VALUE_LENGTH;

use crate::error::ApiError;

/// The value of `key`, the one parameter `raw` may hold; `None` without a query.
pub fn lookup(raw: Option<&str>, key: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw.filter(|raw| !raw.is_empty()) else { return Ok(None) };
    let mut value = None;
    for (name, given) in form_urlencoded::parse(raw.as_bytes()) {
        if name != key {
            return Err(bad(format!("'{name}' is not a parameter here; '{key}' is")));
        }
        if value.replace(given.into_owned()).is_some() {
            return Err(bad(format!("'{key}' is given more than once")));
        }
    }
    Ok(value)
}

/// A name to look up: no longer than a metadata value may be.
pub fn name(raw: Option<&str>, key: &str) -> Result<Option<String>, ApiError> {
    let name = lookup(raw, key)?;
    match name {
        Some(name) if name.chars().count() > MAXIMUM_METADATA_VALUE_LENGTH => Err(bad(format!(
            "'{key}' is longer than a metadata value may be ({MAXIMUM_METADATA_VALUE_LENGTH} \
             characters)"
        ))),
        name => Ok(name),
    }
}

/// A dataset id to look up.
pub fn dataset_id(raw: Option<&str>, key: &str) -> Result<Option<DatasetId>, ApiError> {
    lookup(raw, key)?
        .map(|id| id.parse().map_err(|_| bad(format!("'{key}' is not a UUID"))))
        .transpose()
}

fn bad(problem: String) -> ApiError {
    ApiError::BadQuery { problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_takes_its_one_parameter_once_and_nothing_else() {
        assert_eq!(lookup(None, "name"), Ok(None));
        assert_eq!(lookup(Some(""), "name"), Ok(None));
        assert_eq!(lookup(Some("name=a%20b%2Fc"), "name"), Ok(Some("a b/c".into())));
        assert_eq!(lookup(Some("name="), "name"), Ok(Some(String::new())));
        for refused in ["nme=a", "name=a&name=b", "name=a&x=1", "dataset_id=x"] {
            assert!(
                matches!(lookup(Some(refused), "name"), Err(ApiError::BadQuery { .. })),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_name_longer_than_a_metadata_value_and_an_id_that_is_no_uuid_are_refused() {
        let long = format!("name={}", "x".repeat(MAXIMUM_METADATA_VALUE_LENGTH + 1));
        assert!(matches!(name(Some(&long), "name"), Err(ApiError::BadQuery { .. })));
        let longest = format!("name={}", "é".repeat(MAXIMUM_METADATA_VALUE_LENGTH));
        assert!(name(Some(&longest), "name").is_ok());
        assert!(matches!(
            dataset_id(Some("dataset_id=x"), "dataset_id"),
            Err(ApiError::BadQuery { .. })
        ));
        let id = DatasetId::random();
        assert_eq!(dataset_id(Some(&format!("dataset_id={id}")), "dataset_id"), Ok(Some(id)));
    }
}
