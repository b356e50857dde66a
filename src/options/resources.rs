//! Resource options beyond `memory`, `cpus` and `pids_limit`: what podman's
//! `--cpu-shares`, `--cpu-quota`, `--cpu-period`, `--cpuset-cpus`,
//! `--cpuset-mems` and `--memory-swap` set. CreateContainer takes them, and
//! UpdateContainer takes them with `memory`, `cpus` and `pids_limit`
//! ([`UpdateOptions`]) to change a live container's scope.
//!
//! Values are checked here against the kernel's ranges, so a bad one is named
//! before systemd is asked anything.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxCpu, LinuxResources};
use zbus::zvariant::OwnedValue;

use super::{typed, CreateOptions, OptionError};
use crate::daemon::brief;

pub const KEYS: &[&str] = &[
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpuset_cpus",
    "cpuset_mems",
    "memory_swap",
];

/// The keys UpdateContainer takes.
pub const UPDATE_KEYS: &str = "memory, memory_swap, cpus, cpu_shares, cpu_quota, \
                               cpu_period, cpuset_cpus, cpuset_mems, pids_limit";

/// The CFS period `cpus` is a quota over (100 ms, as docker and podman).
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceOptions {
    /// cgroup v1 shares (2..262144); systemd's CPUWeight is derived from it.
    pub cpu_shares: Option<u64>,
    /// Microseconds per period; -1: unlimited.
    pub cpu_quota: Option<i64>,
    /// Microseconds (1000..1000000).
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Memory plus swap, bytes (OCI's memory.swap); -1: unlimited.
    pub memory_swap: Option<i64>,
}

impl ResourceOptions {
    pub fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        let range = |why: &'static str| OptionError::Resource {
            key: key.into(),
            why,
        };
        match key {
            "cpu_shares" => {
                let s: u64 = typed(key, value, "t")?;
                if !(2..=262_144).contains(&s) {
                    return Err(range("must be 2-262144"));
                }
                self.cpu_shares = Some(s);
            }
            "cpu_quota" => {
                let q: i64 = typed(key, value, "x (µs)")?;
                if q != -1 && !(1000..=i64::MAX / 1_000_000).contains(&q) {
                    return Err(range("must be -1 (unlimited) or ≥ 1000 µs"));
                }
                self.cpu_quota = Some(q);
            }
            "cpu_period" => {
                let p: u64 = typed(key, value, "t (µs)")?;
                if !(1000..=1_000_000).contains(&p) {
                    return Err(range("must be 1000-1000000 µs"));
                }
                self.cpu_period = Some(p);
            }
            "cpuset_cpus" | "cpuset_mems" => {
                let s: String = typed(key, value, "s")?;
                if !is_cpu_list(&s) {
                    return Err(OptionError::CpuList {
                        key: key.into(),
                        value: brief(&s).into(),
                    });
                }
                match key {
                    "cpuset_cpus" => self.cpuset_cpus = Some(s),
                    _ => self.cpuset_mems = Some(s),
                }
            }
            "memory_swap" => {
                let m: i64 = typed(key, value, "x (bytes)")?;
                if m != -1 && m <= 0 {
                    return Err(range("must be -1 (unlimited) or > 0 bytes"));
                }
                self.memory_swap = Some(m);
            }
            _ => return Err(OptionError::Unknown(brief(key).into())),
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A cpuset list as the kernel takes it: "0-3,8", numbers ≤ 8191, ranges
/// ascending. berth-init checks again when it builds the bitmask.
fn is_cpu_list(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.split(',').all(|part| {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            match (lo.parse::<u32>(), hi.parse::<u32>()) {
                (Ok(lo), Ok(hi)) => lo <= hi && hi <= 8191,
                _ => false,
            }
        })
}

/// UpdateContainer's `a{sv}`: the resources to change, nothing else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateOptions {
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub res: ResourceOptions,
}

impl UpdateOptions {
    pub fn parse(options: &HashMap<String, OwnedValue>) -> Result<UpdateOptions, OptionError> {
        // memory, cpus and pids_limit are checked as CreateContainer does.
        let mut create = CreateOptions::default();
        let mut res = ResourceOptions::default();
        for (key, value) in options {
            match key.as_str() {
                "memory" | "cpus" | "pids_limit" => create.set(key, value)?,
                k if KEYS.contains(&k) => res.set(k, value)?,
                other => {
                    return Err(OptionError::UnknownUpdate(brief(other).into()));
                }
            }
        }
        let r = UpdateOptions {
            memory: create.memory,
            cpus: create.cpus,
            pids_limit: create.pids_limit,
            res,
        };
        if r.cpus.is_some() && (r.res.cpu_quota.is_some() || r.res.cpu_period.is_some()) {
            return Err(OptionError::Conflict(
                "option cpus is a quota over a 100 ms period: give either cpus or \
                 cpu_quota/cpu_period"
                    .into(),
            ));
        }
        if r == UpdateOptions::default() {
            return Err(OptionError::NothingToUpdate);
        }
        Ok(r)
    }

    /// The change alone, as `linux.resources` (what systemd gets): a new
    /// quota or period comes with the other from `current`, as systemd's
    /// CPUQuotaPerSecUSec is their ratio.
    pub fn delta(&self, current: &LinuxResources) -> LinuxResources {
        let mut d = LinuxResources::default();
        self.apply(&mut d);
        // Likewise memory and swap: systemd's MemorySwapMax is swap alone,
        // OCI's memory.swap is memory plus swap.
        if self.memory.is_some() != self.res.memory_swap.is_some() {
            let now = current.memory().unwrap_or_default();
            let mut memory = d.memory().unwrap_or_default();
            if memory.limit().is_none() {
                memory.set_limit(now.limit());
            }
            if memory.swap().is_none() {
                memory.set_swap(now.swap());
            }
            d.set_memory(Some(memory));
        }
        if self.res.cpu_quota.is_some() != self.res.cpu_period.is_some() {
            let now = current.cpu().clone().unwrap_or_default();
            let mut cpu = d.cpu().clone().unwrap_or_default();
            if cpu.quota().is_none() {
                cpu.set_quota(now.quota());
            }
            if cpu.period().is_none() {
                cpu.set_period(now.period());
            }
            d.set_cpu(Some(cpu));
        }
        d
    }

    /// Writes the given values into `res` (the spec's, or an empty one).
    pub fn apply(&self, res: &mut LinuxResources) {
        if self.memory.is_some() || self.res.memory_swap.is_some() {
            let mut memory = res.memory().unwrap_or_default();
            if let Some(m) = self.memory {
                memory.set_limit(Some(m));
            }
            if let Some(s) = self.res.memory_swap {
                memory.set_swap(Some(s));
            }
            res.set_memory(Some(memory));
        }
        let r = &self.res;
        let cpu_given = self.cpus.is_some()
            || r.cpu_shares.is_some()
            || r.cpu_quota.is_some()
            || r.cpu_period.is_some()
            || r.cpuset_cpus.is_some()
            || r.cpuset_mems.is_some();
        if cpu_given {
            let mut cpu: LinuxCpu = res.cpu().clone().unwrap_or_default();
            if let Some(c) = self.cpus {
                cpu.set_period(Some(CPU_PERIOD_US));
                cpu.set_quota(Some((c * CPU_PERIOD_US as f64).round() as i64));
            }
            if let Some(s) = r.cpu_shares {
                cpu.set_shares(Some(s));
            }
            if let Some(q) = r.cpu_quota {
                cpu.set_quota(Some(q));
            }
            if let Some(p) = r.cpu_period {
                cpu.set_period(Some(p));
            }
            if let Some(c) = &r.cpuset_cpus {
                cpu.set_cpus(Some(c.clone()));
            }
            if let Some(m) = &r.cpuset_mems {
                cpu.set_mems(Some(m.clone()));
            }
            res.set_cpu(Some(cpu));
        }
        if let Some(p) = self.pids_limit {
            let mut pids = res.pids().unwrap_or_default();
            pids.set_limit(p);
            res.set_pids(Some(pids));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value as V;

    fn parse(pairs: Vec<(&str, V<'static>)>) -> Result<UpdateOptions, OptionError> {
        let map = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), OwnedValue::try_from(v).unwrap()))
            .collect();
        UpdateOptions::parse(&map)
    }

    #[test]
    fn update_keys_parse_and_apply() {
        let u = parse(vec![
            ("memory", V::from(64u64 << 20)),
            ("memory_swap", V::from(128i64 << 20)),
            ("cpu_shares", V::from(512u64)),
            ("cpu_quota", V::from(50_000i64)),
            ("cpuset_cpus", V::from("0-1")),
            ("pids_limit", V::from(20i64)),
        ])
        .unwrap();
        let mut now = LinuxResources::default();
        let mut cpu = LinuxCpu::default();
        cpu.set_period(Some(200_000));
        now.set_cpu(Some(cpu));
        let d = u.delta(&now);
        let cpu = d.cpu().clone().unwrap();
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(200_000), "the current period");
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(d.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(d.memory().unwrap().swap(), Some(128 << 20));
        assert_eq!(d.pids().unwrap().limit(), 20);
    }

    #[test]
    fn bad_updates_are_named() {
        let err = |pairs| parse(pairs).unwrap_err().to_string();
        assert!(err(vec![]).contains("nothing to update"));
        assert!(err(vec![("cpu_shares", V::from(1u64))]).contains("cpu_shares"));
        assert!(err(vec![("cpu_quota", V::from(10i64))]).contains("cpu_quota"));
        assert!(err(vec![("cpu_period", V::from(10u64))]).contains("cpu_period"));
        assert!(err(vec![("cpuset_cpus", V::from("3-1"))]).contains("cpuset_cpus"));
        assert!(err(vec![("cpuset_mems", V::from("x"))]).contains("cpuset_mems"));
        assert!(err(vec![("memory_swap", V::from(0i64))]).contains("memory_swap"));
        assert!(err(vec![("memory", V::from("1g"))]).contains("memory"));
        assert!(err(vec![("image", V::from("x"))]).contains("UpdateContainer"));
        let both = err(vec![
            ("cpus", V::from(1.0)),
            ("cpu_quota", V::from(5000i64)),
        ]);
        assert!(both.contains("either cpus"), "{both}");
    }
}
