//! What a container asked for in `linux.resources`, validated once, so both
//! drivers apply the same settings (numbers converted in [`super::convert`]),
//! and which controller each setting needs.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use super::convert::{invalid, list_to_bitmask, swap_only};
use super::{CgroupError, Result};

/// A limit that may be "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max,
    Value(u64),
}

impl Limit {
    /// systemd spells "infinity" as u64::MAX on the bus.
    pub fn systemd(self) -> u64 {
        match self {
            Limit::Max => u64::MAX,
            Limit::Value(v) => v,
        }
    }

    /// The spelling of cgroup v2 files ("max").
    pub fn v2(self) -> String {
        match self {
            Limit::Max => "max".into(),
            Limit::Value(v) => v.to_string(),
        }
    }

    /// The spelling of cgroup v1 files (-1).
    pub fn v1(self) -> String {
        match self {
            Limit::Max => "-1".into(),
            Limit::Value(v) => v.to_string(),
        }
    }

    pub fn is_limited(self) -> bool {
        matches!(self, Limit::Value(_))
    }
}

/// The settings berth applies. `None` means "not given": nothing is written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Requested {
    pub memory_max: Option<Limit>,
    pub memory_low: Option<Limit>,
    /// OCI's memory.swap is memory+swap: as given, for v1's memsw file ...
    pub memsw: Option<Limit>,
    /// ... and converted to swap alone, for v2's memory.swap.max and systemd.
    pub swap_max: Option<Limit>,
    pub cpu_shares: Option<u64>,
    /// Raw OCI quota (µs per period); <= 0 means unlimited.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
    pub pids_max: Option<Limit>,
    pub blkio_weight: Option<u16>,
    /// blockIO.throttle*Device, in the spec's order.
    pub throttle: Vec<Throttle>,
    /// memory.swappiness (0–100): a cgroup v1 file only.
    pub swappiness: Option<u64>,
    /// memory.disableOOMKiller: a cgroup v1 file only (memory.oom_control).
    pub oom_kill_disable: bool,
    pub devices: Option<Vec<LinuxDeviceCgroup>>,
}

/// What a blockIO.throttle* entry limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleKind {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl ThrottleKind {
    /// The cgroup v1 file.
    pub fn v1_file(self) -> &'static str {
        match self {
            ThrottleKind::ReadBps => "blkio.throttle.read_bps_device",
            ThrottleKind::WriteBps => "blkio.throttle.write_bps_device",
            ThrottleKind::ReadIops => "blkio.throttle.read_iops_device",
            ThrottleKind::WriteIops => "blkio.throttle.write_iops_device",
        }
    }

    /// The key in a cgroup v2 io.max line.
    pub fn v2_key(self) -> &'static str {
        match self {
            ThrottleKind::ReadBps => "rbps",
            ThrottleKind::WriteBps => "wbps",
            ThrottleKind::ReadIops => "riops",
            ThrottleKind::WriteIops => "wiops",
        }
    }

    /// The systemd property (a(st): device node, value).
    pub fn property(self) -> &'static str {
        match self {
            ThrottleKind::ReadBps => "IOReadBandwidthMax",
            ThrottleKind::WriteBps => "IOWriteBandwidthMax",
            ThrottleKind::ReadIops => "IOReadIOPSMax",
            ThrottleKind::WriteIops => "IOWriteIOPSMax",
        }
    }
}

/// One throttle rule: at most `rate` bytes or operations per second on the
/// block device `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub kind: ThrottleKind,
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

/// The io.max lines of `throttle`: one per device, every key it limits.
pub fn io_max_lines(throttle: &[Throttle]) -> Vec<String> {
    let mut devices: Vec<(i64, i64)> = Vec::new();
    for t in throttle {
        if !devices.contains(&(t.major, t.minor)) {
            devices.push((t.major, t.minor));
        }
    }
    devices
        .into_iter()
        .map(|(major, minor)| {
            let keys: Vec<String> = throttle
                .iter()
                .filter(|t| (t.major, t.minor) == (major, minor))
                .map(|t| format!("{}={}", t.kind.v2_key(), t.rate))
                .collect();
            format!("{major}:{minor} {}", keys.join(" "))
        })
        .collect()
}

/// Settings the container asked for that are ignored, as runc ignores them,
/// each with why: worth a warning, not a refusal.
pub fn ignored(res: Option<&LinuxResources>, v2: bool) -> Vec<String> {
    let mut out = Vec::new();
    let Some(m) = res.and_then(|r| r.memory().as_ref()) else {
        return out;
    };
    if m.kernel().is_some_and(|k| k != 0) {
        out.push("linux.resources.memory.kernel is ignored (kernel memory limits are deprecated; kernels since 5.16 ignore them)".into());
    }
    if m.kernel_tcp().is_some_and(|k| k != 0) {
        out.push("linux.resources.memory.kernelTCP is ignored (deprecated, as in runc)".into());
    }
    if v2 && m.swappiness().is_some() {
        out.push(
            "linux.resources.memory.swappiness is ignored on cgroup v2 (it has no such file)"
                .into(),
        );
    }
    if v2 && m.disable_oom_killer() == Some(true) {
        out.push(
            "linux.resources.memory.disableOOMKiller is ignored on cgroup v2 (it has no such file)"
                .into(),
        );
    }
    out
}

/// One requested setting and the controller that enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub setting: &'static str,
    pub controller: &'static str,
}

fn unsupported(setting: &str) -> CgroupError {
    CgroupError::Unsupported {
        setting: setting.into(),
        reason: "by berth's cgroup drivers".into(),
    }
}

/// runc treats 0 as "not set" for memory values and -1 as "unlimited".
fn memory_limit(setting: &str, v: Option<i64>) -> Result<Option<Limit>> {
    match v {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(Limit::Max)),
        Some(n) if n < 0 => Err(invalid(setting, n, "must be -1 (unlimited) or positive")),
        Some(n) => Ok(Some(Limit::Value(n as u64))),
    }
}

impl Requested {
    /// Validates `res`. Settings berth cannot apply are refused by name rather
    /// than dropped: silently ignoring a requested limit is faking it.
    pub fn from_oci(res: Option<&LinuxResources>) -> Result<Requested> {
        let mut r = Requested::default();
        let Some(res) = res else { return Ok(r) };
        if let Some(m) = res.memory() {
            r.memory_max = memory_limit("memory.limit", m.limit())?;
            r.memory_low = memory_limit("memory.reservation", m.reservation())?;
            r.memsw = memory_limit("memory.swap", m.swap())?;
            if m.limit() == Some(-1) && m.swap().unwrap_or(0) == 0 {
                r.memsw = Some(Limit::Max);
            }
            r.swap_max = swap_only(m.swap(), m.limit())?;
            // memory.kernel and kernelTCP are ignored with a warning, as runc
            // does (see [`ignored`]).
            if let Some(sw) = m.swappiness() {
                // runc: an out-of-range value (Docker's -1 arrives as
                // u64::MAX) means "not set" only for -1.
                if sw != u64::MAX {
                    if sw > 100 {
                        return Err(invalid(
                            "memory.swappiness",
                            sw,
                            "must be between 0 and 100",
                        ));
                    }
                    r.swappiness = Some(sw);
                }
            }
            r.oom_kill_disable = m.disable_oom_killer() == Some(true);
            if m.check_before_update() == Some(true) {
                return Err(unsupported("memory.checkBeforeUpdate"));
            }
            // useHierarchy is not checked: kernels force it on since 5.x.
        }
        if let Some(c) = res.cpu() {
            r.cpu_shares = c.shares().filter(|&s| s != 0);
            r.cpu_quota = c.quota().filter(|&q| q != 0);
            r.cpu_period = c.period().filter(|&p| p != 0);
            r.cpus = c.cpus().clone().filter(|s| !s.trim().is_empty());
            r.mems = c.mems().clone().filter(|s| !s.trim().is_empty());
            if let Some(cpus) = &r.cpus {
                list_to_bitmask("cpu.cpus", cpus)?;
            }
            if let Some(mems) = &r.mems {
                list_to_bitmask("cpu.mems", mems)?;
            }
            if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
                return Err(unsupported("cpu.realtimeRuntime/realtimePeriod"));
            }
            if c.idle().is_some_and(|i| i != 0) {
                return Err(unsupported("cpu.idle"));
            }
            if c.burst().is_some_and(|b| b != 0) {
                return Err(unsupported("cpu.burst"));
            }
        }
        if let Some(p) = res.pids() {
            // runc: 0 is "not set", any negative value is "unlimited".
            r.pids_max = match p.limit() {
                0 => None,
                n if n < 0 => Some(Limit::Max),
                n => Some(Limit::Value(n as u64)),
            };
        }
        if let Some(b) = res.block_io() {
            if let Some(w) = b.weight().filter(|&w| w != 0) {
                if !(10..=1000).contains(&w) {
                    return Err(invalid("blockIO.weight", w, "must be between 10 and 1000"));
                }
                r.blkio_weight = Some(w);
            }
            if b.weight_device().as_ref().is_some_and(|v| !v.is_empty()) {
                return Err(unsupported("blockIO.weightDevice"));
            }
            let lists = [
                (ThrottleKind::ReadBps, b.throttle_read_bps_device()),
                (ThrottleKind::WriteBps, b.throttle_write_bps_device()),
                (ThrottleKind::ReadIops, b.throttle_read_iops_device()),
                (ThrottleKind::WriteIops, b.throttle_write_iops_device()),
            ];
            for (kind, list) in lists {
                for d in list.iter().flatten() {
                    r.throttle.push(Throttle {
                        kind,
                        major: d.major(),
                        minor: d.minor(),
                        rate: d.rate(),
                    });
                }
            }
            if b.leaf_weight().is_some() {
                return Err(unsupported("blockIO.leafWeight"));
            }
        }
        if res
            .hugepage_limits()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(unsupported("hugepageLimits"));
        }
        if let Some(n) = res.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(unsupported("network"));
            }
        }
        if res.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(unsupported("rdma"));
        }
        if res.unified().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(unsupported("unified"));
        }
        r.devices = res.devices().clone().filter(|d| !d.is_empty());
        Ok(r)
    }

    /// The controllers the given settings need, in a fixed order. "Unlimited"
    /// needs none: where the controller is missing nothing is limited anyway.
    /// Device rules need a controller only on v1 (v2 uses BPF programs).
    pub fn needs(&self, v2: bool) -> Vec<Need> {
        let mut out = Vec::new();
        let mut need = |on: bool, setting, controller| {
            if on {
                out.push(Need {
                    setting,
                    controller,
                })
            }
        };
        let limited = |l: Option<Limit>| l.is_some_and(Limit::is_limited);
        need(limited(self.memory_max), "memory.limit", "memory");
        need(limited(self.memory_low), "memory.reservation", "memory");
        let swap = if v2 { self.swap_max } else { self.memsw };
        need(limited(swap), "memory.swap", "memory");
        need(self.cpu_shares.is_some(), "cpu.shares", "cpu");
        need(self.cpu_quota.is_some_and(|q| q > 0), "cpu.quota", "cpu");
        need(self.cpu_period.is_some(), "cpu.period", "cpu");
        need(self.cpus.is_some(), "cpu.cpus", "cpuset");
        need(self.mems.is_some(), "cpu.mems", "cpuset");
        need(limited(self.pids_max), "pids.limit", "pids");
        let io = if v2 { "io" } else { "blkio" };
        need(self.blkio_weight.is_some(), "blockIO.weight", io);
        need(!self.throttle.is_empty(), "blockIO.throttle*Device", io);
        need(
            !v2 && self.swappiness.is_some(),
            "memory.swappiness",
            "memory",
        );
        need(
            !v2 && self.oom_kill_disable,
            "memory.disableOOMKiller",
            "memory",
        );
        need(!v2 && self.devices.is_some(), "devices", "devices");
        out
    }
}

/// Refuses the first need whose controller is not in `available` (the
/// contents of a cgroup.controllers file, or the mounted v1 controllers).
pub fn check_controllers(needs: &[Need], available: &[String], cgroup: &str) -> Result<()> {
    for n in needs {
        if !available.iter().any(|a| a == n.controller) {
            let list = if available.is_empty() {
                "none".to_string()
            } else {
                available.join(" ")
            };
            return Err(CgroupError::ControllerUnavailable {
                controller: n.controller.into(),
                setting: format!("linux.resources.{}", n.setting),
                cgroup: cgroup.into(),
                available: list,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Requested> {
        let res: LinuxResources = serde_json::from_str(json).unwrap();
        Requested::from_oci(Some(&res))
    }

    #[test]
    fn only_given_settings_are_requested() {
        let r = parse(r#"{"pids":{"limit":10},"memory":{"limit":1048576}}"#).unwrap();
        assert_eq!(r.pids_max, Some(Limit::Value(10)));
        assert_eq!(r.memory_max, Some(Limit::Value(1 << 20)));
        assert_eq!(r.cpu_shares, None);
        assert_eq!(r.swap_max, None);
        let needs = r.needs(true);
        assert_eq!(
            needs.iter().map(|n| n.setting).collect::<Vec<_>>(),
            ["memory.limit", "pids.limit"]
        );
        // Unlimited values need no controller.
        let r = parse(r#"{"pids":{"limit":-1},"memory":{"limit":-1}}"#).unwrap();
        assert_eq!(r.pids_max, Some(Limit::Max));
        assert_eq!(r.swap_max, Some(Limit::Max));
        assert!(r.needs(true).is_empty());
        assert!(parse("{}").unwrap().needs(false).is_empty());
    }

    #[test]
    fn unsupported_settings_are_named() {
        for (json, name) in [
            (
                r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#,
                "hugepageLimits",
            ),
            (
                r#"{"blockIO":{"weightDevice":[{"major":8,"minor":0,"weight":10}]}}"#,
                "blockIO.weightDevice",
            ),
            (r#"{"unified":{"memory.high":"1"}}"#, "unified"),
        ] {
            let e = parse(json).unwrap_err().to_string();
            assert!(e.contains(name), "{json}: {e}");
        }
        assert!(parse(r#"{"blockIO":{"weight":5}}"#).is_err());
    }

    #[test]
    fn settings_runc_applies_or_ignores_are_taken() {
        let r = parse(
            r#"{"memory":{"swappiness":10,"disableOOMKiller":true,"kernel":1,"kernelTCP":1},
                "blockIO":{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
                           "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":100}]}}"#,
        )
        .unwrap();
        assert_eq!(r.swappiness, Some(10));
        assert!(r.oom_kill_disable);
        assert_eq!(io_max_lines(&r.throttle), ["8:0 rbps=1048576 wiops=100"]);
        let v1: Vec<_> = r.needs(false).iter().map(|n| n.controller).collect();
        assert_eq!(v1, ["blkio", "memory", "memory"]);
        let v2: Vec<_> = r.needs(true).iter().map(|n| n.controller).collect();
        assert_eq!(v2, ["io"]);
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"swappiness":10,"disableOOMKiller":true,"kernel":1,"kernelTCP":1}}"#,
        )
        .unwrap();
        assert_eq!(ignored(Some(&res), false).len(), 2);
        assert_eq!(ignored(Some(&res), true).len(), 4);
        assert!(parse(r#"{"memory":{"swappiness":101}}"#).is_err());
    }

    #[test]
    fn controller_check_names_controller_and_setting() {
        let r = parse(r#"{"pids":{"limit":10},"cpu":{"shares":512},"blockIO":{"weight":100}}"#)
            .unwrap();
        let avail = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        check_controllers(&r.needs(true), &avail("cpuset cpu io memory pids"), "/").unwrap();
        let e = check_controllers(&r.needs(true), &avail("hugetlb"), "/sys/fs/cgroup").unwrap_err();
        match &e {
            CgroupError::ControllerUnavailable {
                controller,
                setting,
                available,
                ..
            } => {
                assert_eq!(
                    (controller.as_str(), setting.as_str()),
                    ("cpu", "linux.resources.cpu.shares")
                );
                assert_eq!(available, "hugetlb");
            }
            other => panic!("unexpected {other}"),
        }
        assert!(e.to_string().contains("/sys/fs/cgroup"));
        // v1 names the block controller blkio.
        let e = check_controllers(&r.needs(false), &avail("cpu pids io"), "v1").unwrap_err();
        assert!(e.to_string().contains("blkio"), "{e}");
        let e = check_controllers(&r.needs(true), &[], "/").unwrap_err();
        assert!(e.to_string().contains("available: none"), "{e}");
    }
}
