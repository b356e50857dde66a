//! The volumes database of berthd's LMDB env: one record per named volume,
//! by name. The record is written before the volume's directory is made and
//! removed after it is gone (intent first: a crash between leaves a record
//! whose directory is made again on use, never a directory nobody knows).

use crate::store::{Store, StoreError};
use crate::volumes::VolumeRecord;

impl Store {
    /// Records a new volume; `Exists` if the name is taken (checked in the
    /// write transaction, so two creates of one name cannot both succeed).
    pub fn insert_volume_blocking(&self, v: &VolumeRecord) -> Result<(), StoreError> {
        self.write(|wtxn| {
            if self.volumes.get(wtxn, &v.name)?.is_some() {
                return Err(StoreError::Exists(v.name.clone()));
            }
            Ok(self.volumes.put(wtxn, &v.name, v)?)
        })
    }

    pub fn volume(&self, name: &str) -> Result<Option<VolumeRecord>, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.volumes.get(&rtxn, name)?)
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let all = self.volumes.iter(&rtxn)?.map(|r| r.map(|(_, v)| v));
        Ok(all.collect::<heed::Result<_>>()?)
    }

    pub fn remove_volume_blocking(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|wtxn| Ok(self.volumes.delete(wtxn, name)?))
    }
}
