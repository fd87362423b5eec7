//! What each call does, on the isolator's core: the same lookup by name, conditional create,
//! lease, move and wait for the mount as a Mesos task's volume gets. Blocking.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use flocker_api::{DatasetId, NodeUuid};
use flocker_isolator_core::control::{ControlService, error_chain};
use flocker_isolator_core::plan::NewVolume;
use flocker_isolator_core::request::FlockerId;
use serde_json::{Value, json};

use crate::protocol::{Request, Volume, create_options, name};
use crate::record::{Left, Record, RecordFile};

/// A call's answer: its JSON, or the words for Docker's `Err`.
pub type Answer = Result<Value, String>;

pub struct Driver {
    control: ControlService,
    node: NodeUuid,
    record: Mutex<Record>,
    file: RecordFile,
    mount_timeout: Duration,
    default_size: u64,
}

impl Driver {
    pub fn new(
        control: ControlService,
        node: NodeUuid,
        state_dir: &Path,
        mount_timeout: Duration,
        default_size: u64,
    ) -> Result<Self, String> {
        let file = RecordFile::new(state_dir);
        let record = Mutex::new(file.load()?);
        Ok(Self { control, node, record, file, mount_timeout, default_size })
    }

    pub fn activate() -> Value {
        json!({"Implements": ["VolumeDriver"]})
    }

    /// A volume is the same on every node of the cluster.
    pub fn capabilities() -> Value {
        json!({"Capabilities": {"Scope": "global"}})
    }

    /// Makes the dataset unless one has the name; two nodes creating one name make one.
    pub fn create(&self, request: &Request) -> Answer {
        let id = name(request)?;
        let options = create_options(request.opts.as_ref())?;
        let volume = NewVolume {
            flocker_id: &id,
            maximum_size: options.maximum_size,
            profile: options.profile.as_deref(),
        };
        self.control.find_or_create(volume, self.node, self.default_size).map_err(chain)?;
        Ok(json!({"Err": ""}))
    }

    /// Takes this node's lease (refused at once if another node holds one, naming it), moves
    /// the dataset here and waits until it is really mounted.
    pub fn mount(&self, request: &Request) -> Answer {
        let id = name(request)?;
        let mount = request.id.clone().unwrap_or_default();
        let volume = NewVolume { flocker_id: &id, maximum_size: None, profile: None };
        let dataset = self.control.find_or_create(volume, self.node, self.default_size);
        let dataset = dataset.map_err(chain)?;
        // Recorded first: a crash from here on leaves a mount Docker will unmount, not a lease
        // nobody knows of.
        self.change(|record| record.mount(id.as_str(), dataset.dataset_id, &mount))?;
        let started = Instant::now();
        let mounted = self
            .control
            .lease(&id, dataset.dataset_id, self.node, started)
            .and_then(|()| self.control.move_here(&id, &dataset, self.node))
            .and_then(|()| {
                let deadline = started + self.mount_timeout;
                self.control.wait_mounted(&id, dataset.dataset_id, self.node, started, deadline)
            });
        match mounted {
            Ok(path) => Ok(json!({"Mountpoint": path, "Err": ""})),
            Err(error) => {
                let why = chain(error);
                if let Err(undo) = self.let_go(&id, &mount) {
                    log::warn!("volume '{id}': after a failed mount, {undo}");
                }
                Err(why)
            }
        }
    }

    /// Forgets this mount; the last one on this node releases the lease.
    pub fn unmount(&self, request: &Request) -> Answer {
        let id = name(request)?;
        self.let_go(&id, &request.id.clone().unwrap_or_default())?;
        Ok(json!({"Err": ""}))
    }

    fn let_go(&self, id: &FlockerId, mount: &str) -> Result<(), String> {
        let mut left = Left::Unknown;
        self.change(|record| {
            left = record.unmount(id.as_str(), mount);
            Ok(())
        })?;
        match left {
            Left::Nobody(dataset) => self.release(id, &dataset),
            Left::Others | Left::Unknown => Ok(()),
        }
    }

    fn release(&self, id: &FlockerId, dataset: &DatasetId) -> Result<(), String> {
        self.control.release_lease(id, dataset, self.node).map_err(chain)
    }

    /// Deletes the dataset, unless a container here or any node uses it.
    pub fn remove(&self, request: &Request) -> Answer {
        let id = name(request)?;
        if self.record().in_use(id.as_str()) {
            return Err(format!("volume '{id}' is in use by a container on this node"));
        }
        if let Some(dataset) = self.control.find(&id).map_err(chain)? {
            self.control.delete_unless_leased(&id, &dataset.dataset_id).map_err(chain)?;
        }
        Ok(json!({"Err": ""}))
    }

    /// Where the volume is mounted here; an error if it is not.
    pub fn path(&self, request: &Request) -> Answer {
        let id = name(request)?;
        match self.mountpoint(&id)? {
            Some(path) => Ok(json!({"Mountpoint": path, "Err": ""})),
            None => Err(format!("volume '{id}' is not mounted on this node")),
        }
    }

    pub fn get(&self, request: &Request) -> Answer {
        let id = name(request)?;
        let dataset = self.control.find(&id).map_err(chain)?.ok_or_else(|| unknown(&id))?;
        let mountpoint = self
            .control
            .mounted_here(&id, &dataset.dataset_id, self.node)
            .map_err(chain)?
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        let mut status = std::collections::BTreeMap::new();
        status.insert("dataset_id".to_owned(), dataset.dataset_id.to_string());
        status.insert("primary".to_owned(), dataset.primary.to_string());
        if let Some(size) = dataset.maximum_size {
            status.insert("maximum_size".to_owned(), size.to_string());
        }
        let volume = Volume { name: id.as_str().to_owned(), mountpoint, status };
        Ok(json!({"Volume": volume, "Err": ""}))
    }

    /// Every named volume of the cluster, with its mount point where it is mounted here.
    pub fn list(&self) -> Answer {
        let named = self.control.named().map_err(|e| error_chain(&e))?;
        let mounted = self.control.mounted_on(self.node).map_err(|e| error_chain(&e))?;
        let volumes: Vec<Volume> = named
            .into_iter()
            .map(|(name, dataset)| Volume {
                name,
                mountpoint: mounted
                    .get(&dataset.dataset_id)
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
                status: Default::default(),
            })
            .collect();
        Ok(json!({"Volumes": volumes, "Err": ""}))
    }

    fn mountpoint(&self, id: &FlockerId) -> Result<Option<String>, String> {
        let Some(dataset) = self.control.find(id).map_err(chain)? else {
            return Err(unknown(id));
        };
        let here = self.control.mounted_here(id, &dataset.dataset_id, self.node);
        Ok(here.map_err(chain)?.map(|path| path.display().to_string()))
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the record and writes it; on a failed write the change is undone.
    fn change(&self, change: impl FnOnce(&mut Record) -> Result<(), String>) -> Result<(), String> {
        let mut record = self.record();
        let before = record.clone();
        change(&mut record)?;
        if let Err(error) = self.file.save(&record) {
            *record = before;
            return Err(format!("cannot write {}: {error}", self.file.path().display()));
        }
        Ok(())
    }
}

fn chain(error: impl std::error::Error) -> String {
    error_chain(&error)
}

fn unknown(id: &FlockerId) -> String {
    format!("no volume named '{id}' in the cluster")
}
