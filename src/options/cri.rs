//! CreateContainer's options for callers that build the whole OCI spec
//! themselves (berth-cri, as containerd's CRI plugin does with its SpecOpts):
//! `spec` (s: runtime spec JSON, with `image`), `slice` (s: the parent slice
//! of the container's scope, the kubelet's cgroup_parent) and `log_path`
//! (s: a CRI-format log file the monitor writes besides journald).

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use zbus::zvariant::OwnedValue;

use super::{check_string, typed, OptionError};
use crate::daemon::brief;

pub const KEYS: &[&str] = &["spec", "slice", "log_path"];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriOptions {
    /// The caller's spec; berthd points its root at the image's rootfs.
    pub spec: Option<Box<Spec>>,
    pub slice: Option<String>,
    pub log_path: Option<PathBuf>,
}

impl CriOptions {
    pub fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        let s: String = typed(key, value, "s")?;
        match key {
            "spec" => {
                // A spec is bigger than other strings: 1 MiB is plenty.
                if s.len() > 1024 * 1024 {
                    return Err(OptionError::StringTooLong { key: key.into() });
                }
                let spec: Spec =
                    serde_json::from_str(&s).map_err(|e| OptionError::Spec(e.to_string()))?;
                if spec.process().is_none() {
                    return Err(OptionError::Spec("process: missing".into()));
                }
                self.spec = Some(Box::new(spec));
            }
            "slice" => {
                check_string(key, &s)?;
                check_slice(&s)?;
                self.slice = Some(s);
            }
            "log_path" => {
                check_string(key, &s)?;
                let p = PathBuf::from(&s);
                let plain = p.is_absolute()
                    && p.file_name().is_some()
                    && !p.components().any(|c| c == std::path::Component::ParentDir)
                    && !s.contains('\n');
                if !plain {
                    return Err(OptionError::LogPath(brief(&s).into()));
                }
                self.log_path = Some(p);
            }
            _ => return Err(OptionError::Unknown(brief(key).into())),
        }
        Ok(())
    }

    /// The scope's cgroupsPath for the systemd driver ("slice:berth:<id>":
    /// the unit stays berth-<id>.scope wherever it is placed).
    pub fn cgroups_path(&self, id: &str) -> Option<String> {
        self.slice.as_ref().map(|s| format!("{s}:berth:{id}"))
    }
}

/// A slice systemd can make with its parents implied by the name: `a-b.slice`
/// is in `a.slice`, which systemd loads (and starts) on demand, so the
/// kubelet's `kubepods-besteffort-pod<uid>.slice` needs nothing made first.
pub fn check_slice(s: &str) -> Result<(), OptionError> {
    let bad = || OptionError::Slice(brief(s).into());
    let stem = s.strip_suffix(".slice").ok_or_else(bad)?;
    let ok = !stem.is_empty()
        && stem.len() <= 200
        && stem != "-"
        && !stem.starts_with('-')
        && !stem.ends_with('-')
        && !stem.contains("--")
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_as_systemd_names_them() {
        for good in ["kubepods.slice", "kubepods-besteffort-pod1a2b_3c.slice"] {
            assert!(check_slice(good).is_ok(), "{good}");
        }
        for bad in [
            "kubepods",
            ".slice",
            "-a.slice",
            "a-.slice",
            "a--b.slice",
            "a/b.slice",
            "-.slice",
            "a b.slice",
        ] {
            assert!(check_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_paths_are_absolute_and_plain() {
        let v = |s: &str| OwnedValue::try_from(zbus::zvariant::Value::from(s)).unwrap();
        let mut o = CriOptions::default();
        assert!(o.set("log_path", &v("/var/log/pods/x/c/0.log")).is_ok());
        for bad in ["rel/0.log", "/a/../b.log", "/"] {
            assert!(o.set("log_path", &v(bad)).is_err(), "{bad}");
        }
        assert!(matches!(o.set("spec", &v("{")), Err(OptionError::Spec(_))));
        assert_eq!(
            CriOptions {
                slice: Some("k.slice".into()),
                ..Default::default()
            }
            .cgroups_path("c1")
            .as_deref(),
            Some("k.slice:berth:c1")
        );
    }
}
