//! Bounds on what clients may make the service keep, so that no client can grow it without
//! limit: how many datasets, how many bytes of metadata in all, how large a dataset may say it
//! is, how long a lease may last. Each has a flag; each refusal is a 400 whose `description`
//! names the bound and the flag. Pure: the service keeps the [`Usage`] and asks before a change.

use flocker_api::{AcquireLease, CreateDataset, Metadata};

use crate::error::ApiError;
use crate::model::{Change, Configuration};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Datasets the configuration may hold, tombstones included.
    pub max_datasets: usize,
    /// Bytes of metadata (keys and values) of all datasets together.
    pub max_metadata_bytes: usize,
    /// The largest `maximum_size` a dataset may have.
    pub max_dataset_size: u64,
    /// The longest a lease may be asked to last, in seconds.
    pub max_lease_seconds: f64,
}

/// Enough for any cluster we know of, and small enough that a full configuration stays well
/// within a control node's memory (10,000 datasets with the largest metadata a dataset may
/// carry once drove it to 1.8 GiB).
impl Default for Limits {
    fn default() -> Self {
        Self {
            max_datasets: 100_000,
            max_metadata_bytes: 64 << 20,
            max_dataset_size: 1 << 50,
            max_lease_seconds: 365.0 * 24.0 * 3600.0,
        }
    }
}

/// What the configuration uses of the limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub datasets: usize,
    pub metadata_bytes: usize,
}

impl Usage {
    pub fn of(configuration: &Configuration) -> Self {
        let metadata_bytes = configuration.datasets.values().map(|d| bytes_of(&d.metadata)).sum();
        Self { datasets: configuration.datasets.len(), metadata_bytes }
    }

    /// Counts what `change` adds.
    pub fn add(&mut self, change: &Change) {
        if let Change::CreateDataset { dataset } = change {
            self.datasets += 1;
            self.metadata_bytes += bytes_of(&dataset.metadata);
        }
    }
}

fn bytes_of(metadata: &Metadata) -> usize {
    metadata.iter().map(|(key, value)| key.len() + value.len()).sum()
}

impl Limits {
    /// Whether a create fits.
    pub fn check_create(&self, usage: &Usage, request: &CreateDataset) -> Result<(), ApiError> {
        if usage.datasets >= self.max_datasets {
            return Err(refused(format!(
                "The cluster has {} datasets, the most this control service keeps \
                 (--max-datasets); destroyed datasets count too.",
                usage.datasets
            )));
        }
        let adding = bytes_of(&request.metadata);
        if usage.metadata_bytes + adding > self.max_metadata_bytes {
            return Err(refused(format!(
                "The datasets' metadata would take {} bytes, more than the {} this control \
                 service keeps (--max-metadata-bytes).",
                usage.metadata_bytes + adding,
                self.max_metadata_bytes
            )));
        }
        match request.maximum_size {
            Some(size) if size > self.max_dataset_size => Err(refused(format!(
                "maximum_size {size} is larger than {}, the largest this control service \
                 accepts (--max-dataset-size).",
                self.max_dataset_size
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a lease request's `expires` is a sane number of seconds.
    pub fn check_lease(&self, request: &AcquireLease) -> Result<(), ApiError> {
        let Some(seconds) = request.expires else { return Ok(()) };
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(refused(format!(
                "expires is {seconds}: give a number of seconds from 0, or null for a lease that \
                 lasts until released."
            )));
        }
        if seconds > self.max_lease_seconds {
            return Err(refused(format!(
                "expires is {seconds} seconds, longer than the {} this control service accepts \
                 (--max-lease-seconds); give null for a lease that lasts until released.",
                self.max_lease_seconds
            )));
        }
        Ok(())
    }
}

fn refused(reason: String) -> ApiError {
    ApiError::OverLimit { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flocker_api::{DatasetId, NodeUuid};

    fn create(metadata: &[(&str, &str)], maximum_size: Option<u64>) -> CreateDataset {
        CreateDataset {
            primary: NodeUuid::random(),
            dataset_id: None,
            maximum_size,
            metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn lease(expires: Option<f64>) -> AcquireLease {
        AcquireLease { dataset_id: DatasetId::random(), node_uuid: NodeUuid::random(), expires }
    }

    #[test]
    fn a_create_fits_the_count_the_metadata_and_the_size() {
        let limits = Limits { max_datasets: 2, max_metadata_bytes: 10, ..Limits::default() };
        let usage = Usage { datasets: 1, metadata_bytes: 4 };
        assert!(limits.check_create(&usage, &create(&[("ab", "cdef")], Some(1 << 30))).is_ok());
        let full = Usage { datasets: 2, metadata_bytes: 0 };
        let refused = limits.check_create(&full, &create(&[], None)).unwrap_err().to_string();
        assert!(refused.contains("--max-datasets"), "{refused}");
        let refused = limits.check_create(&usage, &create(&[("abc", "defg")], None)).unwrap_err();
        assert!(refused.to_string().contains("11 bytes"), "{refused}");
        let absurd = create(&[], Some(1 << 63));
        let refused = Limits::default().check_create(&usage, &absurd).unwrap_err();
        assert!(refused.to_string().contains("--max-dataset-size"), "{refused}");
        assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_lease_lasts_from_0_seconds_to_the_maximum_or_forever() {
        let limits = Limits::default();
        for fine in [None, Some(0.0), Some(30.0), Some(limits.max_lease_seconds)] {
            assert!(limits.check_lease(&lease(fine)).is_ok(), "{fine:?}");
        }
        for bad in [-1.0, -0.001, f64::NAN, f64::INFINITY, limits.max_lease_seconds + 1.0] {
            assert!(limits.check_lease(&lease(Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_counts_datasets_and_their_metadata_bytes() {
        let mut usage = Usage::default();
        let request = create(&[("name", "db")], None);
        let dataset = Configuration::default().plan_create(request, DatasetId::random()).unwrap();
        usage.add(&Change::CreateDataset { dataset });
        assert_eq!(usage, Usage { datasets: 1, metadata_bytes: 6 });
        usage.add(&Change::ReleaseLeases { dataset_ids: vec![] });
        assert_eq!(usage.datasets, 1);
    }
}
