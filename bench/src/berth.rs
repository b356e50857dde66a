//! berthd as a client program drives it: calls on the Manager object over
//! one connection — berthd's private socket, as root clients find it, else
//! the system bus (zbus connections are shared between threads, calls run
//! concurrently on it).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result};
use berth_client::{ContainerProxyBlocking, ManagerProxyBlocking};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::env::Bundles;

#[derive(Clone)]
pub struct Berth {
    pub conn: zbus::blocking::Connection,
    pub bundles: Bundles,
    manager: ManagerProxyBlocking<'static>,
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
            manager,
        })
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
        (self.manager.create_container(id, bundle, options)).context("CreateContainer")
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.manager.start_container(id).context("StartContainer")
    }

    pub fn wait(&self, id: &str) -> Result<(i32, i32)> {
        self.manager.wait_container(id).context("WaitContainer")
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.manager
            .delete_container(id, force)
            .context("DeleteContainer")
    }

    /// An exec to its end in one call: (exit code, signal).
    pub fn exec_and_wait(&self, id: &str, process_json: &str) -> Result<(i32, i32)> {
        let (_, code, signal) = self
            .manager
            .exec_container_and_wait(id, process_json, HashMap::new())
            .context("ExecContainerAndWait")?;
        Ok((code, signal))
    }

    /// A stream of the container's output from now on.
    pub fn attach(&self, id: &str) -> Result<OwnedFd> {
        let fd = self
            .manager
            .attach_container(id)
            .context("AttachContainer")?;
        Ok(fd.into())
    }

    /// (id, status, object path) of every container.
    pub fn list(&self) -> Result<Vec<(String, String, OwnedObjectPath)>> {
        self.manager.list_containers().context("ListContainers")
    }

    pub fn stats(&self, id: &str) -> Result<HashMap<String, OwnedValue>> {
        self.manager
            .get_container_stats(id)
            .context("GetContainerStats")
    }

    /// Manager.Info: version, container counts per status, dirs.
    pub fn info(&self) -> Result<HashMap<String, OwnedValue>> {
        self.manager.info().context("Info")
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
