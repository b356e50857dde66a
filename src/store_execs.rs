//! The execs database of berthd's LMDB env: one ExecRecord per exec, under
//! `<container id>/<exec id>` (ids cannot hold a '/': ids.rs), so an exec's
//! start and end each write one small entry. They were a map in the
//! container's own record before: with its last 128 execs in it (~13 KB of
//! JSON), every exec read and rewrote all of them four times over.

use std::collections::BTreeMap;

use heed::types::DecodeIgnore;
use heed::{RoTxn, RwTxn, WithoutTls};

use crate::store::{ExecRecord, Store, StoreError, EXEC_ROOM, MAX_EXEC_RECORDS};

fn key(id: &str, exec_id: &str) -> String {
    format!("{id}/{exec_id}")
}

fn prefix(id: &str) -> String {
    format!("{id}/")
}

impl Store {
    /// The execs of container `id`, by exec id.
    pub fn execs(&self, id: &str) -> Result<BTreeMap<String, ExecRecord>, StoreError> {
        self.execs_in(&self.env.read_txn()?, id)
    }

    /// [`Self::execs`] as transaction `txn` (a read's or a write's) sees them.
    fn execs_in(
        &self,
        txn: &RoTxn<'_, WithoutTls>,
        id: &str,
    ) -> Result<BTreeMap<String, ExecRecord>, StoreError> {
        let p = prefix(id);
        let mut all = BTreeMap::new();
        for entry in self.exec_records.prefix_iter(txn, &p)? {
            let (k, rec) = entry?;
            all.insert(k[p.len()..].to_string(), rec);
        }
        Ok(all)
    }

    /// How many execs container `id` has records of (none decoded).
    pub fn exec_count(&self, id: &str) -> Result<usize, StoreError> {
        let rtxn = self.env.read_txn()?;
        let entries = self
            .exec_records
            .remap_data_type::<DecodeIgnore>()
            .prefix_iter(&rtxn, &prefix(id))?;
        Ok(entries.count())
    }

    pub fn exec(&self, id: &str, exec_id: &str) -> Result<Option<ExecRecord>, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.exec_records.get(&rtxn, &key(id, exec_id))?)
    }

    /// Records exec `exec_id` of container `id` (NotFound: no such
    /// container), dropping the oldest finished execs over the limit;
    /// returns the exec ids dropped (their files go too: execs.rs).
    pub async fn add_exec(
        &self,
        id: &str,
        exec_id: &str,
        rec: ExecRecord,
    ) -> Result<Vec<String>, StoreError> {
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        self.off_executor(move |s| {
            s.write(|wtxn| {
                // Whether it is there, not what it says (no decode).
                let there = s
                    .containers
                    .remap_data_type::<DecodeIgnore>()
                    .get(wtxn, &id)?;
                if there.is_none() {
                    return Err(StoreError::NotFound(id.clone()));
                }
                let dropped = s.make_room(wtxn, &id)?;
                s.exec_records.put(wtxn, &key(&id, &exec_id), &rec)?;
                Ok(dropped)
            })
        })
        .await
    }

    /// At the limit: the oldest finished execs' records go, down to
    /// EXEC_ROOM under it (fewer if not that many have finished; none if
    /// every one still runs: ExecContainer refused the exec before that).
    fn make_room(&self, wtxn: &mut RwTxn, id: &str) -> Result<Vec<String>, StoreError> {
        let p = prefix(id);
        let count = self
            .exec_records
            .remap_data_type::<DecodeIgnore>()
            .prefix_iter(wtxn, &p)?
            .count();
        if count < MAX_EXEC_RECORDS {
            return Ok(Vec::new());
        }
        let mut finished = Vec::new();
        for entry in self.exec_records.prefix_iter(wtxn, &p)? {
            let (k, rec) = entry?;
            if rec.exited_at != 0 {
                finished.push((rec.exited_at, k[p.len()..].to_string()));
            }
        }
        finished.sort_unstable();
        finished.truncate(count - (MAX_EXEC_RECORDS - EXEC_ROOM));
        let mut dropped = Vec::new();
        for (_, exec_id) in finished {
            self.exec_records.delete(wtxn, &key(id, &exec_id))?;
            dropped.push(exec_id);
        }
        Ok(dropped)
    }

    /// Changes the records of container `id`'s execs with `f` (exec id,
    /// record; true: changed, written back); returns them all, changed.
    pub async fn update_execs<F>(
        &self,
        id: &str,
        mut f: F,
    ) -> Result<BTreeMap<String, ExecRecord>, StoreError>
    where
        F: FnMut(&str, &mut ExecRecord) -> bool + Send + 'static,
    {
        let id = id.to_string();
        self.off_executor(move |s| {
            s.write(|wtxn| {
                let mut all = s.execs_in(wtxn, &id)?;
                for (exec_id, rec) in all.iter_mut() {
                    if f(exec_id, rec) {
                        s.exec_records.put(wtxn, &key(&id, exec_id), rec)?;
                    }
                }
                Ok(all)
            })
        })
        .await
    }

    /// Changes one exec's record with `f`; nothing if there is none.
    pub async fn update_exec<F>(&self, id: &str, exec_id: &str, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut ExecRecord) + Send + 'static,
    {
        let k = key(id, exec_id);
        self.off_executor(move |s| {
            s.write(|wtxn| {
                if let Some(mut rec) = s.exec_records.get(wtxn, &k)? {
                    f(&mut rec);
                    s.exec_records.put(wtxn, &k, &rec)?;
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn remove_exec(&self, id: &str, exec_id: &str) -> Result<bool, StoreError> {
        let k = key(id, exec_id);
        self.off_executor(move |s| s.write(|wtxn| Ok(s.exec_records.delete(wtxn, &k)?)))
            .await
    }

    /// Every exec record of container `id` goes (its delete, a relaunch).
    pub(crate) fn clear_execs_in(&self, wtxn: &mut RwTxn, id: &str) -> Result<(), StoreError> {
        let mut entries = self.exec_records.prefix_iter_mut(wtxn, &prefix(id))?;
        while entries.next().transpose()?.is_some() {
            // SAFETY: the key and value of the entry just read are not kept.
            unsafe { entries.del_current()? };
        }
        Ok(())
    }

    /// [`Self::clear_execs_in`] in a write of its own.
    pub async fn clear_execs(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.off_executor(move |s| s.write(|wtxn| s.clear_execs_in(wtxn, &id)))
            .await
    }

    /// Records of an older berthd kept their execs inside: moved out, once
    /// (`records`: the store's, as the open listed them; left without).
    pub(crate) fn move_legacy_execs(
        &self,
        records: &mut [crate::store::ContainerRecord],
    ) -> Result<(), StoreError> {
        if records.iter().all(|r| r.legacy_execs.is_empty()) {
            return Ok(());
        }
        self.write(|wtxn| {
            for rec in records.iter_mut().filter(|r| !r.legacy_execs.is_empty()) {
                for (exec_id, e) in std::mem::take(&mut rec.legacy_execs) {
                    self.exec_records.put(wtxn, &key(&rec.id, &exec_id), &e)?;
                }
                self.containers.put(wtxn, &rec.id, rec)?;
            }
            Ok(())
        })
    }
}
