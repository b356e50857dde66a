//! The default seccomp profile ("runtime/default"): containers-common's
//! seccomp.json — the very file podman reads on the same host — turned into
//! an OCI `linux.seccomp` for one container, as containers/common's
//! pkg/seccomp (and moby's profiles/seccomp) do it: the native architecture
//! and its sub-architectures from `archMap`, and each rule kept or left out
//! by its `includes`/`excludes` (capabilities of the process, architecture,
//! `minKernel`).
//!
//! The profile is data, not a copy typed into berth: an update of the
//! package updates berth's default with podman's. It is parsed once and kept
//! while the file's mtime and size stay the same (a create costs a stat, not
//! a read and a JSON parse: 2 ms of a debug create). Profiles a caller sends
//! (`seccomp_profile`) go through the same conversion, so both the docker
//! format and a plain OCI `linux.seccomp` object are accepted.
//!
//! [`apply_runtime_default`] is the entry point for any spec (the CRI server
//! uses it for `runtime/default`): a spec whose annotation
//! [`ANNOTATION`] is [`RUNTIME_DEFAULT`] gets the default profile.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use oci_spec::runtime::{Capability, LinuxSeccomp, Spec};
use serde_json::Value;

/// Where the default profile is looked for, first found wins: an
/// administrator's own, then containers-common's (Debian's
/// golang-github-containers-common, Fedora's containers-common).
pub const PROFILE_PATHS: &[&str] = &[
    "/etc/berth/seccomp.json",
    "/etc/containers/seccomp.json",
    "/usr/share/containers/seccomp.json",
];

/// The annotation that asks for the default profile on any spec.
pub const ANNOTATION: &str = "io.berth.seccomp";
/// Its value for the default profile (the CRI's and Kubernetes' name).
pub const RUNTIME_DEFAULT: &str = "runtime/default";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("no default seccomp profile: none of {} exists (install containers-common / golang-github-containers-common, or run with security_opt seccomp=unconfined)", PROFILE_PATHS.join(", "))]
    Missing,
    #[error("seccomp profile {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seccomp profile{}: not JSON: {source}", path.as_deref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Json {
        source: serde_json::Error,
        path: Option<PathBuf>,
    },
    #[error("seccomp profile: {0}")]
    Invalid(String),
    #[error("seccomp profile: no architecture for this machine ({0}) in archMap")]
    NoArch(&'static str),
}

/// The default profile last parsed, and the file it came from as it was.
struct Parsed {
    path: PathBuf,
    stamp: (Option<SystemTime>, u64),
    value: Arc<Value>,
}

static DEFAULT: Mutex<Option<Parsed>> = Mutex::new(None);

/// The default profile and where it was read: parsed again only when the
/// first file found is another one, or changed since.
pub fn default_profile() -> Result<(Arc<Value>, PathBuf), ProfileError> {
    let (path, meta) = PROFILE_PATHS
        .iter()
        .map(Path::new)
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)))
        .ok_or(ProfileError::Missing)?;
    let stamp = (meta.modified().ok(), meta.len());
    let mut cached = DEFAULT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cached
        .as_ref()
        .filter(|c| c.path == path && c.stamp == stamp)
    {
        return Ok((c.value.clone(), c.path.clone()));
    }
    let text = std::fs::read(path).map_err(|source| ProfileError::Read {
        path: path.into(),
        source,
    })?;
    let value: Arc<Value> =
        Arc::new(
            serde_json::from_slice(&text).map_err(|source| ProfileError::Json {
                source,
                path: Some(path.into()),
            })?,
        );
    *cached = Some(Parsed {
        path: path.into(),
        stamp,
        value: value.clone(),
    });
    Ok((value, path.into()))
}

/// Parses a profile a caller sent (docker/containers format or OCI).
pub fn parse_profile(text: &str) -> Result<Value, ProfileError> {
    let v: Value =
        serde_json::from_str(text).map_err(|source| ProfileError::Json { source, path: None })?;
    // Converted once with no capabilities: a bad profile is refused at
    // create time, before anything is made.
    convert(&v, &[])?;
    Ok(v)
}

/// Whether `spec` asks for the default profile by annotation.
pub fn wants_runtime_default(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .is_some_and(|v| v == RUNTIME_DEFAULT)
}

/// Sets `spec`'s linux.seccomp to the default profile, for the capabilities
/// its process keeps (its bounding set).
pub fn apply_runtime_default(spec: &mut Spec) -> Result<(), ProfileError> {
    let (profile, _) = default_profile()?;
    apply_profile(spec, &profile)
}

/// Sets `spec`'s linux.seccomp to `profile` converted for its process.
pub fn apply_profile(spec: &mut Spec, profile: &Value) -> Result<(), ProfileError> {
    let caps: Vec<Capability> = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .map(|b| b.iter().copied().collect())
        .unwrap_or_default();
    let seccomp = convert(profile, &caps)?;
    let linux = spec
        .linux_mut()
        .get_or_insert_with(crate::bundle::bare_linux);
    linux.set_seccomp(Some(seccomp));
    Ok(())
}

/// This machine's names: (seccomp's, Go's as profiles' `arches` use them).
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("SCMP_ARCH_X86_64", "amd64"),
        "x86" => ("SCMP_ARCH_X86", "386"),
        "aarch64" => ("SCMP_ARCH_AARCH64", "arm64"),
        "arm" => ("SCMP_ARCH_ARM", "arm"),
        "riscv64" => ("SCMP_ARCH_RISCV64", "riscv64"),
        "s390x" => ("SCMP_ARCH_S390X", "s390x"),
        "powerpc64" => ("SCMP_ARCH_PPC64LE", "ppc64le"),
        other => ("", other),
    }
}

/// The running kernel's (major, minor): it cannot change under berthd.
fn kernel_version() -> (u32, u32) {
    static KERNEL: OnceLock<(u32, u32)> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        major_minor(&release).unwrap_or((0, 0))
    })
}

fn major_minor(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().unwrap_or(0)))
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// "CAP_SYS_ADMIN" or "SYS_ADMIN" as oci-spec's capability.
fn cap_named(name: &str) -> Option<Capability> {
    let up = name.to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).parse().ok()
}

/// Whether a rule applies to a process with `caps` here.
fn rule_applies(rule: &Value, caps: &[Capability], arch: &str, kernel: (u32, u32)) -> bool {
    let has = |name: &&str| cap_named(name).is_some_and(|c| caps.contains(&c));
    let inc = rule.get("includes");
    let exc = rule.get("excludes");
    let inc_arches = strings(inc.and_then(|i| i.get("arches")));
    if !inc_arches.is_empty() && !inc_arches.contains(&arch) {
        return false;
    }
    if !strings(inc.and_then(|i| i.get("caps"))).iter().all(has) {
        return false;
    }
    if let Some(min) = inc
        .and_then(|i| i.get("minKernel"))
        .and_then(Value::as_str)
        .and_then(major_minor)
    {
        if kernel < min {
            return false;
        }
    }
    if strings(exc.and_then(|e| e.get("arches"))).contains(&arch) {
        return false;
    }
    !strings(exc.and_then(|e| e.get("caps"))).iter().any(has)
}

/// `profile` (docker/containers format, or OCI) as the OCI seccomp for a
/// process whose bounding set is `caps`.
pub fn convert(profile: &Value, caps: &[Capability]) -> Result<LinuxSeccomp, ProfileError> {
    let invalid = |what: &str| ProfileError::Invalid(what.into());
    let obj = profile
        .as_object()
        .ok_or_else(|| invalid("not a JSON object"))?;
    let (scmp_arch, go_arch) = native_arch();
    let mut out = serde_json::Map::new();
    for key in ["defaultAction", "defaultErrnoRet", "flags", "listenerPath"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    let arches: Vec<Value> = match obj.get("archMap").and_then(Value::as_array) {
        Some(map) if !map.is_empty() => {
            let entry = map
                .iter()
                .find(|e| e.get("architecture").and_then(Value::as_str) == Some(scmp_arch))
                .ok_or(ProfileError::NoArch(std::env::consts::ARCH))?;
            std::iter::once(scmp_arch)
                .chain(strings(entry.get("subArchitectures")))
                .map(Value::from)
                .collect()
        }
        _ => strings(obj.get("architectures"))
            .into_iter()
            .map(Value::from)
            .collect(),
    };
    if !arches.is_empty() {
        out.insert("architectures".into(), Value::from(arches));
    }
    let kernel = kernel_version();
    let mut rules = Vec::new();
    for rule in obj
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !rule_applies(rule, caps, go_arch, kernel) {
            continue;
        }
        let mut names = strings(rule.get("names"));
        if let Some(n) = rule.get("name").and_then(Value::as_str) {
            names.push(n);
        }
        let mut r = serde_json::Map::new();
        r.insert("names".into(), Value::from(names));
        for key in ["action", "errnoRet"] {
            if let Some(v) = rule.get(key).filter(|v| !v.is_null()) {
                r.insert(key.into(), v.clone());
            }
        }
        if let Some(args) = rule.get("args").filter(|a| !a.is_null()) {
            r.insert("args".into(), args.clone());
        }
        rules.push(Value::Object(r));
    }
    out.insert("syscalls".into(), Value::from(rules));
    serde_json::from_value(Value::Object(out)).map_err(|e| ProfileError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompAction;

    fn names_with(s: &LinuxSeccomp, name: &str) -> Vec<LinuxSeccompAction> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == name))
            .map(|r| r.action())
            .collect()
    }

    #[test]
    fn caps_choose_the_rules() {
        let p = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "archMap": [{"architecture": native_arch().0, "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {}},
                {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["s390_x"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
                {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "999.0"}},
            ]
        });
        let plain = convert(&p, &[]).unwrap();
        assert_eq!(
            names_with(&plain, "bpf"),
            [LinuxSeccompAction::ScmpActErrno]
        );
        assert_eq!(
            names_with(&plain, "read"),
            [LinuxSeccompAction::ScmpActAllow]
        );
        assert!(names_with(&plain, "future").is_empty());
        assert_eq!(plain.architectures().as_ref().unwrap().len(), 2);
        let admin = convert(&p, &[Capability::SysAdmin]).unwrap();
        assert_eq!(
            names_with(&admin, "bpf"),
            [LinuxSeccompAction::ScmpActAllow]
        );
        if std::env::consts::ARCH != "s390x" {
            assert!(names_with(&admin, "s390_x").is_empty());
        }
    }

    #[test]
    fn bad_profiles_are_named() {
        assert!(parse_profile("{").is_err());
        assert!(parse_profile("[]").is_err());
        let e = parse_profile(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap_err();
        assert!(e.to_string().starts_with("seccomp profile: "), "{e}");
        // A plain OCI linux.seccomp is a profile too.
        let oci = parse_profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["swapon"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        assert_eq!(
            convert(&oci, &[])
                .unwrap()
                .syscalls()
                .as_ref()
                .unwrap()
                .len(),
            1
        );
    }

    /// The installed containers-common profile converts (when installed).
    #[test]
    fn the_installed_default_converts() {
        let Ok((p, path)) = default_profile() else {
            eprintln!("skipped: no default seccomp profile installed");
            return;
        };
        let s = convert(&p, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(s.syscalls().as_ref().unwrap().len() > 10);
        assert_eq!(names_with(&s, "swapon"), [LinuxSeccompAction::ScmpActErrno]);
    }
}
