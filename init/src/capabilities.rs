//! `process.capabilities`: the five OCI capability sets, applied in the container
//! init around the switch to the container user.
//!
//! Order, as runc does it:
//! 1. [`drop_bounding`] while still uid 0 (dropping needs CAP_SETPCAP);
//! 2. [`prepare_for_setuid`], because setuid away from uid 0 otherwise clears
//!    the permitted set and there would be nothing left to keep;
//! 3. setuid/setgid (not here);
//! 4. [`apply_sets`]: permitted, inheritable, effective, then ambient.
//!
//! A set missing from the spec (`None`) means the empty set.

use caps::errors::CapsError as LibError;
use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("process.capabilities.{set}: {name} is not supported by the running kernel")]
    UnknownCapability { set: &'static str, name: String },
    #[error(
        "process.capabilities.effective: {name} is not in the permitted set (capset(2) refuses it)"
    )]
    EffectiveNotPermitted { name: String },
    #[error("process.capabilities.ambient: {name} must also be in the {missing} set (the kernel only raises ambient capabilities that are permitted and inheritable)")]
    AmbientNotAllowed { name: String, missing: &'static str },
    #[error("dropping {name} from the bounding set: {source}")]
    DropBounding { name: String, source: LibError },
    #[error("setting the {set} capability set: {source}")]
    Set { set: &'static str, source: LibError },
    #[error("raising ambient capability {name}: {source}")]
    RaiseAmbient { name: String, source: LibError },
    #[error("setting PR_SET_KEEPCAPS to {value}: {source}")]
    KeepCaps { value: bool, source: LibError },
}

/// The kernel's capability for an OCI one. Exhaustive on purpose: a new
/// oci-spec variant must fail to compile here rather than be silently dropped.
pub(crate) fn kernel_cap(cap: Capability) -> caps::Capability {
    use caps::Capability as K;
    match cap {
        Capability::AuditControl => K::CAP_AUDIT_CONTROL,
        Capability::AuditRead => K::CAP_AUDIT_READ,
        Capability::AuditWrite => K::CAP_AUDIT_WRITE,
        Capability::BlockSuspend => K::CAP_BLOCK_SUSPEND,
        Capability::Bpf => K::CAP_BPF,
        Capability::CheckpointRestore => K::CAP_CHECKPOINT_RESTORE,
        Capability::Chown => K::CAP_CHOWN,
        Capability::DacOverride => K::CAP_DAC_OVERRIDE,
        Capability::DacReadSearch => K::CAP_DAC_READ_SEARCH,
        Capability::Fowner => K::CAP_FOWNER,
        Capability::Fsetid => K::CAP_FSETID,
        Capability::IpcLock => K::CAP_IPC_LOCK,
        Capability::IpcOwner => K::CAP_IPC_OWNER,
        Capability::Kill => K::CAP_KILL,
        Capability::Lease => K::CAP_LEASE,
        Capability::LinuxImmutable => K::CAP_LINUX_IMMUTABLE,
        Capability::MacAdmin => K::CAP_MAC_ADMIN,
        Capability::MacOverride => K::CAP_MAC_OVERRIDE,
        Capability::Mknod => K::CAP_MKNOD,
        Capability::NetAdmin => K::CAP_NET_ADMIN,
        Capability::NetBindService => K::CAP_NET_BIND_SERVICE,
        Capability::NetBroadcast => K::CAP_NET_BROADCAST,
        Capability::NetRaw => K::CAP_NET_RAW,
        Capability::Perfmon => K::CAP_PERFMON,
        Capability::Setgid => K::CAP_SETGID,
        Capability::Setfcap => K::CAP_SETFCAP,
        Capability::Setpcap => K::CAP_SETPCAP,
        Capability::Setuid => K::CAP_SETUID,
        Capability::SysAdmin => K::CAP_SYS_ADMIN,
        Capability::SysBoot => K::CAP_SYS_BOOT,
        Capability::SysChroot => K::CAP_SYS_CHROOT,
        Capability::SysModule => K::CAP_SYS_MODULE,
        Capability::SysNice => K::CAP_SYS_NICE,
        Capability::SysPacct => K::CAP_SYS_PACCT,
        Capability::SysPtrace => K::CAP_SYS_PTRACE,
        Capability::SysRawio => K::CAP_SYS_RAWIO,
        Capability::SysResource => K::CAP_SYS_RESOURCE,
        Capability::SysTime => K::CAP_SYS_TIME,
        Capability::SysTtyConfig => K::CAP_SYS_TTY_CONFIG,
        Capability::Syslog => K::CAP_SYSLOG,
        Capability::WakeAlarm => K::CAP_WAKE_ALARM,
    }
}

/// The five sets with their spec names, `None` read as empty.
fn named_sets(caps: &LinuxCapabilities) -> [(&'static str, CapsHashSet); 5] {
    [
        ("bounding", kernel_set(caps.bounding())),
        ("effective", kernel_set(caps.effective())),
        ("inheritable", kernel_set(caps.inheritable())),
        ("permitted", kernel_set(caps.permitted())),
        ("ambient", kernel_set(caps.ambient())),
    ]
}

fn kernel_set(set: &Option<Capabilities>) -> CapsHashSet {
    set.iter().flatten().map(|c| kernel_cap(*c)).collect()
}

/// Sorted names, so errors and tests do not depend on HashSet order.
fn sorted(set: &CapsHashSet) -> Vec<caps::Capability> {
    let mut v: Vec<_> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

/// Checks what can be known before touching the process: every capability is
/// one the running kernel has (a newer spec on an older kernel must fail here,
/// not half-way through), effective ⊆ permitted, ambient ⊆ permitted ∩
/// inheritable.
pub fn validate(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let supported = kernel_supported();
    for (set, wanted) in named_sets(caps) {
        if let Some(cap) = sorted(&wanted).into_iter().find(|c| !supported.contains(c)) {
            return Err(CapsError::UnknownCapability {
                set,
                name: cap.to_string(),
            });
        }
    }
    let permitted = kernel_set(caps.permitted());
    let effective = kernel_set(caps.effective());
    if let Some(cap) = sorted(&effective)
        .into_iter()
        .find(|c| !permitted.contains(c))
    {
        return Err(CapsError::EffectiveNotPermitted {
            name: cap.to_string(),
        });
    }
    check_ambient(caps)
}

fn check_ambient(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let permitted = kernel_set(caps.permitted());
    let inheritable = kernel_set(caps.inheritable());
    for cap in sorted(&kernel_set(caps.ambient())) {
        let missing = if !permitted.contains(&cap) {
            "permitted"
        } else if !inheritable.contains(&cap) {
            "inheritable"
        } else {
            continue;
        };
        return Err(CapsError::AmbientNotAllowed {
            name: cap.to_string(),
            missing,
        });
    }
    Ok(())
}

/// Drops every capability not in `bounding` from the bounding set. Needs
/// CAP_SETPCAP in the effective set, so it runs before the switch to the
/// container user.
pub fn drop_bounding(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let keep = kernel_set(caps.bounding());
    for cap in sorted(&kernel_supported()) {
        if keep.contains(&cap) {
            continue;
        }
        let drop = || -> Result<(), LibError> {
            // Already gone (the parent dropped it): PR_CAPBSET_DROP would still
            // need CAP_SETPCAP, so a failure is no failure if the capability is
            // not there. Asked only then: one prctl per capability, not two.
            match caps::drop(None, CapSet::Bounding, cap) {
                Err(e) if caps::has_cap(None, CapSet::Bounding, cap)? => Err(e),
                _ => Ok(()),
            }
        };
        drop().map_err(|source| CapsError::DropBounding {
            name: cap.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// The capabilities the running kernel knows (of those the caps crate
/// names): 0 up to its last. PR_CAPBSET_READ fails with EINVAL past the last,
/// so this works before /proc is mounted in the container; bisected, it is
/// 6 calls where `caps::runtime::thread_all_supported` makes one per
/// capability (41, on every create and exec, twice).
fn kernel_supported() -> CapsHashSet {
    // SAFETY: PR_CAPBSET_READ with integer arguments reads nothing of ours.
    let known = |i: u8| unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(i)) } >= 0;
    // known(lo) (capability 0 always is), !known(hi) (the bounding set has 64 bits).
    let (mut lo, mut hi) = (0u8, 64u8);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match known(mid) {
            true => lo = mid,
            false => hi = mid,
        }
    }
    caps::all()
        .into_iter()
        .filter(|c| c.index() <= lo)
        .collect()
}

/// setuid(2) from uid 0 to another uid clears the permitted and effective
/// sets unless PR_SET_KEEPCAPS is on; with it, permitted survives and
/// [`apply_sets`] can trim it to exactly what the spec asks.
pub fn prepare_for_setuid() -> Result<(), CapsError> {
    caps::securebits::set_keepcaps(true).map_err(|source| CapsError::KeepCaps {
        value: true,
        source,
    })
}

/// Sets permitted, inheritable and effective exactly as listed, raises the
/// ambient ones, and turns PR_SET_KEEPCAPS off again. Runs after setuid.
pub fn apply_sets(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    // Checked before anything changes, so a bad spec leaves the process as it was
    // and the error names the capability rather than an EPERM from prctl.
    check_ambient(caps)?;
    // Each caps::set is one capset(2) that rewrites all three sets, and the
    // kernel rejects any call whose effective set is not within permitted. So
    // effective first (still within the old, larger permitted set), inheritable
    // while permitted is still large enough to allow it without CAP_SETPCAP,
    // permitted (shrinking) last.
    for (set, cset, wanted) in [
        ("effective", CapSet::Effective, caps.effective()),
        ("inheritable", CapSet::Inheritable, caps.inheritable()),
        ("permitted", CapSet::Permitted, caps.permitted()),
    ] {
        caps::set(None, cset, &kernel_set(wanted))
            .map_err(|source| CapsError::Set { set, source })?;
    }
    // Ambient is not rewritten by capset; clear what was inherited, then raise.
    caps::clear(None, CapSet::Ambient).map_err(|source| CapsError::Set {
        set: "ambient",
        source,
    })?;
    for cap in sorted(&kernel_set(caps.ambient())) {
        caps::raise(None, CapSet::Ambient, cap).map_err(|source| CapsError::RaiseAmbient {
            name: cap.to_string(),
            source,
        })?;
    }
    // execve clears it anyway; cleared here so nothing run between now and then
    // (hooks, a later setuid) keeps capabilities by accident.
    caps::securebits::set_keepcaps(false).map_err(|source| CapsError::KeepCaps {
        value: false,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Gid, Uid};

    fn spec(json: &str) -> LinuxCapabilities {
        serde_json::from_str(json).expect("capabilities JSON")
    }

    #[test]
    fn every_oci_capability_maps_to_the_kernel_one_of_the_same_name() {
        // The match in kernel_cap is exhaustive over oci-spec's variants; going
        // the other way over caps' list checks the names line up one to one.
        let all = caps::all();
        assert_eq!(all.len(), 41, "caps knows capabilities oci-spec may not");
        for k in all {
            let oci: Capability = serde_json::from_value(serde_json::json!(k.to_string()))
                .unwrap_or_else(|e| panic!("oci-spec does not parse {k}: {e}"));
            assert_eq!(kernel_cap(oci), k, "{oci:?}");
        }
    }

    #[test]
    fn none_sets_are_empty_and_valid() {
        let caps = spec("{}");
        assert!(named_sets(&caps).iter().all(|(_, s)| s.is_empty()));
        validate(&caps).expect("empty sets are valid");
    }

    #[test]
    fn default_spec_capabilities_validate() {
        validate(&LinuxCapabilities::default()).expect("oci-spec default");
    }

    #[test]
    fn ambient_outside_inheritable_is_named() {
        let caps = spec(
            r#"{"permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": ["CAP_KILL"],
                "ambient": ["CAP_KILL", "CAP_CHOWN"]}"#,
        );
        let err = validate(&caps).expect_err("CAP_CHOWN not inheritable");
        assert!(
            matches!(&err, CapsError::AmbientNotAllowed { name, missing: "inheritable" } if name == "CAP_CHOWN"),
            "{err:?}"
        );
        assert!(err.to_string().contains("CAP_CHOWN"), "{err}");
        // apply_sets refuses before changing anything.
        assert!(matches!(
            apply_sets(&caps),
            Err(CapsError::AmbientNotAllowed { .. })
        ));
    }

    #[test]
    fn ambient_outside_permitted_is_named() {
        let caps = spec(r#"{"inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}"#);
        let err = validate(&caps).expect_err("CAP_KILL not permitted");
        assert!(
            matches!(&err, CapsError::AmbientNotAllowed { name, missing: "permitted" } if name == "CAP_KILL"),
            "{err:?}"
        );
    }

    #[test]
    fn effective_outside_permitted_is_named() {
        let caps = spec(r#"{"effective": ["CAP_NET_RAW"], "permitted": []}"#);
        let err = validate(&caps).expect_err("effective not permitted");
        assert!(
            matches!(&err, CapsError::EffectiveNotPermitted { name } if name == "CAP_NET_RAW"),
            "{err:?}"
        );
    }

    #[test]
    fn the_kernels_capabilities_are_found_by_bisection() {
        assert_eq!(kernel_supported(), caps::runtime::thread_all_supported());
    }

    #[test]
    fn capabilities_newer_than_the_kernel_are_named() {
        let supported = caps::runtime::thread_all_supported();
        let Some(missing) = sorted(&caps::all())
            .into_iter()
            .find(|c| !supported.contains(c))
        else {
            eprintln!("skipped: the running kernel supports every capability caps knows");
            return;
        };
        let caps = spec(&format!(r#"{{"bounding": ["{missing}"]}}"#));
        let err = validate(&caps).expect_err("unsupported capability");
        assert!(
            matches!(&err, CapsError::UnknownCapability { set: "bounding", name } if *name == missing.to_string()),
            "{err:?}"
        );
    }

    /// Mask of CAP_CHOWN (0) and CAP_KILL (5), as /proc/self/status prints it.
    const CHOWN_KILL: u64 = (1 << 0) | (1 << 5);

    fn status_mask(status: &str, field: &str) -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        u64::from_str_radix(line[field.len()..].trim(), 16).ok()
    }

    /// The child's side of the fork test; the return value is its exit code.
    fn child_applies_chown_kill() -> i32 {
        let caps = spec(
            r#"{"bounding": ["CAP_CHOWN", "CAP_KILL"], "permitted": ["CAP_CHOWN", "CAP_KILL"],
                "effective": ["CAP_CHOWN", "CAP_KILL"]}"#,
        );
        if validate(&caps).is_err() || drop_bounding(&caps).is_err() {
            return 2;
        }
        if prepare_for_setuid().is_err() {
            return 3;
        }
        // nobody: the real path, where permitted survives setuid only through
        // PR_SET_KEEPCAPS and effective has to be raised again.
        let nobody = 65534;
        if nix::unistd::setresgid(Gid::from(nobody), Gid::from(nobody), Gid::from(nobody)).is_err()
            || nix::unistd::setresuid(Uid::from(nobody), Uid::from(nobody), Uid::from(nobody))
                .is_err()
        {
            return 4;
        }
        if apply_sets(&caps).is_err() {
            return 5;
        }
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return 6;
        };
        let want = Some(CHOWN_KILL);
        let ok = status_mask(&status, "CapEff:") == want
            && status_mask(&status, "CapBnd:") == want
            && status_mask(&status, "CapPrm:") == want
            && status_mask(&status, "CapInh:") == Some(0)
            && status_mask(&status, "CapAmb:") == Some(0);
        if ok {
            0
        } else {
            7
        }
    }

    #[test]
    fn forked_child_ends_with_exactly_chown_and_kill() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root (drops bounding capabilities and setuids in a child)");
            return;
        }
        // SAFETY: the child only runs this module's code and then _exit()s,
        // never returning into the test harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = std::panic::catch_unwind(child_applies_chown_kill).unwrap_or(100);
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let status = waitpid(child, None).expect("waitpid");
                assert_eq!(
                    status,
                    WaitStatus::Exited(child, 0),
                    "child exit codes: 2 validate/drop_bounding, 3 keepcaps, 4 setuid, \
                     5 apply_sets, 6 /proc read, 7 masks differ"
                );
            }
        }
    }
}
