//! Docker's volume plugin protocol (v1), as the daemon speaks it: a POST of JSON to
//! `/Plugin.Activate` and `/VolumeDriver.<Call>`, an answer of JSON with an `Err` that is empty
//! on success. Pure: the requests, the answers, and the reading of `Create`'s options.

use std::collections::BTreeMap;

use flocker_isolator_core::request::FlockerId;
use serde::{Deserialize, Serialize};

/// What Docker sends: a volume's name, with a mount's ID (Docker 1.12+) and `Create`'s options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "ID")]
    pub id: Option<String>,
    #[serde(default)]
    pub opts: Option<BTreeMap<String, String>>,
}

/// A volume as `Get` and `List` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub mountpoint: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, String>,
}

/// The options `docker volume create -o` may give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// `size`: bytes.
    pub maximum_size: Option<u64>,
    /// `profile`: Flocker's storage profile, recorded in the dataset's metadata.
    pub profile: Option<String>,
}

/// The smallest dataset the control service takes.
const SMALLEST: u64 = 64 << 20;

/// Reads `Create`'s options; an unknown one, a size that is not one or a profile that cannot
/// be recorded is refused, never ignored.
pub fn create_options(opts: Option<&BTreeMap<String, String>>) -> Result<CreateOptions, String> {
    let mut options = CreateOptions::default();
    for (key, value) in opts.into_iter().flatten() {
        match key.as_str() {
            "size" => options.maximum_size = Some(size(value)?),
            "profile" => options.profile = Some(profile(value)?),
            other => {
                return Err(format!(
                    "unknown option '{other}' (this driver takes size and profile)"
                ));
            }
        }
    }
    Ok(options)
}

/// `10G`, `10g`, `10GiB`, `512m`, `1t`, or bytes: binary units, as Flocker's plugin read them.
pub fn size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "size '{text}' is not a size: a whole number with k, m, g or t (binary: 1g = 1024m), \
             like 10G"
        )
    };
    let lower = text.trim().to_ascii_lowercase();
    let unit_start = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_start);
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let bytes = number.checked_mul(1 << shift).ok_or_else(bad)?;
    if bytes < SMALLEST || bytes % 1024 != 0 {
        return Err(format!(
            "size '{text}' is {bytes} bytes: a volume holds at least 64 MiB, in whole KiB"
        ));
    }
    Ok(bytes)
}

fn profile(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 256 || text.chars().any(char::is_control) {
        return Err("profile must be 1 to 256 characters, without control characters".into());
    }
    Ok(text.to_owned())
}

/// A volume's name as a FLOCKER_ID: the rules Mesos tasks follow, so both name volumes alike.
pub fn name(request: &Request) -> Result<FlockerId, String> {
    FlockerId::new(request.name.clone()).map_err(|problem| format!("volume name: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_in_the_old_plugins_spellings() {
        assert_eq!(size("10G"), Ok(10 << 30));
        assert_eq!(size("10g"), Ok(10 << 30));
        assert_eq!(size("10GiB"), Ok(10 << 30));
        assert_eq!(size("512mb"), Ok(512 << 20));
        assert_eq!(size("1t"), Ok(1 << 40));
        assert_eq!(size("67108864"), Ok(64 << 20));
        for bad in ["", "G", "1.5G", "-1G", "10GB!", "10x", "99999999999999T"] {
            assert!(size(bad).is_err(), "{bad}");
        }
        assert!(size("1m").unwrap_err().contains("at least 64 MiB"));
        assert!(size("67108865").unwrap_err().contains("whole KiB"));
    }

    #[test]
    fn options_are_size_and_profile_and_nothing_else() {
        let opts = BTreeMap::from([
            ("size".to_owned(), "1G".to_owned()),
            ("profile".to_owned(), "gold".to_owned()),
        ]);
        let options = create_options(Some(&opts)).unwrap();
        assert_eq!(options.maximum_size, Some(1 << 30));
        assert_eq!(options.profile.as_deref(), Some("gold"));
        assert_eq!(create_options(None), Ok(CreateOptions::default()));
        let typo = BTreeMap::from([("sise".to_owned(), "1G".to_owned())]);
        assert!(create_options(Some(&typo)).unwrap_err().contains("unknown option 'sise'"));
        let escape = BTreeMap::from([("profile".to_owned(), "a\u{1b}[2J".to_owned())]);
        assert!(create_options(Some(&escape)).is_err());
    }

    #[test]
    fn a_request_is_read_as_docker_sends_it() {
        let request: Request =
            serde_json::from_str(r#"{"Name": "web", "ID": "abc", "Opts": {"size": "1G"}}"#)
                .unwrap();
        assert_eq!(request.name, "web");
        assert_eq!(request.id.as_deref(), Some("abc"));
        assert!(name(&Request { name: "../etc".into(), ..Default::default() }).is_err());
    }
}
