//! mount(2) option strings as the OCI spec (and runc) understand them: flags,
//! flags to clear, propagation, and everything else passed on as fs data.

use nix::mount::MsFlags;

/// One `mounts[].options` list, translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Propagation changes applied after the mount (MS_SHARED, MS_SLAVE, …).
    pub propagation: Vec<MsFlags>,
    /// fs-specific data, comma-joined ("mode=755,size=65536k").
    pub data: String,
    /// `bind` or `rbind` given (rbind adds MS_REC).
    pub bind: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
        }
    }
}

/// Maps an option to (flag, set?) for the flags mount(2) takes.
fn flag(opt: &str) -> Option<(MsFlags, bool)> {
    use MsFlags as F;
    Some(match opt {
        "defaults" => (F::empty(), true),
        "ro" => (F::MS_RDONLY, true),
        "rw" => (F::MS_RDONLY, false),
        "suid" => (F::MS_NOSUID, false),
        "nosuid" => (F::MS_NOSUID, true),
        "dev" => (F::MS_NODEV, false),
        "nodev" => (F::MS_NODEV, true),
        "exec" => (F::MS_NOEXEC, false),
        "noexec" => (F::MS_NOEXEC, true),
        "sync" => (F::MS_SYNCHRONOUS, true),
        "async" => (F::MS_SYNCHRONOUS, false),
        "dirsync" => (F::MS_DIRSYNC, true),
        "remount" => (F::MS_REMOUNT, true),
        "mand" => (F::MS_MANDLOCK, true),
        "nomand" => (F::MS_MANDLOCK, false),
        "atime" => (F::MS_NOATIME, false),
        "noatime" => (F::MS_NOATIME, true),
        "diratime" => (F::MS_NODIRATIME, false),
        "nodiratime" => (F::MS_NODIRATIME, true),
        "relatime" => (F::MS_RELATIME, true),
        "norelatime" => (F::MS_RELATIME, false),
        "strictatime" => (F::MS_STRICTATIME, true),
        "nostrictatime" => (F::MS_STRICTATIME, false),
        _ => return None,
    })
}

/// The propagation flag for an option or `rootfsPropagation` value.
pub fn propagation_flag(opt: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match opt {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// Parses a `mounts[].options` list. Unknown options are fs data, as in runc.
pub fn parse_options(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        if opt.is_empty() || opt.contains('\0') || opt.contains(',') {
            return Err(format!("bad option {opt:?}"));
        }
        if opt == "bind" || opt == "rbind" {
            out.bind = true;
            out.flags |= MsFlags::MS_BIND;
            if opt == "rbind" {
                out.flags |= MsFlags::MS_REC;
            }
        } else if let Some((f, set)) = flag(opt) {
            if set {
                out.flags |= f;
            } else {
                out.flags &= !f;
            }
        } else if let Some(p) = propagation_flag(opt) {
            out.propagation.push(p);
        } else if matches!(
            opt.as_str(),
            "rro" | "rrw" | "idmap" | "ridmap" | "tmpcopyup"
        ) {
            return Err(format!("option {opt:?} is not supported"));
        } else {
            data.push(opt.as_str());
        }
    }
    out.data = data.join(",");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = opts(&["rbind", "ro", "rslave"]);
        assert!(o.bind);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        // Later options win, as with mount(8).
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
    }

    #[test]
    fn bad_options() {
        for bad in ["", "a,b", "rro"] {
            assert!(parse_options(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }
}
