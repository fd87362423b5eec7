//! Identifiers of the Flocker v1 API. Each is its own type, so that a dataset id can never be
//! passed where a node UUID is expected; all print as lowercase hyphenated UUIDs, the form the
//! API always answers with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The error of parsing an identifier: the text was not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a {what} UUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
pub struct InvalidId {
    /// What was being parsed: "dataset", "node", "era".
    pub what: &'static str,
    /// The offending text.
    pub text: String,
}

macro_rules! uuid_identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub const fn new(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// A fresh random (version 4) identifier.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// Parses the 36-character hyphenated form, in either case.
            fn from_str(text: &str) -> Result<Self, InvalidId> {
                parse_hyphenated(text)
                    .map(Self)
                    .ok_or_else(|| InvalidId { what: $what, text: text.to_owned() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

uuid_identifier!(
    /// A dataset's `dataset_id`.
    DatasetId,
    "dataset"
);
uuid_identifier!(
    /// A node's UUID: the CN of its `node.crt` without the `node-` prefix.
    NodeUuid,
    "node"
);
uuid_identifier!(
    /// A node's era: its kernel boot id, new on every boot.
    Era,
    "era"
);

/// Parses exactly the 36-character hyphenated form (uuid's own parser also takes braces, URNs
/// and the bare 32-digit form, which the API does not).
fn parse_hyphenated(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// Whether `text` matches the API schema's UUID pattern: 36 characters, version 4, RFC 4122
/// variant, either case (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`).
pub fn is_v4_pattern(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            14 => *b == b'4',
            19 => matches!(b, b'8' | b'9' | b'a' | b'b' | b'A' | b'B'),
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_lowercase_whatever_case_they_were_parsed_in() {
        let id: DatasetId = "0D7D8C1E-5B6A-4C1F-9A57-3E1B2C4D5E6F".parse().unwrap();
        assert_eq!(id.to_string(), "0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f");
    }

    #[test]
    fn only_the_hyphenated_form_parses() {
        assert!("0d7d8c1e5b6a4c1f9a573e1b2c4d5e6f".parse::<NodeUuid>().is_err());
        assert!("{0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f}".parse::<NodeUuid>().is_err());
        assert!("192.0.2.1".parse::<NodeUuid>().is_err());
    }

    #[test]
    fn the_v4_pattern_checks_version_and_variant() {
        assert!(is_v4_pattern("0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6f"));
        assert!(is_v4_pattern("0D7D8C1E-5B6A-4C1F-BA57-3E1B2C4D5E6F"));
        // version 1
        assert!(!is_v4_pattern("0d7d8c1e-5b6a-1c1f-9a57-3e1b2c4d5e6f"));
        // variant 0xc
        assert!(!is_v4_pattern("0d7d8c1e-5b6a-4c1f-ca57-3e1b2c4d5e6f"));
        assert!(!is_v4_pattern("0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6"));
        assert!(!is_v4_pattern("0d7d8c1e-5b6a-4c1f-9a57-3e1b2c4d5e6g"));
    }
}
