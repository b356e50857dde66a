//! The network's part of berthd's verbs (daemon.rs): a create's plan,
//! record and attachment in one step under the networks' lock, the hosts
//! files of a network's members, and the teardown delete, undo and
//! recovery share.

use crate::daemon::Daemon;
use crate::error::Result;
use crate::options::CreateOptions;
use crate::rollback::{undo_create, Made};
use crate::store::ContainerRecord;

impl Daemon {
    /// Writes `rec` (status creating) and, when it gets a network, attaches
    /// it and fills `req.net_spec`. Intent first, the network's part too:
    /// the record holds the ports before the lock that found them free is
    /// let go. On failure nothing is left (the record and network undone).
    pub(crate) async fn record_and_attach(
        &self,
        rec: &mut ContainerRecord,
        req: &mut CreateOptions,
    ) -> Result<()> {
        let id = rec.id.clone();
        // A caller's whole spec (option `spec`) names its namespaces as a
        // bundle's config.json does: no default network for it either.
        let from_image = req.image.is_some() && req.cri.spec.is_none();
        if !from_image && !req.net.any() {
            // A bundle keeping its own namespaces: no network, no lock.
            return Ok(self.store.insert_new(rec).await?);
        }
        let membership = self.nets.lock().await;
        let plan = {
            let (store, opts, id) = (self.store.clone(), req.clone(), id.clone());
            self.nets
                .blocking(move |paths| crate::network::plan(&opts, &id, from_image, &store, paths))
                .await?
        };
        if let Some(p) = &plan {
            rec.net = Some(crate::network::NetRecord {
                mode: p.mode.label(),
                ports: p.ports.clone(),
                ..Default::default()
            });
        }
        self.store.insert_new(rec).await?;
        if let Some(plan) = plan {
            match self.attach_network(&id, plan).await {
                Ok((net, spec)) => {
                    rec.net = Some(net);
                    req.net_spec = Some(spec);
                }
                Err(e) => {
                    drop(membership);
                    undo_create(self, &id, from_image, Made::NoContainer).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Attaches container `id` (recorded as creating) as `plan` says, records
    /// the result and rewrites its network's hosts files. Called with the
    /// networks' lock held.
    async fn attach_network(
        &self,
        id: &str,
        plan: crate::network::NetPlan,
    ) -> Result<(crate::network::NetRecord, crate::network::SpecNet)> {
        let idc = id.to_string();
        let (net, spec) = self
            .nets
            .blocking(move |paths| crate::network::attach(paths, &idc, &plan))
            .await?;
        let recorded = net.clone();
        self.store
            .update(id, move |r| r.net = Some(recorded))
            .await?;
        let store = self.store.clone();
        let network = net.network.clone();
        let _ = self
            .nets
            .blocking(move |_| {
                crate::network::refresh_hosts(&network, &store.list()?);
                Ok(())
            })
            .await;
        Ok((net, spec))
    }

    /// Tears down container `id`'s network (if any), then tells its former
    /// peers. Best effort and idempotent (undo, delete and recovery).
    pub async fn release_network(&self, id: &str) {
        // A record without a network never had one attached (a crash's
        // leftovers without a record are recovery's sweep).
        let Some(net) = self.store.get(id).ok().flatten().and_then(|r| r.net) else {
            return;
        };
        let _membership = self.nets.lock().await;
        let (store, id) = (self.store.clone(), id.to_string());
        let _ = self
            .nets
            .blocking(move |paths| {
                crate::network::detach(paths, &id);
                // The record still lists it: its former peers without it.
                let others: Vec<_> = store.list()?.into_iter().filter(|r| r.id != id).collect();
                crate::network::refresh_hosts(&net.network, &others);
                Ok(())
            })
            .await;
    }
}
