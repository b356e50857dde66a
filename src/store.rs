//! berthd's persistent metadata: LMDB (through heed) at /var/lib/berth/db, the
//! source of truth for which containers exist.
//!
//! Every public write is one write transaction, committed (and so fsynced: we never
//! set NO_SYNC/NO_META_SYNC) before the call returns. Create is written intent-first
//! (status `Creating` → side effects → result), so a crash between two steps leaves
//! a record that the next start can find and repair.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use heed::types::{SerdeJson, Str};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, MdbError, RwTxn, WithoutTls};

use crate::lifecycle::Status;

/// Named databases this env may hold (four now), with room to grow.
const MAX_DBS: u32 = 8;
const CONTAINERS: &str = "containers";
const EXECS: &str = "execs";
const NETWORKS: &str = "networks";
const VOLUMES: &str = "volumes";

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub bundle: String,
    /// Stored by its lowercase name, as records have always held it.
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    /// The systemd scope unit, e.g. `berth-<id>.scope`.
    pub unit: String,
    /// The container's init pid (0 if none).
    pub pid: u32,
    /// /proc start time of `pid`, to tell our init from a reused pid.
    pub pid_start: u64,
    pub shim_pid: u32,
    pub shim_start: u64,
    /// Microseconds since the epoch.
    pub created_at: u64,
    pub started_at: u64,
    pub exited_at: u64,
    pub exit_code: i32,
    pub exit_signal: i32,
    /// "" until stopped; then shims::EXITED, shims::SHIM_DIED, or "shim
    /// died: <why>" when the exit record could not be read.
    pub exit_reason: String,
    /// The image the container was created from ("" for a bundle).
    #[serde(default)]
    pub image: String,
    /// Processes exec'd into the container, by exec id, as berthd kept
    /// them until they got a database of their own (store_execs.rs): moved
    /// there when the store opens, empty after, never written.
    #[serde(default, rename = "execs", skip_serializing_if = "BTreeMap::is_empty")]
    pub legacy_execs: BTreeMap<String, ExecRecord>,
    /// Its network: none recorded = the spec's own namespaces (bundles,
    /// records older than networking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<crate::network::NetRecord>,
    /// Its restart policy and count, and what a relaunch needs (restart.rs);
    /// none: never relaunched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<crate::restart::RestartRecord>,
    /// Its health check and the last results (health.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthRecord>,
    /// The named volumes it mounts (a volume is in use while any record
    /// names it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Its resources after the last UpdateContainer (none: as created,
    /// its spec's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
}

/// One exec'd process (store_execs.rs): when it started, and how it ended
/// once WaitExec saw it (or an exec at the cap settled it from its exit
/// record: execs.rs).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecRecord {
    /// 0: the record is made while the shim starts, before its pid is known
    /// (KillExec reads the shim from exec-ID.shim.json). Kept so a record
    /// stays readable by an older berthd.
    #[serde(default)]
    pub shim_pid: u32,
    #[serde(default)]
    pub shim_start: u64,
    pub started_at: u64,
    /// 0 while running.
    pub exited_at: u64,
    pub exit_code: i32,
    pub exit_signal: i32,
}

/// Exec records kept per container: the oldest finished ones go first.
pub const MAX_EXEC_RECORDS: usize = 128;

/// Room made at once when a container's exec records reach the limit: the
/// oldest finished go down to MAX_EXEC_RECORDS - EXEC_ROOM, so the limit's
/// work (every record decoded, the exits of running ones settled from
/// their files) comes once in EXEC_ROOM execs — not at every probe of a
/// container whose records are at the limit for good.
pub const EXEC_ROOM: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the metadata directory {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the metadata store at {}: {source}", .path.display())]
    Open { path: PathBuf, source: heed::Error },
    #[error("metadata store: {0}")]
    Db(#[from] heed::Error),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("no such container {0:?}")]
    NotFound(String),
    #[error("the metadata store is full (LMDB map size {map_size} bytes)")]
    MapFull { map_size: usize },
    #[error("metadata store: the write did not finish: {0}")]
    Unfinished(String),
}

/// Cheap to clone (the env and the size are shared), so a write can take
/// the store to the blocking pool.
#[derive(Clone)]
pub struct Store {
    // WithoutTls (MDB_NOTLS): a read transaction holds a reader slot only while it
    // lives. With TLS, LMDB ties a slot to each thread until the thread exits, and
    // tokio's blocking pool can run more threads than the 126 default slots.
    pub(crate) env: Env<WithoutTls>,
    pub(crate) containers: Database<'static, Str, SerdeJson<ContainerRecord>>,
    /// Exec records, by `<container id>/<exec id>` (store_execs.rs).
    pub(crate) exec_records: Database<'static, Str, SerdeJson<ExecRecord>>,
    /// User networks and the default one, by name (store_networks.rs).
    pub(crate) networks: Database<'static, Str, SerdeJson<berth_net::NetworkSpec>>,
    /// Named volumes, by name (store_volumes.rs).
    pub(crate) volumes: Database<'static, Str, SerdeJson<crate::volumes::VolumeRecord>>,
    /// The largest record written or found since open (serialized bytes):
    /// what an update may need to copy (`keep_room`).
    largest: Arc<AtomicUsize>,
}

fn size_of(rec: &ContainerRecord) -> usize {
    serde_json::to_vec(rec).map(|v| v.len()).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. `map_size` is the most the
    /// data file may grow to, a multiple of the page size; LMDB reserves it as
    /// address space only.
    pub fn open(dir: &Path, map_size: usize) -> Result<Store, StoreError> {
        let create_dir = |source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(create_dir)?;
        // The directory may predate us with a looser mode; the records name bundles
        // and labels, which are root's business. LMDB creates its files 0600.
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(create_dir)?;

        let open_err = |source| StoreError::Open {
            path: dir.to_owned(),
            source,
        };
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_size).max_dbs(MAX_DBS);
        // SAFETY: heed marks open unsafe because the map is UB if the file is changed
        // behind LMDB's locks. berthd opens each env path once per process, sets no
        // unsafe flags (NO_LOCK, NO_SYNC), and nothing else writes these files.
        let env = unsafe { options.open(dir) }.map_err(open_err)?;
        let wtxn = env.write_txn().map_err(open_err)?;
        let created = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let db = opener.create_database(wtxn, Some(CONTAINERS))?;
                let nets = opener.create_database(wtxn, Some(NETWORKS))?;
                let vols = opener.create_database(wtxn, Some(VOLUMES))?;
                let execs = opener.create_database(wtxn, Some(EXECS))?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, std::convert::Infallible>::Commit((
                    db, nets, vols, execs,
                )))
            })
            .map_err(open_err)?;
        let (containers, networks, volumes, exec_records) = match created {
            CommitOrAbort::Commit(db) => db,
            CommitOrAbort::Abort(never) => match never {},
        };
        let store = Store {
            env,
            containers,
            exec_records,
            networks,
            volumes,
            largest: Arc::new(AtomicUsize::new(0)),
        };
        let store_err = |e| match e {
            StoreError::Db(source) => open_err(source),
            other => open_err(heed::Error::Io(std::io::Error::other(other.to_string()))),
        };
        let mut records = store.list().map_err(store_err)?;
        store.move_legacy_execs(&mut records).map_err(store_err)?;
        for rec in &records {
            store.largest.fetch_max(size_of(rec), Ordering::Relaxed);
        }
        Ok(store)
    }

    /// Records a new container; `Exists` (and nothing written) if the id is taken,
    /// `MapFull` (nothing written) if it would eat into the room kept for the
    /// records already there (`keep_room`).
    pub fn insert_new_blocking(&self, rec: &ContainerRecord) -> Result<(), StoreError> {
        self.write(|wtxn| {
            // The check and the put share the write transaction, which LMDB runs
            // alone, so two creates of one id cannot both succeed.
            if self.containers.get(wtxn, &rec.id)?.is_some() {
                return Err(StoreError::Exists(rec.id.clone()));
            }
            self.containers.put(wtxn, &rec.id, rec)?;
            self.keep_room(wtxn, rec)
        })
    }

    /// LMDB writes copy on write: updating a record needs room for a second
    /// copy of it (a contiguous run of pages for a large one), and the pages
    /// a transaction frees are reused only two transactions later; even a
    /// delete needs a few new pages. A store filled to the last page could
    /// not record a container's start or exit, nor delete one to make room.
    /// So a new record must leave free the larger of 1/16 of the map and
    /// twice (the largest record + 8 pages of tree and free list), or it is
    /// refused: the store is "full" for creates while the containers already
    /// in it can still be started, exec'd into, exit and be deleted.
    fn keep_room(&self, wtxn: &RwTxn, rec: &ContainerRecord) -> Result<(), StoreError> {
        let stat = self.containers.stat(wtxn)?;
        let page = stat.page_size as usize;
        // This database's pages as the transaction sees them, plus the main
        // and free-list databases' and the two meta pages.
        let used = (stat.branch_pages + stat.leaf_pages + stat.overflow_pages + 4) * page;
        let largest = self.largest.load(Ordering::Relaxed).max(size_of(rec));
        let map_size = self.env.info().map_size;
        let keep = (map_size / 16).max(2 * (largest + 8 * page));
        if used + keep > map_size {
            return Err(StoreError::MapFull { map_size });
        }
        self.largest.store(largest, Ordering::Relaxed);
        Ok(())
    }

    /// Inserts or replaces the record under `rec.id`.
    pub fn put_blocking(&self, rec: &ContainerRecord) -> Result<(), StoreError> {
        self.largest.fetch_max(size_of(rec), Ordering::Relaxed);
        self.write(|wtxn| Ok(self.containers.put(wtxn, &rec.id, rec)?))
    }

    /// Read-modify-write of one record in one write transaction, so concurrent
    /// updates of different fields cannot lose each other. Returns the new record.
    /// The id is the key: a change of `id` by `f` is undone.
    pub fn update_blocking<F: FnOnce(&mut ContainerRecord)>(
        &self,
        id: &str,
        f: F,
    ) -> Result<ContainerRecord, StoreError> {
        self.write(|wtxn| {
            let mut rec = self
                .containers
                .get(wtxn, id)?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            f(&mut rec);
            rec.id = id.to_owned();
            self.largest.fetch_max(size_of(&rec), Ordering::Relaxed);
            self.containers.put(wtxn, id, &rec)?;
            Ok(rec)
        })
    }

    /// [`Self::insert_new_blocking`], from async code.
    pub async fn insert_new(&self, rec: &ContainerRecord) -> Result<(), StoreError> {
        let rec = rec.clone();
        self.off_executor(move |s| s.insert_new_blocking(&rec))
            .await
    }

    /// [`Self::put_blocking`], from async code.
    pub async fn put(&self, rec: &ContainerRecord) -> Result<(), StoreError> {
        let rec = rec.clone();
        self.off_executor(move |s| s.put_blocking(&rec)).await
    }

    /// [`Self::update_blocking`], from async code.
    pub async fn update<F: FnOnce(&mut ContainerRecord) + Send + 'static>(
        &self,
        id: &str,
        f: F,
    ) -> Result<ContainerRecord, StoreError> {
        let id = id.to_string();
        self.off_executor(move |s| s.update_blocking(&id, f)).await
    }

    /// [`Self::remove_blocking`], from async code.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.off_executor(move |s| s.remove_blocking(&id)).await
    }

    /// Reads stay inline: a read transaction takes no lock and writes nothing.
    pub fn get(&self, id: &str) -> Result<Option<ContainerRecord>, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.containers.get(&rtxn, id)?)
    }

    /// Deletes the record and its execs'; false if there was none.
    pub fn remove_blocking(&self, id: &str) -> Result<bool, StoreError> {
        self.write(|wtxn| {
            self.clear_execs_in(wtxn, id)?;
            Ok(self.containers.delete(wtxn, id)?)
        })
    }

    /// Every record, sorted by id (LMDB keeps keys in byte order).
    pub fn list(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let records = self.containers.iter(&rtxn)?.map(|r| r.map(|(_, rec)| rec));
        Ok(records.collect::<heed::Result<_>>()?)
    }

    /// Runs the write `f` on tokio's blocking pool: its commit fsyncs, and
    /// waits for LMDB's one writer lock while another write holds it; on an
    /// executor thread either would stall every D-Bus call behind it.
    pub(crate) async fn off_executor<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Unfinished(e.to_string()))?
    }

    /// Runs `f` in a write transaction and commits it; on any error the transaction
    /// is dropped, which aborts it, so a failed call writes nothing.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut RwTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let run = || {
            let mut wtxn = self.env.write_txn()?;
            let out = f(&mut wtxn)?;
            wtxn.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.classify(e))
    }

    /// MDB_MAP_FULL can come from a put or from the commit (reads never allocate);
    /// either way the caller needs to know the store is full, not an LMDB code.
    fn classify(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Db(heed::Error::Mdb(MdbError::MapFull)) => StoreError::MapFull {
                map_size: self.env.info().map_size,
            },
            e => e,
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
