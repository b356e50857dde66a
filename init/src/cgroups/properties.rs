//! `linux.resources` → systemd unit properties (the a(sv) of StartTransientUnit
//! and SetUnitProperties). Only settings the user gave become properties, so
//! systemd's defaults stand for everything else.

use zbus::zvariant::Value;

use super::convert;
use super::devices::{self, Allowlist};
use super::resources::Requested;
use super::Result;

pub type Property = (&'static str, Value<'static>);

/// The resource properties of `req`. `proc_devices` is /proc/devices, used to
/// name "any minor of major N" device rules.
pub fn resource_properties(req: &Requested, proc_devices: &str) -> Result<Vec<Property>> {
    let mut p: Vec<Property> = Vec::new();
    if let Some(l) = req.memory_max {
        p.push(("MemoryMax", Value::from(l.systemd())));
    }
    if let Some(l) = req.memory_low {
        p.push(("MemoryLow", Value::from(l.systemd())));
    }
    if let Some(l) = req.swap_max {
        p.push(("MemorySwapMax", Value::from(l.systemd())));
    }
    if let Some(s) = req.cpu_shares {
        p.push(("CPUWeight", Value::from(convert::shares_to_weight(s))));
    }
    if let Some(period) = req.cpu_period {
        // systemd has had CPUQuotaPeriodUSec since v242; Debian 12 has 252.
        p.push(("CPUQuotaPeriodUSec", Value::from(period)));
    }
    if let Some(q) = convert::quota_per_sec(req.cpu_quota, req.cpu_period) {
        p.push(("CPUQuotaPerSecUSec", Value::from(q)));
    }
    if let Some(cpus) = &req.cpus {
        let mask = convert::list_to_bitmask("cpu.cpus", cpus)?;
        p.push(("AllowedCPUs", Value::from(mask)));
    }
    if let Some(mems) = &req.mems {
        let mask = convert::list_to_bitmask("cpu.mems", mems)?;
        p.push(("AllowedMemoryNodes", Value::from(mask)));
    }
    if let Some(l) = req.pids_max {
        p.push(("TasksMax", Value::from(l.systemd())));
    }
    if let Some(w) = req.blkio_weight {
        p.push(("IOWeight", Value::from(convert::blkio_to_io_weight(w))));
    }
    for t in &req.throttle {
        // systemd names block devices by node; /dev/block/MAJ:MIN is one.
        let node = format!("/dev/block/{}:{}", t.major, t.minor);
        p.push((t.kind.property(), Value::from(vec![(node, t.rate)])));
    }
    if let Some(list) = &req.devices {
        let rules = devices::rules(list)?;
        if let Allowlist::Only(allowed) = devices::allowlist(&rules)? {
            let entries = devices::device_allow(&allowed, proc_devices)?;
            p.push(("DevicePolicy", Value::from("strict")));
            p.push(("DeviceAllow", Value::from(entries)));
        }
    }
    Ok(p)
}

/// Renders properties as `Name=value` for messages and the probe's output.
pub fn describe(props: &[Property]) -> String {
    props
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxResources;

    fn props(json: &str) -> Vec<Property> {
        let res: LinuxResources = serde_json::from_str(json).unwrap();
        let req = Requested::from_oci(Some(&res)).unwrap();
        resource_properties(&req, "Character devices:\n136 pts\n").unwrap()
    }

    fn get<'a>(p: &'a [Property], name: &str) -> Option<&'a Value<'static>> {
        p.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    #[test]
    fn nothing_given_nothing_set() {
        assert!(props("{}").is_empty());
    }

    #[test]
    fn settings_map_to_runc_properties() {
        let p = props(
            r#"{"memory":{"limit":67108864,"reservation":33554432,"swap":100663296},
                "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-2,4"},
                "pids":{"limit":-1},"blockIO":{"weight":500}}"#,
        );
        assert_eq!(get(&p, "MemoryMax"), Some(&Value::from(67_108_864u64)));
        assert_eq!(get(&p, "MemoryLow"), Some(&Value::from(33_554_432u64)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(&Value::from(33_554_432u64)));
        assert_eq!(get(&p, "CPUWeight"), Some(&Value::from(39u64)));
        assert_eq!(
            get(&p, "CPUQuotaPerSecUSec"),
            Some(&Value::from(500_000u64))
        );
        assert_eq!(
            get(&p, "CPUQuotaPeriodUSec"),
            Some(&Value::from(100_000u64))
        );
        assert_eq!(get(&p, "AllowedCPUs"), Some(&Value::from(vec![0x17u8])));
        assert_eq!(get(&p, "TasksMax"), Some(&Value::from(u64::MAX)));
        assert_eq!(get(&p, "IOWeight"), Some(&Value::from(4950u64)));
        assert_eq!(get(&p, "DevicePolicy"), None);
        let io =
            props(r#"{"blockIO":{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1024}]}}"#);
        let v = get(&io, "IOReadBandwidthMax").unwrap();
        assert_eq!(v.value_signature().to_string(), "a(st)");
        assert!(v.to_string().contains("/dev/block/8:0"), "{v}");
        assert_eq!(
            get(&p, "AllowedCPUs").map(|v| v.value_signature().to_string()),
            Some("ay".into())
        );
    }

    #[test]
    fn deny_all_devices_become_a_strict_policy() {
        let p = props(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#);
        assert_eq!(get(&p, "DevicePolicy"), Some(&Value::from("strict")));
        let allow = get(&p, "DeviceAllow").unwrap();
        assert_eq!(allow.value_signature().to_string(), "a(ss)");
        assert!(allow.to_string().contains("/dev/char/1:3"), "{allow}");
        assert!(allow.to_string().contains("char-pts"), "{allow}");
    }
}
