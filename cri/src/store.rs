//! berth-cri's own state, in its own LMDB (heed) at /var/lib/berth/cri:
//! what only the CRI knows. Pods are CRI-only objects (berthd has no pods:
//! a sandbox is pinned namespaces plus a CNI attachment), and a container's
//! CRI metadata (pod, name, attempt, labels, annotations, log path) would
//! crowd berthd's labels. berthd stays the owner of every container's state;
//! a record here says which berthd container is which CRI container.
//!
//! Written intent-first, as berthd's store: a pod is recorded `Creating`
//! before any namespace or CNI call and a container before CreateContainer
//! reaches berthd, so a berth-cri killed in between finds (and undoes) the
//! half-made thing on its next start (recovery.rs).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use heed::types::{SerdeJson, Str};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open berth-cri's store at {path}: {source}")]
    Open { path: String, source: heed::Error },
    #[error("berth-cri's store: {0}")]
    Db(#[from] heed::Error),
    #[error("berth-cri's store: {0}")]
    Task(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    /// Recorded, namespaces and network being made.
    Creating,
    Ready,
    /// Stopped: containers killed, network released.
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub state: PodState,
    pub created_at_ns: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub hostname: String,
    pub log_directory: String,
    /// The kubelet's cgroup_parent (a systemd slice), "" for berth.slice.
    pub slice: String,
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    /// The pod's IPs (first the primary), from the CNI result.
    pub ips: Vec<String>,
    /// The conflist's network name ("" with hostNetwork).
    pub network: String,
    pub runtime_handler: String,
    /// The whole config, protobuf-encoded (containers' spec building reads
    /// its DNS and security settings).
    pub config: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub name: String,
    pub attempt: u32,
    /// false until berthd's CreateContainer answered.
    pub made: bool,
    pub created_at_ns: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// As asked (ImageSpec.image) and as resolved (berthd's image id).
    pub image: String,
    pub image_ref: String,
    pub log_path: String,
    /// The signal StopContainer sends first.
    pub stop_signal: i32,
    /// The config, protobuf-encoded (ContainerStatus' mounts, resources).
    pub config: Vec<u8>,
}

pub struct Store {
    env: Env<WithoutTls>,
    pods: Database<'static, Str, SerdeJson<PodRecord>>,
    containers: Database<'static, Str, SerdeJson<ContainerRecord>>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(heed::Error::Io(e)))?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(256 << 20).max_dbs(2);
        // SAFETY: berth-cri opens this env once per process, with no unsafe
        // flags, and nothing else writes its files.
        let env = unsafe { options.open(dir) }.map_err(open_err)?;
        let wtxn = env.write_txn().map_err(open_err)?;
        let created = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let pods = opener.create_database(wtxn, Some("pods"))?;
                let containers = opener.create_database(wtxn, Some("containers"))?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, std::convert::Infallible>::Commit((
                    pods, containers,
                )))
            })
            .map_err(open_err)?;
        let (pods, containers) = match created {
            CommitOrAbort::Commit(dbs) => dbs,
            CommitOrAbort::Abort(never) => match never {},
        };
        Ok(Store {
            env,
            pods,
            containers,
        })
    }

    pub fn put_pod(&self, p: &PodRecord) -> Result<(), StoreError> {
        let mut w = self.env.write_txn()?;
        self.pods.put(&mut w, &p.id, p)?;
        Ok(w.commit()?)
    }

    pub fn pod(&self, id: &str) -> Result<Option<PodRecord>, StoreError> {
        if !key_ok(id) {
            return Ok(None);
        }
        let r = self.env.read_txn()?;
        Ok(self.pods.get(&r, id)?)
    }

    pub fn pods(&self) -> Result<Vec<PodRecord>, StoreError> {
        let r = self.env.read_txn()?;
        let all = self.pods.iter(&r)?.map(|x| x.map(|(_, p)| p));
        Ok(all.collect::<heed::Result<_>>()?)
    }

    pub fn delete_pod(&self, id: &str) -> Result<(), StoreError> {
        let mut w = self.env.write_txn()?;
        self.pods.delete(&mut w, id)?;
        Ok(w.commit()?)
    }

    /// Records a new pod unless one with the same (name, namespace, uid,
    /// attempt) exists: the kubelet relies on that uniqueness. One write
    /// transaction, so two racing RunPodSandbox calls cannot both pass.
    pub fn insert_pod(&self, p: &PodRecord) -> Result<Option<String>, StoreError> {
        let mut w = self.env.write_txn()?;
        for x in self.pods.iter(&w)? {
            let (_, o) = x?;
            if (&o.name, &o.namespace, &o.uid, o.attempt)
                == (&p.name, &p.namespace, &p.uid, p.attempt)
            {
                return Ok(Some(o.id));
            }
        }
        self.pods.put(&mut w, &p.id, p)?;
        w.commit()?;
        Ok(None)
    }

    /// As insert_pod, for (pod, name, attempt) of containers.
    pub fn insert_container(&self, c: &ContainerRecord) -> Result<Option<String>, StoreError> {
        let mut w = self.env.write_txn()?;
        for x in self.containers.iter(&w)? {
            let (_, o) = x?;
            if (&o.pod_id, &o.name, o.attempt) == (&c.pod_id, &c.name, c.attempt) {
                return Ok(Some(o.id));
            }
        }
        self.containers.put(&mut w, &c.id, c)?;
        w.commit()?;
        Ok(None)
    }

    pub fn put_container(&self, c: &ContainerRecord) -> Result<(), StoreError> {
        let mut w = self.env.write_txn()?;
        self.containers.put(&mut w, &c.id, c)?;
        Ok(w.commit()?)
    }

    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>, StoreError> {
        if !key_ok(id) {
            return Ok(None);
        }
        let r = self.env.read_txn()?;
        Ok(self.containers.get(&r, id)?)
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let r = self.env.read_txn()?;
        let all = self.containers.iter(&r)?.map(|x| x.map(|(_, c)| c));
        Ok(all.collect::<heed::Result<_>>()?)
    }

    pub fn delete_container(&self, id: &str) -> Result<(), StoreError> {
        let mut w = self.env.write_txn()?;
        self.containers.delete(&mut w, id)?;
        Ok(w.commit()?)
    }

    /// Pod id → its containers.
    pub fn by_pod(&self) -> Result<HashMap<String, Vec<ContainerRecord>>, StoreError> {
        let mut m: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
        for c in self.containers()? {
            m.entry(c.pod_id.clone()).or_default().push(c);
        }
        Ok(m)
    }
}

/// Whether `id` can be an LMDB key (1-511 bytes): any other names nothing.
fn key_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 511
}

/// 32 hex digits (128 random bits). containerd's are 64, but berthd's
/// state paths (/run/berth/<id>/exec-<exec id>.attach.sock) must fit a
/// unix socket address (108 bytes).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    let _ = nix::unistd::getpid();
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if filled.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes();
        b.copy_from_slice(&t);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
