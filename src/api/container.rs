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
        crate::api::verbs::start(conn, &self.daemon, &self.id).await
    }

    async fn kill(
        &self,
        who: &str,
        signal: i32,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::lifecycle::kill(&self.daemon, &self.id, who, signal).await
    }

    async fn pause(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::verbs::set_paused(conn, &self.daemon, &self.id, true).await
    }

    async fn resume(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::verbs::set_paused(conn, &self.daemon, &self.id, false).await
    }

    async fn exec(
        &self,
        process_json: &str,
        options: HashMap<String, zbus::zvariant::OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<String> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::verbs::exec(&self.daemon, &self.id, process_json, &options).await
    }

    /// See Manager.ExecContainerAndWait.
    async fn exec_and_wait(
        &self,
        process_json: &str,
        options: HashMap<String, zbus::zvariant::OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<(String, i32, i32)> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::verbs::exec_and_wait(&self.daemon, &self.id, process_json, &options).await
    }

    /// UpdateContainer of this container.
    async fn update(
        &self,
        resources: HashMap<String, zbus::zvariant::OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::lifecycle::update(conn, &self.daemon, &self.id, &resources).await
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
        crate::api::verbs::delete(conn, &self.daemon, &self.id, force).await
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

    /// See Manager.KillExec.
    async fn kill_exec(
        &self,
        exec_id: &str,
        signal: i32,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        crate::api::require_root(conn, &hdr).await?;
        Ok(self.daemon.kill_exec(&self.id, exec_id, signal)?)
    }

    /// See Manager.WaitExec.
    async fn wait_exec(&self, exec_id: &str) -> Result<(i32, i32)> {
        Ok(self.daemon.wait_exec(&self.id, exec_id).await?)
    }

    /// See Manager.GetContainerStats.
    async fn get_stats(&self) -> Result<HashMap<String, zbus::zvariant::OwnedValue>> {
        crate::api::verbs::stats(&self.daemon, &self.id)
    }

    /// See Manager.RunHealthcheck.
    async fn run_healthcheck(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<(String, i32)> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::lifecycle::run_healthcheck(conn, &self.daemon, &self.id).await
    }

    /// See Manager.TopContainer.
    async fn top(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<Vec<crate::top::ProcessRow>> {
        crate::api::authorize(conn, &hdr, crate::api::READ_ACTION).await?;
        crate::api::lifecycle::top(&self.daemon, &self.id)
    }

    /// See Manager.CopyFromContainer.
    async fn copy_from(
        &self,
        path: &str,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        crate::api::require_root(conn, &hdr).await?;
        Ok(crate::api::copy::copy_from(&self.daemon, &self.id, path)
            .await?
            .into())
    }

    /// See Manager.CopyToContainer.
    async fn copy_to(
        &self,
        path: &str,
        archive: zbus::zvariant::OwnedFd,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<u32> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::copy::copy_to(&self.daemon, &self.id, path, archive.into()).await
    }

    /// See Manager.CommitContainer.
    async fn commit(
        &self,
        image: &str,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<(String, String)> {
        crate::api::require_root(conn, &hdr).await?;
        crate::api::copy::commit(&self.daemon, &self.id, image).await
    }

    /// See Manager.ExportContainer.
    async fn export(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        crate::api::require_root(conn, &hdr).await?;
        Ok(crate::api::copy::export(&self.daemon, &self.id)
            .await?
            .into())
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

    /// starting, healthy or unhealthy; "" without a health check.
    #[zbus(property)]
    fn health(&self) -> String {
        crate::health::status(&self.rec())
    }

    /// Times its restart policy (or health check) ran it again.
    #[zbus(property)]
    fn restart_count(&self) -> u32 {
        crate::restart::count(&self.rec())
    }

    /// no, on-failure[:N], always or unless-stopped.
    #[zbus(property(emits_changed_signal = "const"))]
    fn restart_policy(&self) -> String {
        let rec = self.rec();
        rec.restart.map(|r| r.policy).unwrap_or_default().name()
    }

    /// Its resource limits (UpdateContainer's keys, only those set): as
    /// created, or as the last UpdateContainer left them.
    #[zbus(property)]
    async fn resources(&self) -> HashMap<String, zbus::zvariant::OwnedValue> {
        self.daemon
            .resources_of(&self.id)
            .await
            .map(|r| crate::resources::to_dict(&r))
            .unwrap_or_default()
    }

    /// The image reference it was created from ("" for a bundle).
    #[zbus(property(emits_changed_signal = "const"))]
    fn image(&self) -> String {
        self.rec().image
    }

    /// The bundle's process.args (with a create's override applied): what
    /// `berthctl ps` shows as COMMAND. Empty if config.json cannot be read.
    #[zbus(property(emits_changed_signal = "const"))]
    async fn command(&self) -> Vec<String> {
        // A bundle container whose create changed its spec (args, env…)
        // runs from the copy berthd wrote under bundles_dir, not its bundle.
        let derived = self.daemon.bundles_dir.join(&self.id).join("config.json");
        let given = std::path::Path::new(&self.rec().bundle).join("config.json");
        // File reads: on the blocking pool, not an executor thread.
        tokio::task::spawn_blocking(move || {
            if derived.exists() {
                process_args(&derived)
            } else {
                process_args(&given)
            }
        })
        .await
        .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn labels(&self) -> HashMap<String, String> {
        self.rec().labels.into_iter().collect()
    }

    /// The network as asked: a network's name, "none", "host",
    /// "container:<id>"; "" = the bundle's own namespaces.
    #[zbus(property(emits_changed_signal = "const"))]
    fn network(&self) -> String {
        self.rec().net.map(|n| n.mode).unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"), name = "IPAddress")]
    fn ip_address(&self) -> String {
        self.rec().net.map(|n| n.addresses.ipv4).unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"), name = "IPv6Address")]
    fn ipv6_address(&self) -> String {
        self.rec().net.map(|n| n.addresses.ipv6).unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn gateway(&self) -> String {
        self.rec()
            .net
            .map(|n| n.addresses.gateway)
            .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"), name = "MACAddress")]
    fn mac_address(&self) -> String {
        self.rec().net.map(|n| n.addresses.mac).unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn hostname(&self) -> String {
        self.rec().net.map(|n| n.hostname).unwrap_or_default()
    }

    /// Published ports: (host IP, host port, container port, protocol).
    #[zbus(property(emits_changed_signal = "const"))]
    fn ports(&self) -> Vec<(String, u16, u16, String)> {
        let ports = self.rec().net.map(|n| n.ports).unwrap_or_default();
        ports
            .into_iter()
            .map(|p| (p.host_ip, p.host_port, p.container_port, p.protocol))
            .collect()
    }
}

/// process.args of the config.json at `path`; empty when unreadable.
fn process_args(path: &std::path::Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Process {
        #[serde(default)]
        args: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        process: Option<Process>,
    }
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Config>(&b).ok())
        .and_then(|c| c.process)
        .map(|p| p.args)
        .unwrap_or_default()
}
