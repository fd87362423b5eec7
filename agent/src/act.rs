//! Carrying out one step of the plan on the backend.

use std::path::Path;

use flocker_api::DatasetId;

use crate::backend::{Attachment, Backend, BackendError};
use crate::calculate::Step;
use crate::discover::{Found, mount_point};

/// What a step came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It changed something: look again at once.
    Progressed,
    /// Nothing to do now: waiting for another node, pinned by a lease, or kept for a copy.
    Waiting,
    /// It cannot be done, and the agent will not try (the loop says so in the log).
    Refused,
}

pub fn act(
    backend: &dyn Backend,
    mount_root: &Path,
    dataset_id: &DatasetId,
    step: &Step,
    found: Option<&Found>,
) -> Result<Outcome, BackendError> {
    let volume = || {
        found.map(|f| &f.volume).ok_or_else(|| BackendError::Refused {
            path: mount_point(mount_root, dataset_id),
            problem: format!("no volume for dataset {dataset_id}"),
        })
    };
    let source = || match &volume()?.attachment {
        Attachment::Here { source: Some(source) } => Ok(source.clone()),
        _ => Err(BackendError::Refused {
            path: mount_point(mount_root, dataset_id),
            problem: "the volume is not attached here".into(),
        }),
    };
    let target = mount_point(mount_root, dataset_id);
    match step {
        Step::Create { size } => backend.create(dataset_id, *size)?,
        Step::Attach => backend.attach(volume()?)?,
        Step::Format => backend.format(&source()?)?,
        Step::Mount => backend.mount(&source()?, &target)?,
        Step::Unmount => backend.unmount(&target)?,
        Step::Detach => backend.detach(volume()?)?,
        Step::Destroy => backend.destroy(volume()?)?,
        Step::WaitForRelease | Step::Hold | Step::KeepUntilPushed | Step::WaitForCopy => {
            return Ok(Outcome::Waiting);
        }
        Step::Refuse(_) => return Ok(Outcome::Refused),
        Step::Done => return Ok(Outcome::Waiting),
    }
    Ok(Outcome::Progressed)
}
