//! berthd as a client program drives it: calls on the Manager object over
//! one connection — berthd's private socket, as root clients find it, else
//! the system bus (zbus connections are shared between threads, calls run
//! concurrently on it).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use berth_client::{ContainerProxyBlocking, ManagerProxyBlocking};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::env::Bundles;

#[derive(Clone)]
pub struct Berth {
    pub conn: zbus::blocking::Connection,
    pub bundles: Bundles,
    /// Replaced when berthd restarted under it (see `call`).
    manager: Arc<RwLock<ManagerProxyBlocking<'static>>>,
}

impl Berth {
    pub fn connect(bundles: Bundles) -> Result<Self> {
        let conn = zbus::blocking::Connection::system().context("connecting to the system bus")?;
        // The Manager's calls as berthctl makes them as root: on berthd's
        // private socket when it answers (the objects stay on the bus).
        let calls = berth_client::manager_connection().context("connecting to berthd")?;
        let manager = ManagerProxyBlocking::new(&calls).context("the Manager proxy")?;
        Ok(Berth {
            conn,
            bundles,
            manager: Arc::new(RwLock::new(manager)),
        })
    }

    /// A Manager call; made again, once, on a new connection when the old
    /// one ended with a berthd that restarted (a private socket's
    /// connection does; the scenarios restart berthd between calls, never
    /// during one, so the first call did not reach it).
    fn call<T>(
        &self,
        what: &str,
        f: impl Fn(&ManagerProxyBlocking<'static>) -> zbus::Result<T>,
    ) -> Result<T> {
        let current = || self.manager.read().map(|m| m.clone());
        let m = current().map_err(|_| anyhow::anyhow!("the Manager proxy's lock"))?;
        match f(&m) {
            Err(e) if berth_client::is_disconnected(&e) => {
                let conn = berth_client::manager_connection().context("connecting to berthd")?;
                let fresh = ManagerProxyBlocking::new(&conn).context("the Manager proxy")?;
                if let Ok(mut m) = self.manager.write() {
                    *m = fresh.clone();
                }
                f(&fresh).context(what.to_string())
            }
            r => r.context(what.to_string()),
        }
    }

    pub fn create(&self, id: &str, bundle: &Path) -> Result<OwnedObjectPath> {
        self.create_with(id, bundle, HashMap::new())
    }

    /// CreateContainer with options (the network scenario's network, ports).
    pub fn create_with(
        &self,
        id: &str,
        bundle: &Path,
        options: HashMap<&str, zbus::zvariant::Value<'_>>,
    ) -> Result<OwnedObjectPath> {
        let bundle = bundle.to_str().context("bundle path is not UTF-8")?;
        self.call("CreateContainer", |m| {
            m.create_container(id, bundle, options.clone())
        })
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.call("StartContainer", |m| m.start_container(id))
    }

    pub fn wait(&self, id: &str) -> Result<(i32, i32)> {
        self.call("WaitContainer", |m| m.wait_container(id))
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.call("DeleteContainer", |m| m.delete_container(id, force))
    }

    /// An exec to its end in one call: (exit code, signal).
    pub fn exec_and_wait(&self, id: &str, process_json: &str) -> Result<(i32, i32)> {
        let (_, code, signal) = self.call("ExecContainerAndWait", |m| {
            m.exec_container_and_wait(id, process_json, HashMap::new())
        })?;
        Ok((code, signal))
    }

    /// A stream of the container's output from now on.
    pub fn attach(&self, id: &str) -> Result<OwnedFd> {
        let fd = self.call("AttachContainer", |m| m.attach_container(id))?;
        Ok(fd.into())
    }

    /// (id, status, object path) of every container.
    pub fn list(&self) -> Result<Vec<(String, String, OwnedObjectPath)>> {
        self.call("ListContainers", |m| m.list_containers())
    }

    pub fn stats(&self, id: &str) -> Result<HashMap<String, OwnedValue>> {
        self.call("GetContainerStats", |m| m.get_container_stats(id))
    }

    /// Manager.Info: version, container counts per status, dirs.
    pub fn info(&self) -> Result<HashMap<String, OwnedValue>> {
        self.call("Info", |m| m.info())
    }

    /// The Status property of a container object: whether that object is
    /// on the bus and answers.
    pub fn object_status(&self, path: &OwnedObjectPath) -> Result<String> {
        let obj = ContainerProxyBlocking::builder(&self.conn)
            .path(path.clone())
            .context("a container path")?
            // A fresh read each time, not a cached value.
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .context("the Container proxy")?;
        obj.status()
            .with_context(|| format!("Get Status of {}", path.as_str()))
    }
}
