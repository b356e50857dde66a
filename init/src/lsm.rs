//! Linux security modules: `process.apparmorProfile`, `process.selinuxLabel`
//! and `linux.mountLabel`. Applied where the host runs the module; refused
//! by name where it does not — silently running a container without the
//! confinement its spec asks for is faking it.

use std::path::Path;

use oci_spec::runtime::Spec;

/// AppArmor is enabled in the running kernel.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|t| t.trim() == "Y")
}

/// SELinux is enabled (its filesystem is mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// The first label the spec asks for that this host cannot apply, with why.
pub fn unsupported(spec: &Spec) -> Option<(&'static str, String)> {
    let set = |v: Option<&String>| v.is_some_and(|s| !s.is_empty());
    let process = spec.process().as_ref();
    if set(process.and_then(|p| p.apparmor_profile().as_ref())) && !apparmor_enabled() {
        return Some((
            "process.apparmorProfile",
            "AppArmor is not enabled on this host".into(),
        ));
    }
    if set(process.and_then(|p| p.selinux_label().as_ref())) && !selinux_enabled() {
        return Some((
            "process.selinuxLabel",
            "SELinux is not enabled on this host".into(),
        ));
    }
    let mount_label = spec.linux().as_ref().and_then(|l| l.mount_label().as_ref());
    if set(mount_label) {
        // Applying it means a context= on every mount berth makes; not done
        // yet, so refused even with SELinux rather than ignored.
        return Some((
            "linux.mountLabel",
            if selinux_enabled() {
                "mount labels are not supported by berth yet".into()
            } else {
                "SELinux is not enabled on this host".into()
            },
        ));
    }
    None
}

/// Asks the kernel to confine the next execve: AppArmor's exec profile,
/// SELinux's exec context (both through /proc/self/attr, as runc does).
pub fn set_exec_labels(process: &oci_spec::runtime::Process) -> Result<(), String> {
    if let Some(profile) = process
        .apparmor_profile()
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        let at = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        std::fs::write(at, format!("exec {profile}"))
            .map_err(|e| format!("setting AppArmor profile {profile:?}: {e}"))?;
    }
    if let Some(label) = process.selinux_label().as_ref().filter(|l| !l.is_empty()) {
        std::fs::write("/proc/self/attr/exec", label)
            .map_err(|e| format!("setting SELinux label {label:?}: {e}"))?;
    }
    Ok(())
}
