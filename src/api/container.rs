//! One object per container: io.berth.Berth1.Container — the same verbs as
//! the Manager without the id, and the container's state as properties.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::interface;

use crate::api::error::Result;
use crate::daemon::Daemon;
use crate::store::ContainerRecord;

pub struct ContainerObject {
    pub daemon: Arc<Daemon>,
    pub id: String,
}

impl ContainerObject {
    fn rec(&self) -> ContainerRecord {
        self.daemon.get(&self.id).unwrap_or_default()
    }
}

#[interface(name = "io.berth.Berth1.Container")]
impl ContainerObject {
    async fn start(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::manager::start(conn, &self.daemon, &self.id).await
    }

    async fn kill(
        &self,
        who: &str,
        signal: i32,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        Ok(self.daemon.kill(&self.id, who, signal).await?)
    }

    async fn pause(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::manager::set_paused(conn, &self.daemon, &self.id, true).await
    }

    async fn resume(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::manager::set_paused(conn, &self.daemon, &self.id, false).await
    }

    async fn exec(
        &self,
        process_json: &str,
        options: HashMap<String, zbus::zvariant::OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<String> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::manager::exec(&self.daemon, &self.id, process_json, &options).await
    }

    async fn wait(&self) -> Result<(i32, i32)> {
        Ok(self.daemon.wait(&self.id).await?)
    }

    async fn delete(
        &self,
        force: bool,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::manager::delete(conn, &self.daemon, &self.id, force).await
    }

    /// See Manager.AttachContainer.
    async fn attach(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        crate::api::require_root(conn, &hdr).await?;
        Ok(crate::streams::attach(&self.daemon.run_dir, &self.id, "")?.into())
    }

    /// See Manager.WaitExec.
    async fn wait_exec(&self, exec_id: &str) -> Result<(i32, i32)> {
        Ok(self.daemon.wait_exec(&self.id, exec_id).await?)
    }

    /// See Manager.GetContainerStats.
    async fn get_stats(&self) -> Result<HashMap<String, zbus::zvariant::OwnedValue>> {
        crate::api::manager::stats(&self.daemon, &self.id)
    }

    /// See Manager.AttachExec.
    async fn attach_exec(
        &self,
        exec_id: &str,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        crate::api::require_root(conn, &hdr).await?;
        Ok(crate::streams::attach(&self.daemon.run_dir, &self.id, exec_id)?.into())
    }

    /// See Manager.ResizeTerminal.
    async fn resize_terminal(
        &self,
        exec_id: &str,
        rows: u16,
        cols: u16,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        Ok(crate::streams::resize(
            &self.daemon.run_dir,
            &self.id,
            exec_id,
            rows,
            cols,
        )?)
    }

    /// See Manager.GetLogs.
    async fn logs(
        &self,
        options: HashMap<String, zbus::zvariant::OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        crate::api::authorize(conn, &hdr, crate::api::READ_ACTION).await?;
        let req = crate::streams::LogsRequest::parse(&options)?;
        Ok(crate::streams::logs(&self.daemon, &self.id, &req)?.into())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> String {
        self.id.clone()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn bundle(&self) -> String {
        self.rec().bundle
    }

    /// "" once the record is gone (the object goes with it).
    #[zbus(property)]
    fn status(&self) -> String {
        let rec = self.daemon.get(&self.id);
        rec.map_or("", |r| r.status.as_str()).to_string()
    }

    #[zbus(property)]
    fn pid(&self) -> u32 {
        crate::api::shown_pid(&self.rec())
    }

    /// The image it was created from, as the caller named it ("" for a
    /// bundle).
    #[zbus(property(emits_changed_signal = "const"))]
    fn image(&self) -> String {
        self.rec().image
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn unit(&self) -> String {
        self.rec().unit
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn created_at(&self) -> u64 {
        self.rec().created_at
    }

    #[zbus(property)]
    fn started_at(&self) -> u64 {
        self.rec().started_at
    }

    #[zbus(property)]
    fn exited_at(&self) -> u64 {
        self.rec().exited_at
    }

    #[zbus(property)]
    fn exit_code(&self) -> i32 {
        self.rec().exit_code
    }

    #[zbus(property)]
    fn exit_signal(&self) -> i32 {
        self.rec().exit_signal
    }

    /// How it stopped: "" (not yet), "exited" (its shim saw the exit), or
    /// "shim died" (the shim went without an exit record; ExitCode -1), or
    /// "shim died: <why>" (its exit record could not be read).
    #[zbus(property)]
    fn exit_reason(&self) -> String {
        self.rec().exit_reason
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn labels(&self) -> HashMap<String, String> {
        self.rec().labels.into_iter().collect()
    }
}
