//! `berthctl update ID --cpus … --memory …`: podman update's resource flags,
//! sent as UpdateContainer's options (docs/api.md); berthd checks the values.

use std::collections::HashMap;

use clap::Args;
use zbus::zvariant::Value;

use crate::error::Result;
use crate::opts::parse_size;

#[derive(Args, Debug, Clone, Default)]
pub struct UpdateOpts {
    /// CPU limit in CPUs (1.5 = one and a half).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight, 2-262144).
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CFS period in µs (1000-1000000).
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPUs the container may run on (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (0-3, 0,1).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with k, m, g suffix).
    #[arg(short = 'm', long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Memory plus swap (size, or -1 for unlimited swap).
    #[arg(long, value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Most tasks (processes + threads); -1: unlimited.
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    #[arg(required = true)]
    pub ids: Vec<String>,
}

fn parse_swap(s: &str) -> std::result::Result<i64, String> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let n = parse_size(s)?;
    i64::try_from(n).map_err(|_| format!("{s:?} is too large"))
}

impl UpdateOpts {
    /// UpdateContainer's `a{sv}`: the flags given, nothing else.
    pub fn options(&self) -> HashMap<&'static str, Value<'static>> {
        let mut o: HashMap<&'static str, Value<'static>> = HashMap::new();
        if let Some(v) = self.cpus {
            o.insert("cpus", v.into());
        }
        if let Some(v) = self.cpu_shares {
            o.insert("cpu_shares", v.into());
        }
        if let Some(v) = self.cpu_quota {
            o.insert("cpu_quota", v.into());
        }
        if let Some(v) = self.cpu_period {
            o.insert("cpu_period", v.into());
        }
        if let Some(v) = &self.cpuset_cpus {
            o.insert("cpuset_cpus", v.clone().into());
        }
        if let Some(v) = &self.cpuset_mems {
            o.insert("cpuset_mems", v.clone().into());
        }
        if let Some(v) = self.memory {
            o.insert("memory", v.into());
        }
        if let Some(v) = self.memory_swap {
            o.insert("memory_swap", v.into());
        }
        if let Some(v) = self.pids_limit {
            o.insert("pids_limit", v.into());
        }
        o
    }
}

/// Updates each container; the ids done are printed, as podman does.
pub fn update(opts: &UpdateOpts) -> Result<u8> {
    let m = crate::manager()?;
    let o = opts.options();
    crate::each(&opts.ids, |id| Ok(m.update_container(id, o.clone())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        u: UpdateOpts,
    }

    #[test]
    fn podman_flags_become_options() {
        let t = T::parse_from([
            "t",
            "--cpus",
            "1.5",
            "--cpu-shares",
            "512",
            "--memory",
            "64m",
            "--memory-swap",
            "-1",
            "--pids-limit",
            "-1",
            "--cpuset-cpus",
            "0-1",
            "c1",
        ]);
        let o = t.u.options();
        assert_eq!(o["memory"], Value::from(64u64 << 20));
        assert_eq!(o["memory_swap"], Value::from(-1i64));
        assert_eq!(o["pids_limit"], Value::from(-1i64));
        assert_eq!(o["cpus"], Value::from(1.5));
        assert_eq!(o["cpu_shares"], Value::from(512u64));
        assert_eq!(o["cpuset_cpus"], Value::from("0-1"));
        assert_eq!(o.len(), 6);
        assert_eq!(t.u.ids, ["c1"]);
    }
}
