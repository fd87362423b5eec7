//! Which dataset or node an operator means: a prefix of its UUID, as Flocker's tools took, or
//! an exact name (a dataset's `name` metadata, a node's address), which is what people know.

use std::fmt;

/// What a prefix is looked up among, for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dataset,
    Node,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Self::Dataset => "dataset",
            Self::Node => "node",
        }
    }

    fn listing(self) -> &'static str {
        match self {
            Self::Dataset => "flockerctl list",
            Self::Node => "flockerctl list-nodes",
        }
    }
}

/// One thing a prefix may mean: its UUID and the name it may also be called by.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    pub id: String,
    pub name: Option<String>,
    pub value: T,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("give a {} id (or a prefix of one)", .0.noun())]
    Empty(Kind),
    #[error("no {} has an id starting with '{prefix}' or is called that; `{}` shows them", kind.noun(), kind.listing())]
    Unknown { kind: Kind, prefix: String },
    #[error("'{prefix}' could be any of {} {}s ({}): give more of the id", .matches.len(), kind.noun(), Shortlist(.matches))]
    Ambiguous { kind: Kind, prefix: String, matches: Vec<String> },
}

/// The one candidate `prefix` means: an id starting with it (case does not matter: UUIDs are
/// shown in lower case), else the one whose name is exactly it.
pub fn resolve<T: Clone>(
    kind: Kind,
    prefix: &str,
    candidates: &[Candidate<T>],
) -> Result<T, PrefixError> {
    let prefix = prefix.trim();
    if prefix.is_empty() {
        return Err(PrefixError::Empty(kind));
    }
    let lower = prefix.to_ascii_lowercase();
    let by_id: Vec<&Candidate<T>> =
        candidates.iter().filter(|c| c.id.starts_with(&lower)).collect();
    let matches = if by_id.is_empty() {
        candidates.iter().filter(|c| c.name.as_deref() == Some(prefix)).collect()
    } else {
        by_id
    };
    match matches.as_slice() {
        [one] => Ok(one.value.clone()),
        [] => Err(PrefixError::Unknown { kind, prefix: prefix.to_owned() }),
        many => Err(PrefixError::Ambiguous {
            kind,
            prefix: prefix.to_owned(),
            matches: many.iter().map(|c| c.id.clone()).collect(),
        }),
    }
}

/// "a, b, c and 4 more".
struct Shortlist<'a>(&'a [String]);

impl fmt::Display for Shortlist<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 3;
        let shown: Vec<&str> = self.0.iter().take(SHOWN).map(String::as_str).collect();
        write!(f, "{}", shown.join(", "))?;
        match self.0.len().saturating_sub(SHOWN) {
            0 => Ok(()),
            more => write!(f, " and {more} more"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate<u8>> {
        [("3f2a0c1e-0000", Some("webapp-data"), 1), ("3f9b7d2e-0000", None, 2), ("a1b2", None, 3)]
            .into_iter()
            .map(|(id, name, value)| Candidate { id: id.into(), name: name.map(Into::into), value })
            .collect()
    }

    #[test]
    fn a_unique_prefix_names_its_candidate_whatever_its_case() {
        assert_eq!(resolve(Kind::Dataset, "3F2", &candidates()), Ok(1));
        assert_eq!(resolve(Kind::Dataset, "a1b2", &candidates()), Ok(3));
    }

    #[test]
    fn a_name_is_used_only_when_no_id_starts_with_it() {
        assert_eq!(resolve(Kind::Dataset, "webapp-data", &candidates()), Ok(1));
        let named_like_an_id = vec![
            Candidate { id: "a1".into(), name: None, value: 1 },
            Candidate { id: "ff".into(), name: Some("a1".into()), value: 2 },
        ];
        assert_eq!(resolve(Kind::Dataset, "a1", &named_like_an_id), Ok(1));
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        let error = resolve(Kind::Dataset, "3f", &candidates()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "'3f' could be any of 2 datasets (3f2a0c1e-0000, 3f9b7d2e-0000): give more of the id"
        );
    }

    #[test]
    fn an_unknown_prefix_says_where_to_look() {
        let error = resolve(Kind::Node, "zz", &candidates()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no node has an id starting with 'zz' or is called that; `flockerctl list-nodes` shows them"
        );
    }

    #[test]
    fn an_empty_prefix_is_refused_rather_than_matching_everything() {
        assert_eq!(
            resolve(Kind::Dataset, "  ", &candidates()),
            Err(PrefixError::Empty(Kind::Dataset))
        );
    }

    #[test]
    fn a_long_shortlist_is_cut() {
        let many: Vec<String> = (0..5).map(|i| format!("id{i}")).collect();
        assert_eq!(Shortlist(&many).to_string(), "id0, id1, id2 and 2 more");
    }
}
