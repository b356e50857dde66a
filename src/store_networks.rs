//! The networks database of berthd's LMDB env: one record per network, by
//! name — the source of truth the CNI conflists are written from.

use berth_net::NetworkSpec;

use crate::store::{Store, StoreError};

impl Store {
    /// Records a new network; `Exists` if the name is taken (checked in the
    /// write transaction, so two creates of one name cannot both succeed).
    pub fn insert_network_blocking(&self, net: &NetworkSpec) -> Result<(), StoreError> {
        self.write(|wtxn| {
            if self.networks.get(wtxn, &net.name)?.is_some() {
                return Err(StoreError::Exists(net.name.clone()));
            }
            Ok(self.networks.put(wtxn, &net.name, net)?)
        })
    }

    pub fn network(&self, name: &str) -> Result<Option<NetworkSpec>, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.networks.get(&rtxn, name)?)
    }

    pub fn networks(&self) -> Result<Vec<NetworkSpec>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let all = self.networks.iter(&rtxn)?.map(|r| r.map(|(_, n)| n));
        Ok(all.collect::<heed::Result<_>>()?)
    }

    pub fn remove_network_blocking(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|wtxn| Ok(self.networks.delete(wtxn, name)?))
    }
}
