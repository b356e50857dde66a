//! Where a container's cgroup is, by name: the systemd unit and slice, or
//! the cgroupfs path. Pure functions, so the rules are unit-tested here.

use super::{CgroupError, Result};

pub const DEFAULT_SLICE: &str = "berth.slice";

/// Containers without a slice of their own are spread over this many
/// sub-slices of berth.slice, `berth-<k>.slice` (k = a hash of the id): systemd
/// walks every sibling of a unit's slice at each start and stop, so 1000
/// containers in 16 slices cost it a walk of ~60, not 1000. 1 (or 0): all
/// in berth.slice itself. Overridden by BERTH_SLICES (for measuring).
pub const DEFAULT_SLICES: u32 = 1;

/// How many sub-slices: BERTH_SLICES if set and valid, else DEFAULT_SLICES.
pub fn slices() -> u32 {
    std::env::var("BERTH_SLICES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&n| n <= 4096)
        .unwrap_or(DEFAULT_SLICES)
}

/// The slice of a container that named none: berth.slice, or with `count` >
/// 1 its sub-slice `berth-<k>.slice`, k = FNV-1a of the id mod `count`
/// (stable, so the same id always lands in the same slice).
pub fn default_slice(container_id: &str, count: u32) -> String {
    if count <= 1 {
        return DEFAULT_SLICE.into();
    }
    let hash = container_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("berth-{}.slice", hash % count)
}

/// Makes one unit-name component valid: anything outside [A-Za-z0-9:_.-]
/// (e.g. the '+' container ids may hold) becomes \xNN, as systemd-escape
/// writes it. '-' is kept, as runc keeps it in `<prefix>-<id>.scope`.
pub fn escape(part: &str) -> String {
    let mut out = String::new();
    for (i, b) in part.bytes().enumerate() {
        let plain =
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-') || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub(crate) fn bad_path(path: &str, reason: &str) -> CgroupError {
    CgroupError::InvalidPath {
        path: path.into(),
        reason: reason.into(),
    }
}

/// (slice, unit) for a container: `berth-<id>.scope` in berth.slice, or, from
/// a runc-style cgroupsPath "slice:prefix:name", `<prefix>-<name>.scope` in
/// that slice (an empty slice/prefix/name falls back to berth.slice/berth/id).
pub fn unit_for(container_id: &str, cgroups_path: Option<&str>) -> Result<(String, String)> {
    unit_in(container_id, cgroups_path, 1)
}

/// As [`unit_for`], a container that names no cgroupsPath going to its
/// [`default_slice`] of `slices`.
pub fn unit_in(
    container_id: &str,
    cgroups_path: Option<&str>,
    slices: u32,
) -> Result<(String, String)> {
    let spread = default_slice(container_id, slices);
    let (slice, prefix, name) = match cgroups_path.filter(|p| !p.is_empty()) {
        None => (spread.as_str(), "", ""),
        Some(p) => {
            let parts: Vec<&str> = p.split(':').collect();
            match parts[..] {
                [s, pre, n] => (s, pre, n),
                _ => return Err(bad_path(
                    p,
                    "the systemd driver takes \"slice:prefix:name\", e.g. berth.slice:berth:web",
                )),
            }
        }
    };
    let path = cgroups_path.unwrap_or("");
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    let stem = slice
        .strip_suffix(".slice")
        .ok_or_else(|| bad_path(path, "the slice must end in .slice"))?;
    let valid_stem = stem == "-"
        || (!stem.is_empty()
            && !stem.starts_with('-')
            && !stem.ends_with('-')
            && !stem.contains("--")
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:\\".contains(&b)));
    if !valid_stem {
        return Err(bad_path(
            path,
            "invalid slice name: use [A-Za-z0-9_.:-], '-' only between nesting levels",
        ));
    }
    if name.ends_with(".slice") {
        return Err(bad_path(
            path,
            "a slice as the container's own unit is not supported",
        ));
    }
    let prefix = if prefix.is_empty() { "berth" } else { prefix };
    let name = if name.is_empty() { container_id } else { name };
    let unit = format!("{}-{}.scope", escape(prefix), escape(name));
    if unit.len() > 255 {
        return Err(bad_path(
            path,
            "the unit name would be longer than 255 bytes",
        ));
    }
    Ok((slice.to_string(), unit))
}

/// The cgroupsPath of a shim's own scope, `berth-shim-<id>.scope` (an exec's
/// shim: `berth-shim-<id>-<exec id>.scope`) in berth.slice: never the
/// container's scope (a shim outlives its container) nor its starter's cgroup
/// (a restart of berthd must not take shims along).
pub fn shim_scope_path(container_id: &str, exec_id: Option<&str>) -> String {
    match exec_id {
        None => format!("{DEFAULT_SLICE}:berth-shim:{container_id}"),
        Some(e) => format!("{DEFAULT_SLICE}:berth-shim:{container_id}-{e}"),
    }
}

/// The unit name of that scope.
pub fn shim_scope_unit(container_id: &str, exec_id: Option<&str>) -> Result<String> {
    let path = shim_scope_path(container_id, exec_id);
    unit_for(container_id, Some(&path)).map(|(_, unit)| unit)
}

/// The normalised absolute cgroup path for a container.
pub fn cgroup_path(container_id: &str, cgroups_path: Option<&str>) -> Result<String> {
    let given = cgroups_path.filter(|p| !p.is_empty());
    let raw = match given {
        None => format!("/berth/{container_id}"),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/berth/{p}"),
    };
    let shown = given.unwrap_or(&raw);
    let mut parts = Vec::new();
    for part in raw.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(bad_path(shown, "\".\" and \"..\" are not allowed"));
        }
        if part.contains(':') && given.is_some() {
            return Err(bad_path(
                shown,
                "looks like a systemd slice:prefix:name path; use the systemd cgroup driver",
            ));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        // destroy() kills what is inside: never the whole hierarchy.
        return Err(bad_path(shown, "must name a cgroup below the root"));
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_unit_is_berth_id_in_berth_slice() {
        assert_eq!(
            unit_for("web", None).unwrap(),
            ("berth.slice".into(), "berth-web.scope".into())
        );
        assert_eq!(unit_for("web", Some("")).unwrap().1, "berth-web.scope");
        // '+' is valid in container ids but not in unit names.
        assert_eq!(unit_for("a+b", None).unwrap().1, "berth-a\\x2bb.scope");
    }

    #[test]
    fn runc_style_cgroups_path() {
        assert_eq!(
            unit_for("id", Some("machine.slice:docker:abc")).unwrap(),
            ("machine.slice".into(), "docker-abc.scope".into())
        );
        assert_eq!(
            unit_for("id", Some("a-b.slice:pre:")).unwrap(),
            ("a-b.slice".into(), "pre-id.scope".into())
        );
        assert_eq!(
            unit_for("id", Some("::n")).unwrap(),
            ("berth.slice".into(), "berth-n.scope".into())
        );
        for bad in [
            "/berth/id",
            "a:b",
            "x:y:z",
            "-a.slice:p:n",
            "a--b.slice:p:n",
            "s.slice:p:n.slice",
        ] {
            let e = unit_for("id", Some(bad)).unwrap_err();
            assert!(matches!(e, CgroupError::InvalidPath { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn default_slice_spreads_ids_stably() {
        assert_eq!(default_slice("web", 1), "berth.slice");
        assert_eq!(default_slice("web", 0), "berth.slice");
        assert_eq!(default_slice("web", 16), default_slice("web", 16));
        let used: std::collections::BTreeSet<String> = (0..1000)
            .map(|i| default_slice(&format!("scale-{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16, "{used:?}");
        assert!(used
            .iter()
            .all(|s| s.starts_with("berth-") && s.ends_with(".slice")));
        // A container that names its cgroupsPath keeps it; one that names
        // none goes to its sub-slice, under its usual unit name.
        let (slice, unit) = unit_in("web", None, 16).unwrap();
        assert_eq!(
            (slice, unit.as_str()),
            (default_slice("web", 16), "berth-web.scope")
        );
        assert_eq!(
            unit_in("web", Some("machine.slice:x:y"), 16).unwrap().0,
            "machine.slice"
        );
    }

    #[test]
    fn escape_matches_systemd() {
        assert_eq!(escape("abc-1_2:3.4"), "abc-1_2:3.4");
        assert_eq!(escape(".x"), "\\x2ex");
        assert_eq!(escape("a/b c"), "a\\x2fb\\x20c");
    }
    #[test]
    fn cgroup_paths_like_runc() {
        assert_eq!(cgroup_path("web", None).unwrap(), "/berth/web");
        assert_eq!(cgroup_path("web", Some("")).unwrap(), "/berth/web");
        assert_eq!(cgroup_path("web", Some("/a//b/")).unwrap(), "/a/b");
        assert_eq!(cgroup_path("web", Some("x/y")).unwrap(), "/berth/x/y");
        for bad in ["/", "/a/../b", "//", "system.slice:berth:web"] {
            assert!(cgroup_path("web", Some(bad)).is_err(), "{bad}");
        }
    }
}
