//! The systemd driver: a container is a transient scope unit with
//! `Delegate=yes`, made and managed over D-Bus (org.freedesktop.systemd1).
//! The typed proxies here are shared with berthd.
//!
//! Why a scope: systemd owns the cgroup tree on systemd hosts, so a cgroup made
//! behind its back is moved or trimmed at the next reload; a scope adopts an
//! existing process (the container init, blocked before exec) in one call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

use super::naming::{bad_path, slices, unit_in, DEFAULT_SLICE};
use super::properties::{self, Property};
use super::resources::{self, Requested};
pub use super::systemd_jobs::use_private_bus;
use super::systemd_jobs::{systemd_error, CallError, JobCalls};
use super::{tree, CgroupError, CgroupManager, Result};

/// The bound on every systemd job we wait for (scope start, stop).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(30);

const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const NOT_LOADED: &str = "org.freedesktop.systemd1.LoadFailed";

/// The JobRemoved signals of systemd's manager. No `Subscribe` is needed for
/// them: systemd sends a job's JobNew/JobRemoved whenever the client that
/// asked for the job is still connected (the job tracks its requester), so
/// one AddMatch (to dbus-daemon) is all a wait costs. The sender is the
/// well-known name, which dbus-daemon resolves; zbus checks only unique ones.
pub(super) const JOB_REMOVED_RULE: &str = "type='signal',sender='org.freedesktop.systemd1',\
     path='/org/freedesktop/systemd1',interface='org.freedesktop.systemd1.Manager',\
     member='JobRemoved'";

/// Signals queued for one wait before the oldest are dropped: a busy
/// systemd (many containers made at once) removes many jobs meanwhile.
pub(super) const JOB_QUEUE: usize = 1024;

/// The system bus connection every manager of this process shares, made on
/// first use. A connection costs an authentication and a Hello round trip
/// plus zbus's threads; berthd deletes, kills and pauses through one, and a
/// shim makes its container's scope and its own on one. Made lazily, never
/// before berth-init's create has forked the init (a process with zbus's
/// threads must not fork).
static BUS: Mutex<Option<zbus::blocking::Connection>> = Mutex::new(None);

/// The shared connection (made now if there is none yet).
pub fn system_bus() -> zbus::Result<zbus::blocking::Connection> {
    let mut bus = BUS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(conn) = bus.as_ref() {
        return Ok(conn.clone());
    }
    let conn = zbus::blocking::Connection::system()?;
    *bus = Some(conn.clone());
    Ok(conn)
}

/// Keeps the JobRemoved match of the shared connection for the process's
/// life, for a long-lived caller (berthd) that waits for many jobs. zbus
/// asks dbus-daemon for a match rule only for its first stream and drops it
/// with its last, so without this each scope start and stop costs an
/// AddMatch and a RemoveMatch round trip; with it, none. The stream is
/// drained by a thread of its own (a full stream would hold up the
/// connection's reader); it ends with the connection.
pub fn hold_job_match() -> zbus::Result<()> {
    let conn = system_bus()?;
    let rule = zbus::MatchRule::try_from(JOB_REMOVED_RULE)?;
    let held = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(JOB_QUEUE))?;
    thread::Builder::new()
        .name("job-match".into())
        .spawn(move || held.for_each(drop))
        .map_err(|e| zbus::Error::InputOutput(Arc::new(e)))?;
    Ok(())
}

/// Drops the shared connection after an I/O error on it (the bus restarted,
/// say), so that the next manager connects afresh instead of failing forever.
fn forget_bus_on(e: &zbus::Error) {
    if matches!(e, zbus::Error::InputOutput(_)) {
        *BUS.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = true
)]
pub trait Manager {
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn freeze_unit(&self, name: &str) -> zbus::Result<()>;
    fn thaw_unit(&self, name: &str) -> zbus::Result<()>;
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn set_unit_properties(
        &self,
        name: &str,
        runtime: bool,
        properties: &[(&str, Value<'_>)],
    ) -> zbus::Result<()>;
    /// Signals for every unit and job. Waiting for one's own jobs needs no
    /// subscription (see JOB_REMOVED_RULE); kept for callers that watch more.
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = true
)]
pub trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn description(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn freezer_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Scope",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = true
)]
pub trait Scope {
    #[zbus(property)]
    fn control_group(&self) -> zbus::Result<String>;
}

/// A container's scope. Cheap to create: it uses the process's shared
/// system bus connection ([`system_bus`]) unless given one.
pub struct SystemdManager {
    bus: ManagerProxyBlocking<'static>,
    unit: String,
    slice: String,
    description: String,
}

impl SystemdManager {
    pub fn new(container_id: &str, cgroups_path: Option<&str>) -> Result<Self> {
        let (slice, unit) = unit_in(container_id, cgroups_path, slices())?;
        let mut m = Self::reopen(&unit)?;
        m.slice = slice;
        m.description = container_description(container_id);
        Ok(m)
    }

    /// Manages an existing unit (the name `path()` returned).
    pub fn reopen(unit: &str) -> Result<Self> {
        if !unit.ends_with(".scope") || unit.contains('/') {
            return Err(bad_path(
                unit,
                "expected a scope unit name like berth-<id>.scope",
            ));
        }
        let sd = |source: zbus::Error| CgroupError::Systemd {
            op: "connecting to the system bus for",
            unit: unit.into(),
            source: Box::new(source.into()),
        };
        let conn = system_bus().map_err(sd)?;
        Self::with_connection(&conn, unit)
    }

    /// For callers (berthd) that already hold a system bus connection.
    pub fn with_connection(conn: &zbus::blocking::Connection, unit: &str) -> Result<Self> {
        // No property cache: systemd's Manager has ~150 properties, and a
        // GetAll on every connection would cost more than the scope itself.
        let bus = ManagerProxyBlocking::builder(conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .map_err(|source| CgroupError::Systemd {
                op: "creating a proxy for",
                unit: unit.into(),
                source: Box::new(source.into()),
            })?;
        Ok(SystemdManager {
            bus,
            unit: unit.into(),
            slice: DEFAULT_SLICE.into(),
            description: format!("berth {unit}"),
        })
    }

    pub fn unit(&self) -> &str {
        &self.unit
    }

    fn err<E: Into<CallError>>(&self, op: &'static str) -> impl Fn(E) -> CgroupError + '_ {
        move |source| {
            let source = source.into();
            if let CallError::Bus(e) = &source {
                forget_bus_on(e);
            }
            systemd_error(op, &self.unit, source)
        }
    }

    /// The scope's cgroup directory, from its ControlGroup property; `None`
    /// while the unit has no cgroup (not running). Never the tree's root: an
    /// empty ControlGroup must not turn `kill --all` into "kill everything".
    pub fn cgroup_dir(&self) -> Result<Option<PathBuf>> {
        let path = self.bus.get_unit(&self.unit).map_err(self.err("GetUnit"))?;
        let scope = ScopeProxyBlocking::builder(self.bus.inner().connection())
            .path(path)
            .and_then(|b| b.cache_properties(zbus::proxy::CacheProperties::No).build())
            .map_err(self.err("reading ControlGroup of"))?;
        let cg = scope
            .control_group()
            .map_err(self.err("reading ControlGroup of"))?;
        let cg = cg.trim_matches('/');
        if cg.is_empty() {
            return Ok(None);
        }
        // Hybrid/unified systemd mirror their tree in cgroup2; legacy only in name=systemd.
        let root = tree::v2_root().unwrap_or_else(|| "/sys/fs/cgroup/systemd".into());
        Ok(Some(root.join(cg)))
    }

    fn unit_proxy(&self) -> Result<UnitProxyBlocking<'static>> {
        let path = self.bus.get_unit(&self.unit).map_err(self.err("GetUnit"))?;
        UnitProxyBlocking::builder(self.bus.inner().connection())
            .path(path)
            .and_then(|b| b.cache_properties(zbus::proxy::CacheProperties::No).build())
            .map_err(self.err("opening"))
    }

    /// systemd enables controllers down to a unit on demand, so what it *can*
    /// give a scope is what its root cgroup has: on a unified host the root's
    /// cgroup.controllers, on hybrid/legacy hosts the mounted v1 controllers.
    fn check_controllers(&self, req: &Requested) -> Result<()> {
        if tree::unified_host() {
            let root = Path::new("/sys/fs/cgroup");
            let available = tree::read_controllers(root)?;
            resources::check_controllers(
                &req.needs(true),
                &available,
                "/sys/fs/cgroup (systemd's root)",
            )
        } else {
            let available = tree::v1_controllers();
            resources::check_controllers(&req.needs(false), &available, "this host (v1 mounts)")
        }
    }

    fn resource_properties(&self, req: &Requested) -> Result<Vec<Property>> {
        let proc_devices = match req.devices {
            Some(_) => tree::read(Path::new("/proc/devices"))?,
            None => String::new(),
        };
        properties::resource_properties(req, &proc_devices)
    }

    fn start(&self, props: &[Property]) -> Result<()> {
        let props: Vec<(&str, Value<'_>)> = props.iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut calls = JobCalls::open(&self.bus).map_err(self.err("watching jobs of"))?;
        let job = match calls.start_transient_unit(&self.unit, &props) {
            Ok(job) => job,
            // A failed earlier run stays loaded as "failed" under this name
            // until reset; an active unit stays, and the retry reports it.
            Err(e) if e.name() == Some(UNIT_EXISTS) => {
                let _ = calls.reset_failed_unit(&self.unit);
                match calls.start_transient_unit(&self.unit, &props) {
                    Ok(job) => job,
                    Err(e) if e.name() == Some(UNIT_EXISTS) => {
                        return Err(CgroupError::UnitExists {
                            unit: self.unit.clone(),
                        })
                    }
                    Err(e) => return Err(self.err("StartTransientUnit")(e)),
                }
            }
            Err(e) => return Err(self.err("StartTransientUnit")(e)),
        };
        if let Err(e) = calls.wait(&[(&self.unit, &job)], "StartTransientUnit") {
            // Leave nothing behind: a failed scope stays loaded until reset
            // (once its stop is done, so the reset finds it stopped).
            if let Ok(stop) = calls.stop_unit(&self.unit) {
                let _ = calls.wait(&[(&self.unit, &stop)], "StopUnit");
            }
            let _ = calls.reset_failed_unit(&self.unit);
            return Err(e);
        }
        Ok(())
    }
}

impl CgroupManager for SystemdManager {
    fn apply(&mut self, pid: i32, resources: Option<&LinuxResources>) -> Result<()> {
        let req = Requested::from_oci(resources)?;
        // Checked before the scope exists, so a refusal leaves nothing behind.
        self.check_controllers(&req)?;
        let pid = u32::try_from(pid)
            .ok()
            .filter(|&p| p > 0)
            .ok_or(CgroupError::InvalidPid(pid))?;
        let mut props: Vec<Property> = vec![
            ("Description", Value::from(self.description.clone())),
            ("Slice", Value::from(self.slice.clone())),
            // The container may run its own systemd or make sub-cgroups.
            ("Delegate", Value::from(true)),
            ("PIDs", Value::from(vec![pid])),
            // No implicit ordering against shutdown.target etc.: berth
            // stops containers itself.
            ("DefaultDependencies", Value::from(false)),
        ];
        props.extend(self.resource_properties(&req)?);
        self.start(&props)
    }

    fn freeze(&self) -> Result<()> {
        // systemd replies once the cgroup reports frozen.
        self.bus
            .freeze_unit(&self.unit)
            .map_err(self.err("FreezeUnit"))
    }

    fn thaw(&self) -> Result<()> {
        self.bus.thaw_unit(&self.unit).map_err(self.err("ThawUnit"))
    }

    fn is_frozen(&self) -> Result<bool> {
        let state = self
            .unit_proxy()?
            .freezer_state()
            .map_err(self.err("reading FreezerState of"))?;
        Ok(state == "frozen")
    }

    fn pids(&self) -> Result<Vec<i32>> {
        match self.cgroup_dir() {
            Ok(Some(dir)) => tree::procs_recursive(&dir),
            Ok(None) => Ok(Vec::new()),
            // A unit that is gone has no processes.
            Err(CgroupError::Systemd { source, .. }) if source.name() == Some(NO_SUCH_UNIT) => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    fn update(&mut self, resources: &LinuxResources) -> Result<()> {
        let req = Requested::from_oci(Some(resources))?;
        self.check_controllers(&req)?;
        let mut props = Vec::new();
        if req.devices.is_some() {
            // systemd appends DeviceAllow= entries; an empty list resets
            // them, so the new rules replace the old instead of adding up.
            props.push(("DevicePolicy", Value::from("auto")));
            props.push(("DeviceAllow", Value::from(Vec::<(String, String)>::new())));
        }
        props.extend(self.resource_properties(&req)?);
        let props: Vec<(&str, Value<'_>)> = props.iter().map(|(k, v)| (*k, v.clone())).collect();
        self.bus
            .set_unit_properties(&self.unit, true, &props)
            .map_err(self.err("SetUnitProperties"))
    }

    fn destroy(&mut self) -> Result<()> {
        destroy_units(
            self.bus.inner().connection(),
            std::slice::from_ref(&self.unit),
        )
    }

    fn path(&self) -> String {
        self.unit.clone()
    }
}

/// Container `id`'s scope `unit`, stopped and reset if systemd has it and
/// its Description is the one [`SystemdManager::new`] gives (a unit of
/// someone else's under that name stays). True if one was removed.
pub fn destroy_scope_of(unit: &str, id: &str) -> Result<bool> {
    let mut m = SystemdManager::reopen(unit)?;
    let description = match m
        .unit_proxy()
        .and_then(|u| u.description().map_err(m.err("reading the Description of")))
    {
        Ok(d) => d,
        Err(CgroupError::Systemd { source, .. })
            if matches!(source.name(), Some(NO_SUCH_UNIT) | Some(NOT_LOADED)) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    if description != container_description(id) {
        return Ok(false);
    }
    m.destroy()?;
    Ok(true)
}

fn container_description(id: &str) -> String {
    format!("berth container {id}")
}

/// [`destroy_units`] on the shared connection, for scope names as `path()`
/// gave them.
pub fn destroy_scopes(units: &[String]) -> Result<()> {
    let Some(first) = units.first() else {
        return Ok(());
    };
    for unit in units {
        if !unit.ends_with(".scope") || unit.contains('/') {
            return Err(bad_path(
                unit,
                "expected a scope unit name like berth-<id>.scope",
            ));
        }
    }
    let conn = system_bus().map_err(|source| CgroupError::Systemd {
        op: "connecting to the system bus for",
        unit: first.clone(),
        source: Box::new(source.into()),
    })?;
    destroy_units(&conn, units)
}

/// SIGKILLs what is left in each unit (thawing first where the v1 freezer
/// would hold a kill back), stops the units and resets them, and returns
/// once they are gone: a new unit may take the same name right after.
/// Units are handled together — every call goes out before the replies are
/// awaited, and all stop jobs are waited for at once — so a second unit (a
/// container's shim scope) costs little more than a round trip.
///
/// A unit that does not exist is already what we want; the usual case after
/// a container exited is a scope systemd collected by itself, which costs
/// one call here.
pub fn destroy_units(conn: &zbus::blocking::Connection, units: &[String]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let managers = units
        .iter()
        .map(|u| SystemdManager::with_connection(conn, u))
        .collect::<Result<Vec<_>>>()?;
    let gone = |e: &CallError| matches!(e.name(), Some(NO_SUCH_UNIT) | Some(NOT_LOADED));
    // Frozen tasks cannot act on SIGKILL under the v1 freezer (cgroup v2
    // delivers fatal signals to frozen tasks: nothing to do there).
    if !tree::unified_host() {
        for m in &managers {
            if m.is_frozen().unwrap_or(false) {
                let _ = m.thaw();
            }
        }
    }
    let Some(first) = managers.first() else {
        return Ok(());
    };
    // Opened before any call (on the system bus, the JobRemoved stream must
    // be there before a fast job ends; berthd holds the rule for its life,
    // so no AddMatch per delete there).
    let mut calls = JobCalls::open(&first.bus).map_err(first.err("watching jobs of"))?;
    // SIGKILL first: stopping alone sends SIGTERM, which a container's
    // pid 1 ignores, and then waits TimeoutStopSec (90 s) for it. No reply
    // awaited (a round trip spared per delete): systemd handles a
    // connection's messages in order, so the kill is done before the stop
    // below is looked at, and the stop's answer says whether the unit is
    // there at all (a kill's error — gone, or nothing left to kill in an
    // empty scope — changes nothing the stop does not see).
    for m in &managers {
        calls.send("KillUnit", &(m.unit.as_str(), "all", libc::SIGKILL));
    }
    let mut pending = Vec::new();
    let mut refused = Ok(());
    for m in &managers {
        match calls.stop_unit(&m.unit) {
            Ok(job) => pending.push((m.unit.as_str(), job)),
            Err(e) if gone(&e) => {}
            // The other units' stops still go ahead and are waited for.
            Err(e) => refused = refused.and(Err(m.err("StopUnit")(e))),
        }
    }
    let waits: Vec<(&str, &str)> = pending.iter().map(|(u, j)| (*u, j.as_str())).collect();
    let result = refused.and(calls.wait(&waits, "StopUnit"));
    for (unit, _) in &pending {
        // A scope whose processes were killed may end "failed" and would
        // then keep its name taken until reset. No reply awaited: systemd
        // handles a connection's messages in order, so the reset is done
        // before anything a caller does after we return (a create under the
        // same name) reaches it, and a reset that fails changes nothing.
        calls.send("ResetFailedUnit", &(*unit,));
    }
    result
}
