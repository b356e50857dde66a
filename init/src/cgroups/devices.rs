//! `linux.resources.devices`: the device allow/deny rules.
//!
//! cgroup v1 takes the rules as they are (devices.allow / devices.deny); v2
//! without systemd runs them as a BPF program ([`super::device_filter`]). systemd
//! only takes an allowlist (DevicePolicy=strict + DeviceAllow=), so the rules
//! are replayed here into the set they finally allow. Like runc, the devices a
//! container's /dev always holds (null, zero, tty, pts, ...) are appended, or a
//! config with the usual leading deny-all would leave /dev/null unusable.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{CgroupError, Result};

/// One normalised rule: kind 'a', 'b' or 'c'; `None` numbers are wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// A subset of "rwm", in that order.
    pub access: String,
}

impl Rule {
    /// The line for v1's devices.allow / devices.deny.
    pub fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            num(self.major),
            num(self.minor),
            self.access
        )
    }

    fn is_everything(&self) -> bool {
        self.kind == 'a' && self.major.is_none() && self.minor.is_none()
    }

    /// Does `self` (a deny) cover all of `other` (an allowed entry)?
    fn covers(&self, other: &Rule) -> bool {
        (self.kind == 'a' || self.kind == other.kind)
            && (self.major.is_none() || self.major == other.major)
            && (self.minor.is_none() || self.minor == other.minor)
    }

    fn overlaps(&self, other: &Rule) -> bool {
        (self.kind == 'a' || other.kind == 'a' || self.kind == other.kind)
            && (self.major.is_none() || other.major.is_none() || self.major == other.major)
            && (self.minor.is_none() || other.minor.is_none() || self.minor == other.minor)
    }
}

fn rule(allow: bool, kind: char, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
    Rule {
        allow,
        kind,
        major,
        minor,
        access: access.into(),
    }
}

/// runc's specconv.AllowedDevices, appended after the config's own rules.
pub fn defaults() -> Vec<Rule> {
    vec![
        rule(true, 'c', None, None, "m"),
        rule(true, 'b', None, None, "m"),
        rule(true, 'c', Some(1), Some(3), "rwm"), // null
        rule(true, 'c', Some(1), Some(8), "rwm"), // random
        rule(true, 'c', Some(1), Some(7), "rwm"), // full
        rule(true, 'c', Some(5), Some(0), "rwm"), // tty
        rule(true, 'c', Some(1), Some(5), "rwm"), // zero
        rule(true, 'c', Some(1), Some(9), "rwm"), // urandom
        rule(true, 'c', Some(5), Some(1), "rwm"), // console
        rule(true, 'c', Some(136), None, "rwm"),  // pts/*
        rule(true, 'c', Some(5), Some(2), "rwm"), // ptmx
    ]
}

fn bad(value: impl ToString, reason: &str) -> CgroupError {
    CgroupError::InvalidValue {
        setting: "devices".into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The config's rules, validated and normalised, followed by the defaults.
pub fn rules(devices: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for d in devices {
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => 'a',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::P => {
                return Err(bad("p", "the device cgroup has no rules for FIFOs"));
            }
        };
        let num = |n: Option<i64>| match n {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(bad(n, "device numbers must be -1 (any) or 0..2^32")),
        };
        let access = d.access().clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(bad(&access, "access must be a non-empty subset of \"rwm\""));
        }
        let access: String = "rwm".chars().filter(|c| access.contains(*c)).collect();
        out.push(rule(
            d.allow(),
            kind,
            num(d.major())?,
            num(d.minor())?,
            &access,
        ));
    }
    out.extend(defaults());
    Ok(out)
}

/// What the rules allow in the end: everything, or exactly `allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowlist {
    All,
    Only(Vec<Rule>),
}

/// Replays the rules from "everything allowed" (a new v1 cgroup inherits its
/// parent's allow-all) into what systemd can express. Refuses what it cannot:
/// a deny on top of allow-all, or a deny that splits a wildcard entry.
pub fn allowlist(rules: &[Rule]) -> Result<Allowlist> {
    let mut all = true;
    let mut allowed: Vec<Rule> = Vec::new();
    for r in rules {
        if r.is_everything() {
            if r.access != "rwm" {
                return Err(bad(
                    r.v1_line(),
                    "a rule for all devices must have access rwm",
                ));
            }
            all = r.allow;
            allowed.clear();
            continue;
        }
        if r.kind == 'a' {
            return Err(bad(
                r.v1_line(),
                "type \"a\" rules must not name device numbers",
            ));
        }
        match (all, r.allow) {
            (true, true) => {}
            (true, false) => {
                return Err(bad(
                    r.v1_line(),
                    "systemd takes only an allowlist: start the rules with a deny-all \
                     ({\"allow\": false, \"access\": \"rwm\"})",
                ))
            }
            (false, true) => allowed.push(r.clone()),
            (false, false) => {
                for a in allowed.iter_mut().filter(|a| r.overlaps(a)) {
                    if !r.covers(a) {
                        return Err(bad(
                            r.v1_line(),
                            "this deny splits an allowed wildcard entry, which systemd's \
                             allowlist cannot express",
                        ));
                    }
                    a.access.retain(|c| !r.access.contains(c));
                }
                allowed.retain(|a| !a.access.is_empty());
            }
        }
    }
    Ok(if all {
        Allowlist::All
    } else {
        Allowlist::Only(allowed)
    })
}

/// The driver name registered for a major number, from /proc/devices, which
/// lists character devices first, then block devices.
pub fn major_name(kind: char, major: u32, proc_devices: &str) -> Option<String> {
    let mut section = ' ';
    for line in proc_devices.lines() {
        match line.trim() {
            "Character devices:" => section = 'c',
            "Block devices:" => section = 'b',
            l if section == kind => {
                let (num, name) = l.split_once(char::is_whitespace)?;
                if num.parse() == Ok(major) {
                    return Some(name.trim().to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// systemd DeviceAllow= entries (specifier, access) for an allowlist.
pub fn device_allow(allowed: &[Rule], proc_devices: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for r in allowed {
        let class = if r.kind == 'b' { "block" } else { "char" };
        let spec = match (r.major, r.minor) {
            (None, _) => format!("{class}-*"),
            (Some(ma), Some(mi)) => format!("/dev/{class}/{ma}:{mi}"),
            // systemd addresses "any minor of a major" by the driver's name.
            (Some(ma), None) => match major_name(r.kind, ma, proc_devices) {
                Some(name) => format!("{class}-{name}"),
                None => {
                    return Err(bad(
                        r.v1_line(),
                        "no driver with this major number in /proc/devices",
                    ))
                }
            },
        };
        out.push((spec, r.access.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Vec<Rule> {
        let d: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        rules(&d).unwrap()
    }

    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 tty\n136 pts\n\n\
                                Block devices:\n  8 sd\n259 blkext\n";

    #[test]
    fn deny_all_then_allow_gives_an_allowlist_with_defaults() {
        let r = parse(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":200,"access":"rw"}]"#,
        );
        let Allowlist::Only(allowed) = allowlist(&r).unwrap() else {
            panic!("expected an allowlist")
        };
        let entries = device_allow(&allowed, PROC_DEVICES).unwrap();
        assert_eq!(entries[0], ("/dev/char/10:200".into(), "rw".into()));
        assert!(entries.contains(&("/dev/char/1:3".into(), "rwm".into())));
        assert!(entries.contains(&("char-pts".into(), "rwm".into())));
        assert!(entries.contains(&("char-*".into(), "m".into())));
        assert!(entries.contains(&("block-*".into(), "m".into())));
    }

    #[test]
    fn no_deny_all_means_everything() {
        assert_eq!(allowlist(&parse("[]")).unwrap(), Allowlist::All);
        let r = parse(r#"[{"allow":false,"access":"rwm"},{"allow":true,"access":"rwm"}]"#);
        assert_eq!(allowlist(&r).unwrap(), Allowlist::All);
    }

    #[test]
    fn later_denies_remove_access() {
        let r = parse(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        );
        // Applied before the defaults, which allow null again: check the replay itself.
        let Allowlist::Only(a) = allowlist(&r[..3]).unwrap() else {
            panic!()
        };
        assert_eq!(a, vec![rule(true, 'c', Some(1), Some(3), "rm")]);
        let splits = parse(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":136,"access":"rwm"},
                {"allow":false,"type":"c","major":136,"minor":2,"access":"rwm"}]"#,
        );
        assert!(allowlist(&splits).is_err());
        let on_allow_all =
            parse(r#"[{"allow":false,"type":"c","major":1,"minor":3,"access":"rwm"}]"#);
        assert!(allowlist(&on_allow_all)
            .unwrap_err()
            .to_string()
            .contains("deny-all"));
    }

    #[test]
    fn v1_lines_and_bad_input() {
        let r = parse(r#"[{"allow":false,"access":"rwm"}]"#);
        assert_eq!(r[0].v1_line(), "a *:* rwm");
        assert_eq!(r[1].v1_line(), "c *:* m");
        let bad: Vec<LinuxDeviceCgroup> =
            serde_json::from_str(r#"[{"allow":true,"type":"c","access":"rwx"}]"#).unwrap();
        assert!(rules(&bad).is_err());
        assert_eq!(major_name('b', 8, PROC_DEVICES).as_deref(), Some("sd"));
        assert_eq!(major_name('c', 8, PROC_DEVICES), None);
    }
}
