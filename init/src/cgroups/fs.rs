//! The cgroupfs driver (plain `berth-runtime`, no systemd): directories in the
//! cgroup hierarchies, through cgroups-rs, on v1, hybrid and v2 hosts.
//!
//! cgroupsPath follows runc's fs driver: an absolute path is taken relative to
//! every hierarchy's root (default `/berth/<id>`). A relative path is put under
//! `/berth` (the OCI spec lets the runtime choose; runc's "relative to my own
//! cgroup" would give one container different paths in different hierarchies).
//!
//! cgroups-rs swallows some write errors (`Cgroup::apply`, `create`), so this
//! driver creates directories itself and calls the controllers' setters one
//! by one, and writes the v2 files whose semantics cgroups-rs gets wrong
//! (cpu.weight takes a converted value, memory.swap.max excludes memory,
//! io.weight is not io.bfq.weight).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::blkio::BlkIoController;
use cgroups_rs::cpu::CpuController;
use cgroups_rs::cpuset::CpuSetController;
use cgroups_rs::devices::DevicesController;
use cgroups_rs::freezer::{FreezerController, FreezerState};
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;
use cgroups_rs::{Cgroup, CgroupPid, Controller, MaxValue};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::bpf;
use super::convert;
use super::devices;
use super::naming::cgroup_path;
use super::resources::{self, Limit, Requested};
use super::{tree, CgroupError, CgroupManager, Result};

/// Where a v2 hierarchy is mounted for cgroups-rs (it does not look elsewhere).
const V2_ROOT: &str = "/sys/fs/cgroup";
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

fn cgfs(what: impl Into<String>) -> impl FnOnce(cgroups_rs::error::Error) -> CgroupError {
    let what = what.into();
    move |source| CgroupError::Cgroupfs { what, source }
}

/// One container's cgroup in the cgroupfs hierarchies.
pub struct FsManager {
    path: String,
    v2: bool,
    cg: Cgroup,
}

impl FsManager {
    pub fn new(container_id: &str, cgroups_path: Option<&str>) -> Result<Self> {
        Self::with_controllers(&cgroup_path(container_id, cgroups_path)?, None)
    }

    /// `path` is absolute within the hierarchies. On v1, `controllers` limits
    /// the hierarchies joined (cgroups-rs names, e.g. "pids", "freezer",
    /// "name=systemd"); `None` joins every mounted one, as runc does. Ignored
    /// on v2, which has one hierarchy.
    pub fn with_controllers(path: &str, controllers: Option<&[&str]>) -> Result<Self> {
        let path = cgroup_path("", Some(path))?;
        let hier = cgroups_rs::hierarchies::auto();
        let v2 = hier.v2();
        // cgroups-rs joins this onto each mount point; absolute would replace it.
        let rel = path.trim_start_matches('/').to_string();
        let cg = match (v2, controllers) {
            (false, Some(list)) => {
                let mounted: Vec<String> = hier
                    .subsystems()
                    .iter()
                    .map(|s| s.controller_name())
                    .collect();
                if let Some(missing) = list.iter().find(|c| !mounted.iter().any(|m| m == *c)) {
                    return Err(CgroupError::ControllerUnavailable {
                        controller: missing.to_string(),
                        setting: format!("joining the {missing} hierarchy"),
                        cgroup: "this host (v1 mounts)".into(),
                        available: mounted.join(" "),
                    });
                }
                let list = list.iter().map(|c| c.to_string()).collect();
                Cgroup::load_with_specified_controllers(hier, rel, list)
            }
            _ => Cgroup::load(hier, rel),
        };
        Ok(FsManager { path, v2, cg })
    }

    /// Manages an existing cgroup. On v1 only the hierarchies where it exists
    /// are joined, so a cgroup made with fewer controllers reopens as made.
    pub fn reopen(path: &str) -> Result<Self> {
        let all = Self::with_controllers(path, None)?;
        if all.v2 {
            return Ok(all);
        }
        let present: Vec<String> = all
            .cg
            .subsystems()
            .iter()
            .filter(|s| s.to_controller().path().exists())
            .map(|s| s.controller_name())
            .collect();
        if present.is_empty() {
            return Ok(all);
        }
        let names: Vec<&str> = present.iter().map(String::as_str).collect();
        Self::with_controllers(path, Some(&names))
    }

    /// Distinct directories of this cgroup (one per joined v1 hierarchy).
    pub fn dirs(&self) -> Vec<PathBuf> {
        if self.v2 {
            return vec![self.v2_dir()];
        }
        let mut dirs: Vec<PathBuf> = self
            .cg
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().to_path_buf())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn v2_dir(&self) -> PathBuf {
        Path::new(V2_ROOT).join(self.path.trim_start_matches('/'))
    }

    fn joined(&self) -> Vec<String> {
        self.cg
            .subsystems()
            .iter()
            .map(|s| s.controller_name())
            .collect()
    }

    fn check(&self, req: &Requested) -> Result<()> {
        if self.v2 {
            if let Some(list) = &req.devices {
                devices::rules(list)?;
            }
            let available = tree::read_controllers(Path::new(V2_ROOT))?;
            resources::check_controllers(&req.needs(true), &available, V2_ROOT)
        } else {
            let where_ = format!("the cgroup {} (joined v1 hierarchies)", self.path);
            resources::check_controllers(&req.needs(false), &self.joined(), &where_)
        }
    }

    /// Makes the directories; returns those that did not exist (to undo).
    fn create(&self, req: &Requested) -> Result<Vec<PathBuf>> {
        let mut created = Vec::new();
        if self.v2 {
            // Each level needs the requested controllers in its parent's
            // subtree_control, or the files would not exist below.
            let enable: Vec<String> = req
                .needs(true)
                .iter()
                .map(|n| format!("+{}", n.controller))
                .collect();
            let mut dir = PathBuf::from(V2_ROOT);
            for part in self.path.split('/').filter(|p| !p.is_empty()) {
                if !enable.is_empty() {
                    tree::write(&dir.join("cgroup.subtree_control"), &enable.join(" "))?;
                }
                dir.push(part);
                if !dir.exists() {
                    std::fs::create_dir(&dir).map_err(|e| CgroupError::io(&dir, e))?;
                    created.push(dir.clone());
                }
            }
            return Ok(created);
        }
        for dir in self.dirs() {
            if !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(|e| CgroupError::io(&dir, e))?;
                created.push(dir);
            }
        }
        // With the directories there this only runs cgroups-rs's post-create
        // step: a new v1 cpuset is empty and must copy cpus/mems from its parent.
        self.cg
            .create()
            .map_err(cgfs(format!("creating {}", self.path)))?;
        Ok(created)
    }

    fn set(&self, req: &Requested) -> Result<()> {
        let at = |what: &str| format!("setting {what} in {}", self.path);
        if let Some(mem) = self.cg.controller_of::<MemController>() {
            self.set_memory(mem, req)?;
        }
        if let Some(cpu) = self.cg.controller_of::<CpuController>() {
            if let Some(shares) = req.cpu_shares {
                if self.v2 {
                    let w = convert::shares_to_weight(shares).to_string();
                    tree::write(&self.v2_dir().join("cpu.weight"), &w)?;
                } else {
                    cpu.set_shares(shares).map_err(cgfs(at("cpu.shares")))?;
                }
            }
            if req.cpu_quota.is_some() || req.cpu_period.is_some() {
                let quota = req.cpu_quota.map(|q| if q > 0 { q } else { -1 });
                cpu.set_cfs_quota_and_period(quota, req.cpu_period)
                    .map_err(cgfs(at("cpu.quota/cpu.period")))?;
            }
        }
        if let Some(cpuset) = self.cg.controller_of::<CpuSetController>() {
            if let Some(cpus) = &req.cpus {
                cpuset.set_cpus(cpus).map_err(cgfs(at("cpu.cpus")))?;
            }
            if let Some(mems) = &req.mems {
                cpuset.set_mems(mems).map_err(cgfs(at("cpu.mems")))?;
            }
        }
        if let (Some(pids), Some(l)) = (self.cg.controller_of::<PidController>(), req.pids_max) {
            let v = match l {
                Limit::Max => MaxValue::Max,
                Limit::Value(n) => MaxValue::Value(n as i64),
            };
            pids.set_pid_max(v).map_err(cgfs(at("pids.limit")))?;
        }
        if let Some(w) = req.blkio_weight {
            if self.v2 {
                let w = format!("default {}", convert::blkio_to_io_weight(w));
                tree::write(&self.v2_dir().join("io.weight"), &w)?;
            } else if let Some(blkio) = self.cg.controller_of::<BlkIoController>() {
                blkio
                    .set_weight(u64::from(w))
                    .map_err(cgfs(at("blockIO.weight")))?;
            }
        }
        self.set_throttle(req)?;
        if let (true, Some(list)) = (self.v2, &req.devices) {
            // v2 has no devices files: a BPF program attached to the cgroup.
            bpf::set_device_rules(&self.v2_dir(), &devices::rules(list)?)?;
        }
        if let (false, Some(list)) = (self.v2, &req.devices) {
            if let Some(dev) = self.cg.controller_of::<DevicesController>() {
                // v1 takes the rules as given, in order.
                for r in devices::rules(list)? {
                    let file = if r.allow {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    tree::write(&dev.path().join(file), &r.v1_line())?;
                }
            }
        }
        Ok(())
    }

    /// blockIO.throttle*: v1's blkio.throttle.* files take one rule per
    /// write; v2's io.max one line per device.
    fn set_throttle(&self, req: &Requested) -> Result<()> {
        if req.throttle.is_empty() {
            return Ok(());
        }
        if self.v2 {
            for line in super::resources::io_max_lines(&req.throttle) {
                tree::write(&self.v2_dir().join("io.max"), &line)?;
            }
        } else if let Some(blkio) = self.cg.controller_of::<BlkIoController>() {
            for t in &req.throttle {
                let line = format!("{}:{} {}", t.major, t.minor, t.rate);
                tree::write(&blkio.path().join(t.kind.v1_file()), &line)?;
            }
        }
        Ok(())
    }

    /// The v1-only memory files (v2 has neither: ignored there, as runc does).
    fn set_memory_v1_extras(&self, mem: &MemController, req: &Requested) -> Result<()> {
        if let Some(sw) = req.swappiness {
            tree::write(&mem.path().join("memory.swappiness"), &sw.to_string())?;
        }
        if req.oom_kill_disable {
            tree::write(&mem.path().join("memory.oom_control"), "1")?;
        }
        Ok(())
    }

    fn set_memory(&self, mem: &MemController, req: &Requested) -> Result<()> {
        let at = |what: &str| format!("setting {what} in {}", self.path);
        if self.v2 {
            let dir = self.v2_dir();
            let files = [
                ("memory.max", req.memory_max),
                ("memory.low", req.memory_low),
                ("memory.swap.max", req.swap_max),
            ];
            for (file, l) in files {
                if let Some(l) = l {
                    tree::write(&dir.join(file), &l.v2())?;
                }
            }
            return Ok(());
        }
        let as_i64 = |l: Limit| match l {
            Limit::Max => -1,
            Limit::Value(v) => v as i64,
        };
        let limit = |l: Limit| mem.set_limit(as_i64(l)).map_err(cgfs(at("memory.limit")));
        let memsw = |l: Limit| {
            mem.set_memswap_limit(as_i64(l))
                .map_err(cgfs(at("memory.swap")))
        };
        match (req.memory_max, req.memsw) {
            // The kernel wants memory <= memory+swap at every step, so raising
            // memsw goes first and lowering it last (runc's order).
            (Some(m), Some(sw)) => {
                let cur = tree::read(&mem.path().join("memory.limit_in_bytes"))?;
                let cur: u64 = cur.parse().unwrap_or(u64::MAX);
                let raise = matches!(sw, Limit::Max) || matches!(sw, Limit::Value(v) if v > cur);
                if raise {
                    memsw(sw)?;
                    limit(m)?;
                } else {
                    limit(m)?;
                    memsw(sw)?;
                }
            }
            (Some(m), None) => limit(m)?,
            (None, Some(sw)) => memsw(sw)?,
            (None, None) => {}
        }
        if let Some(l) = req.memory_low {
            mem.set_soft_limit(as_i64(l))
                .map_err(cgfs(at("memory.reservation")))?;
        }
        self.set_memory_v1_extras(mem, req)
    }

    fn freezer(&self) -> Result<&FreezerController> {
        self.cg.controller_of::<FreezerController>().ok_or_else(|| {
            CgroupError::ControllerUnavailable {
                controller: "freezer".into(),
                setting: "pausing the container".into(),
                cgroup: format!("the cgroup {} (joined v1 hierarchies)", self.path),
                available: self.joined().join(" "),
            }
        })
    }

    fn frozen(&self) -> Result<bool> {
        if self.v2 {
            let events = tree::read(&self.v2_dir().join("cgroup.events"))?;
            return Ok(events.lines().any(|l| l.trim() == "frozen 1"));
        }
        let state = self
            .freezer()?
            .state()
            .map_err(cgfs(format!("reading freezer.state of {}", self.path)))?;
        Ok(matches!(state, FreezerState::Frozen))
    }

    fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.exists())
    }
}

impl CgroupManager for FsManager {
    fn apply(&mut self, pid: i32, resources: Option<&LinuxResources>) -> Result<()> {
        let req = Requested::from_oci(resources)?;
        self.check(&req)?;
        let created = self.create(&req)?;
        let placed = self.set(&req).and_then(|()| {
            let pid = u64::try_from(pid)
                .ok()
                .filter(|&p| p > 0)
                .ok_or(CgroupError::InvalidPid(pid))?;
            self.cg
                .add_task_by_tgid(CgroupPid::from(pid))
                .map_err(cgfs(format!("moving pid {pid} into {}", self.path)))
        });
        if let Err(e) = placed {
            // Undo only what this call made; the caller kills `pid`.
            for dir in created.iter().rev() {
                let _ = tree::remove_tree(dir, Duration::from_millis(100));
            }
            return Err(e);
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        let freezer = self.freezer()?;
        let what = format!("{} to freeze", self.path);
        let result = tree::wait_for(&what, FREEZE_TIMEOUT, || {
            // v1 can stay FREEZING while tasks fork; writing FROZEN again
            // retries the freeze (what runc does).
            freezer
                .freeze()
                .map_err(cgfs(format!("freezing {}", self.path)))?;
            self.frozen()
        });
        if result.is_err() {
            let _ = freezer.thaw();
        }
        result
    }

    fn thaw(&self) -> Result<()> {
        self.freezer()?
            .thaw()
            .map_err(cgfs(format!("thawing {}", self.path)))
    }

    fn is_frozen(&self) -> Result<bool> {
        self.frozen()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let dir = if self.v2 {
            Some(self.v2_dir())
        } else {
            // Every joined hierarchy holds every process; prefer freezer or pids.
            let subs = self.cg.subsystems();
            ["freezer", "pids"]
                .iter()
                .find_map(|c| subs.iter().find(|s| s.controller_name() == *c))
                .or(subs.first())
                .map(|s| s.to_controller().path().to_path_buf())
        };
        match dir {
            Some(dir) if dir.exists() => tree::procs_recursive(&dir),
            _ => Ok(Vec::new()),
        }
    }

    fn update(&mut self, resources: &LinuxResources) -> Result<()> {
        let req = Requested::from_oci(Some(resources))?;
        self.check(&req)?;
        self.set(&req)
    }

    fn destroy(&mut self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        if self.frozen().unwrap_or(false) {
            self.thaw()?;
        }
        let kill_file = self.v2_dir().join("cgroup.kill");
        if self.v2 && kill_file.exists() {
            tree::write(&kill_file, "1")?;
        }
        tree::wait_for(
            &format!("the processes in {} to die", self.path),
            DRAIN_TIMEOUT,
            || {
                let pids = self.pids()?;
                for pid in &pids {
                    // Only pids inside this container's cgroup (never the root:
                    // cgroup_path refuses it).
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
                Ok(pids.is_empty())
            },
        )?;
        for dir in self.dirs() {
            tree::remove_tree(&dir, DRAIN_TIMEOUT)?;
        }
        Ok(())
    }

    fn path(&self) -> String {
        self.path.clone()
    }
}
