//! UpdateContainerResources over berthd's UpdateContainer: the CRI's
//! LinuxContainerResources become UpdateContainer's keys (0 / "" = not
//! given, as the kubelet sends them), and the config berth-cri keeps gets the
//! new values, so ContainerStatus reports them.

use std::collections::HashMap;

use prost::Message;
use zbus::zvariant::Value;

use crate::api::*;
use crate::error::Result;
use crate::state::Cri;

/// UpdateContainer's options for `r`. oom_score_adj, hugepages and unified
/// are left out, as containerd's runc update leaves them: no cgroup
/// property of a live scope holds them.
pub fn options(r: &LinuxContainerResources) -> HashMap<&'static str, Value<'static>> {
    let mut o: HashMap<&'static str, Value<'static>> = HashMap::new();
    if r.cpu_shares > 0 {
        o.insert("cpu_shares", Value::from(r.cpu_shares as u64));
    }
    if r.cpu_quota != 0 {
        o.insert("cpu_quota", Value::from(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        o.insert("cpu_period", Value::from(r.cpu_period as u64));
    }
    if r.memory_limit_in_bytes > 0 {
        o.insert("memory", Value::from(r.memory_limit_in_bytes as u64));
    }
    if r.memory_swap_limit_in_bytes != 0 {
        o.insert("memory_swap", Value::from(r.memory_swap_limit_in_bytes));
    }
    if !r.cpuset_cpus.is_empty() {
        o.insert("cpuset_cpus", Value::from(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        o.insert("cpuset_mems", Value::from(r.cpuset_mems.clone()));
    }
    o
}

/// The given fields of `new` over `old`.
fn merge(old: &mut LinuxContainerResources, new: &LinuxContainerResources) {
    if new.cpu_shares > 0 {
        old.cpu_shares = new.cpu_shares;
    }
    if new.cpu_quota != 0 {
        old.cpu_quota = new.cpu_quota;
    }
    if new.cpu_period > 0 {
        old.cpu_period = new.cpu_period;
    }
    if new.memory_limit_in_bytes > 0 {
        old.memory_limit_in_bytes = new.memory_limit_in_bytes;
    }
    if new.memory_swap_limit_in_bytes != 0 {
        old.memory_swap_limit_in_bytes = new.memory_swap_limit_in_bytes;
    }
    if !new.cpuset_cpus.is_empty() {
        old.cpuset_cpus = new.cpuset_cpus.clone();
    }
    if !new.cpuset_mems.is_empty() {
        old.cpuset_mems = new.cpuset_mems.clone();
    }
}

pub async fn update(cri: &Cri, id: &str, linux: Option<LinuxContainerResources>) -> Result<()> {
    let mut rec = crate::containers::get(cri, id)?;
    let Some(linux) = linux else {
        return Ok(()); // Windows resources, or nothing: nothing to do here
    };
    let o = options(&linux);
    if o.is_empty() {
        return Ok(());
    }
    cri.manager().await?.update_container(id, o).await?;
    let mut cfg = ContainerConfig::decode(rec.config.as_slice()).unwrap_or_default();
    let l = cfg.linux.get_or_insert_with(Default::default);
    merge(l.resources.get_or_insert_with(Default::default), &linux);
    rec.config = cfg.encode_to_vec();
    let store = cri.store.clone();
    Cri::blocking(move || Ok(store.put_container(&rec)?)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_are_not_sent_and_merge_keeps_the_rest() {
        let new = LinuxContainerResources {
            cpu_quota: 20_000,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let o = options(&new);
        assert_eq!(o.len(), 3);
        assert_eq!(o["cpu_quota"], Value::from(20_000i64));
        assert_eq!(o["memory"], Value::from(64u64 << 20));
        let mut old = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        };
        merge(&mut old, &new);
        assert_eq!((old.cpu_period, old.cpu_quota), (100_000, 20_000));
        assert_eq!(old.memory_limit_in_bytes, 64 << 20);
        assert!(options(&LinuxContainerResources::default()).is_empty());
    }
}
