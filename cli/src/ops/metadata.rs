//! `--metadata name=orders-db,team=shop`, as Flocker's `flockerctl create` took it.

use flocker_api::Metadata;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error(
        "metadata '{0}' is not key=value (pairs are separated by commas: name=orders-db,team=shop)"
    )]
    NotAPair(String),
    #[error("metadata key '{0}' is given twice")]
    Repeated(String),
}

/// The pairs of `a=b,c=d`; a value may contain `=`, not `,`.
pub fn parse(text: &str) -> Result<Metadata, MetadataError> {
    let mut metadata = Metadata::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| MetadataError::NotAPair(pair.to_owned()))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(MetadataError::NotAPair(pair.to_owned()));
        }
        if metadata.insert(key.to_owned(), value.trim().to_owned()).is_some() {
            return Err(MetadataError::Repeated(key.to_owned()));
        }
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_separated_by_commas() {
        let metadata = parse("name=orders-db, team=shop,url=a=b").unwrap();
        assert_eq!(metadata["name"], "orders-db");
        assert_eq!(metadata["team"], "shop");
        assert_eq!(metadata["url"], "a=b");
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn what_is_not_a_pair_is_refused() {
        assert_eq!(parse("name"), Err(MetadataError::NotAPair("name".into())));
        assert_eq!(parse("=x"), Err(MetadataError::NotAPair("=x".into())));
        assert_eq!(parse("a=1,a=2"), Err(MetadataError::Repeated("a".into())));
    }
}
