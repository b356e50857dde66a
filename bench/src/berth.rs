//! berthd as a client program drives it: calls on the Manager object over
//! one system-bus connection (zbus connections are shared between threads,
//! calls run concurrently on it).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result};
use zbus::zvariant::{OwnedFd as ZFd, OwnedObjectPath, OwnedValue, Value};

use crate::env::Bundles;

const DEST: &str = "io.berth.Berth1";
const PATH: &str = "/io/berth/Berth1";
const MANAGER: &str = "io.berth.Berth1.Manager";

#[derive(Clone)]
pub struct Berth {
    pub conn: zbus::blocking::Connection,
    pub bundles: Bundles,
}

type Options = HashMap<String, Value<'static>>;

impl Berth {
    pub fn connect(bundles: Bundles) -> Result<Self> {
        let conn = zbus::blocking::Connection::system().context("connecting to the system bus")?;
        Ok(Berth { conn, bundles })
    }

    fn call<R>(
        &self,
        method: &str,
        body: &(impl serde::Serialize + zbus::zvariant::DynamicType),
    ) -> Result<R>
    where
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let reply = self
            .conn
            .call_method(Some(DEST), PATH, Some(MANAGER), method, body)
            .with_context(|| method.to_string())?;
        reply
            .body()
            .deserialize()
            .with_context(|| format!("{method} reply"))
    }

    pub fn create(&self, id: &str, bundle: &Path) -> Result<OwnedObjectPath> {
        let bundle = bundle.to_str().context("bundle path is not UTF-8")?;
        self.call("CreateContainer", &(id, bundle, Options::new()))
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.call("StartContainer", &(id,))
    }

    pub fn wait(&self, id: &str) -> Result<(i32, i32)> {
        self.call("WaitContainer", &(id,))
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.call("DeleteContainer", &(id, force))
    }

    pub fn exec(&self, id: &str, process_json: &str) -> Result<String> {
        self.call("ExecContainer", &(id, process_json, Options::new()))
    }

    pub fn wait_exec(&self, id: &str, exec_id: &str) -> Result<(i32, i32)> {
        self.call("WaitExec", &(id, exec_id))
    }

    /// A stream of the container's output from now on.
    pub fn attach(&self, id: &str) -> Result<OwnedFd> {
        let fd: ZFd = self.call("AttachContainer", &(id,))?;
        Ok(fd.into())
    }

    /// (id, status, object path) of every container.
    pub fn list(&self) -> Result<Vec<(String, String, OwnedObjectPath)>> {
        self.call("ListContainers", &())
    }

    pub fn stats(&self, id: &str) -> Result<HashMap<String, OwnedValue>> {
        self.call("GetContainerStats", &(id,))
    }

    /// Manager.Info: version, container counts per status, dirs.
    pub fn info(&self) -> Result<HashMap<String, OwnedValue>> {
        self.call("Info", &())
    }

    /// The Status property of a container object: whether that object is
    /// on the bus and answers.
    pub fn object_status(&self, path: &OwnedObjectPath) -> Result<String> {
        let reply = self
            .conn
            .call_method(
                Some(DEST),
                path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("io.berth.Berth1.Container", "Status"),
            )
            .with_context(|| format!("Get Status of {}", path.as_str()))?;
        let v: OwnedValue = reply.body().deserialize().context("Get reply")?;
        Ok(String::try_from(v)?)
    }
}
