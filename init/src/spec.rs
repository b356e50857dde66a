//! Loading and validating a bundle's config.json before anything is created.
//!
//! Everything that can be checked without side effects is checked here, so that
//! a bad config fails `create` with an error naming the field, and leaves no
//! process, state directory or mount behind.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {0}: no such directory")]
    NoBundle(PathBuf),
    #[error("bundle path {0} must be absolute")]
    RelativeBundle(PathBuf),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid config.json: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config.json: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("config.json: ociVersion {0:?} is not supported (berth supports 1.0.0 up to 1.3.x)")]
    Version(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The config.json `berth-runtime spec` writes: runc's defaults (an
/// interactive `sh`, the usual namespaces, mounts, masked paths and
/// capabilities), or with `rootless` a user namespace mapped to the caller.
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = if rootless {
        Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        Spec::default()
    };
    spec.set_version("1.2.0".into());
    spec.set_hostname(Some("berth".into()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
        p.set_args(Some(vec!["sh".into()]));
    }
    spec
}

/// A validated spec plus the absolute paths derived from the bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// root.path resolved against the bundle directory.
    pub rootfs: PathBuf,
}

/// Reads `<bundle>/config.json` and validates it.
pub fn load(bundle: &Path) -> Result<Bundle, SpecError> {
    if !bundle.is_absolute() {
        return Err(SpecError::RelativeBundle(bundle.into()));
    }
    if !bundle.is_dir() {
        return Err(SpecError::NoBundle(bundle.into()));
    }
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    let spec: Spec = serde_json::from_str(&text).map_err(|e| SpecError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let rootfs = validate(&spec, bundle)?;
    Ok(Bundle {
        dir: bundle.into(),
        spec,
        rootfs,
    })
}

/// Checks the spec; returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    check_version(spec.version())?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing (a container needs a root filesystem)"))?;
    let rootfs = bundle.join(root.path());
    // A rootfs that is itself a symlink, or a relative root.path resolving
    // out of the bundle, would point the container — and the mount points,
    // device nodes and cwd made in it — at any directory of the host.
    if std::fs::symlink_metadata(&rootfs).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(invalid(
            "root.path",
            format!(
                "{} is a symlink (name the directory itself)",
                rootfs.display()
            ),
        ));
    }
    if !rootfs.is_dir() {
        return Err(invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| invalid("root.path", format!("{}: {e}", rootfs.display())))?;
    if rootfs == Path::new("/") {
        return Err(invalid(
            "root.path",
            "the host's / cannot be a container root",
        ));
    }
    if root.path().is_relative() {
        let inside = bundle.canonicalize().is_ok_and(|b| rootfs.starts_with(b));
        if !inside {
            return Err(invalid(
                "root.path",
                format!(
                    "{} resolves to {}, outside the bundle",
                    root.path().display(),
                    rootfs.display()
                ),
            ));
        }
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(invalid("process.args", "must name the program to run")),
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{} must be an absolute path", process.cwd().display()),
        ));
    }
    for env in process.env().iter().flatten() {
        if !env.contains('=') || env.starts_with('=') || env.contains('\0') {
            return Err(invalid("process.env", format!("{env:?} is not NAME=value")));
        }
    }
    if let Some(caps) = process.capabilities() {
        crate::capabilities::validate(caps)
            .map_err(|e| invalid("process.capabilities", e.to_string()))?;
    }
    for rl in process.rlimits().iter().flatten() {
        if rl.soft() > rl.hard() {
            return Err(invalid(
                "process.rlimits",
                format!(
                    "{:?}: soft limit {} above hard limit {}",
                    rl.typ(),
                    rl.soft(),
                    rl.hard()
                ),
            ));
        }
    }
    if let Some(adj) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }

    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                format!("{} must be absolute", m.destination().display()),
            ));
        }
        if m.destination()
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                format!("{} must not contain ..", m.destination().display()),
            ));
        }
        let opts = crate::mounts::parse_options(m.options().as_deref().unwrap_or_default())
            .map_err(|e| invalid(format!("mounts[{i}].options"), e))?;
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if opts.idmap.is_some() {
            check_idmap_mount(spec, is_bind).map_err(|e| invalid(format!("mounts[{i}]"), e))?;
        }
        if is_bind {
            let src = m.source().as_ref().ok_or_else(|| {
                invalid(format!("mounts[{i}].source"), "a bind mount needs a source")
            })?;
            let src = if src.is_absolute() {
                src.clone()
            } else {
                bundle.join(src)
            };
            if !src.exists() {
                return Err(invalid(
                    format!("mounts[{i}].source"),
                    format!("{}: no such file or directory", src.display()),
                ));
            }
        }
    }

    if let Some(linux) = spec.linux() {
        validate_linux(linux)?;
    }
    if let Some((field, why)) = crate::lsm::unsupported(spec) {
        return Err(invalid(field, why));
    }
    if let Some(hooks) = spec.hooks() {
        crate::hooks::validate(Some(hooks)).map_err(|e| invalid("hooks", e.to_string()))?;
    }
    if let Some(h) = spec.hostname() {
        if h.len() > 64 {
            return Err(invalid("hostname", "longer than 64 bytes"));
        }
        let uts_new = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
        if !uts_new && !h.is_empty() {
            return Err(invalid("hostname", "set without a uts namespace"));
        }
    }
    Ok(rootfs)
}

/// An `idmap`/`ridmap` mount is a bind mapped with the user namespace the
/// container joins by path: the init idmaps it before entering that
/// namespace (a new one exists only once the init is inside it, too late).
/// A mount's own uidMappings/gidMappings (runtime-spec 1.2) are not read
/// (the oci-spec crate drops them): the container's namespace maps it.
fn check_idmap_mount(spec: &Spec, bind: bool) -> Result<(), String> {
    if !bind {
        return Err("idmap/ridmap needs a bind mount".into());
    }
    let linux = spec.linux().as_ref();
    let joined = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some())
        });
    if !joined {
        return Err(
            "idmap/ridmap needs a user namespace joined by path in linux.namespaces".into(),
        );
    }
    Ok(())
}

fn validate_linux(linux: &oci_spec::runtime::Linux) -> Result<(), SpecError> {
    let mut seen = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        if seen.contains(&ns.typ()) {
            return Err(invalid(
                "linux.namespaces",
                format!("{} is listed twice", ns.typ()),
            ));
        }
        seen.push(ns.typ());
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(invalid(
                "linux.namespaces",
                "the time namespace is not supported",
            ));
        }
        if let Some(p) = ns.path() {
            if !p.exists() {
                return Err(invalid(
                    "linux.namespaces",
                    format!("{} namespace path {}: no such file", ns.typ(), p.display()),
                ));
            }
        }
    }
    let has_user = seen.contains(&LinuxNamespaceType::User);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if maps && !has_user {
        return Err(invalid(
            "linux.uidMappings",
            "id mappings need a user namespace in linux.namespaces",
        ));
    }
    if let Some(prop) = linux.rootfs_propagation() {
        crate::mounts::propagation_flag(prop)
            .ok_or_else(|| invalid("linux.rootfsPropagation", format!("unknown value {prop:?}")))?;
    }
    for p in linux
        .masked_paths()
        .iter()
        .flatten()
        .chain(linux.readonly_paths().iter().flatten())
    {
        // Relative entries are taken relative to the container's root, as
        // runc does; they are applied after pivot_root, so none leads out.
        if p.is_empty() || p.contains('\0') {
            return Err(invalid(
                "linux.maskedPaths/readonlyPaths",
                format!("{p:?} is not a path"),
            ));
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() || !d.path().starts_with("/dev") {
            return Err(invalid(
                format!("linux.devices[{i}].path"),
                format!("{} must be under /dev", d.path().display()),
            ));
        }
    }
    for key in linux.sysctl().iter().flatten().map(|(k, _)| k) {
        let ok_chars = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if key.is_empty() || key.contains("..") || !ok_chars {
            return Err(invalid("linux.sysctl", format!("bad key {key:?}")));
        }
    }
    if let Some(s) = linux.seccomp() {
        crate::seccomp::validate(s).map_err(|e| invalid("linux.seccomp", e.to_string()))?;
    }
    Ok(())
}

/// Accepts every ociVersion from 1.0.0 up to 1.3.x (release candidates of those
/// included), as runc does.
fn check_version(v: &str) -> Result<(), SpecError> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<_> = core.split('.').map(str::parse::<u32>).collect();
    match parts.as_slice() {
        [Ok(1), Ok(minor), Ok(_)] if *minor <= 3 => Ok(()),
        _ => Err(SpecError::Version(v.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.1", "1.3.0", "1.0.0-rc5"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "0.9.0", "2.0.0", "1.4.0", "1.x", "1.0"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }
}
