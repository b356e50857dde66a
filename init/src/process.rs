//! Process attributes applied by the init before execve: rlimits, oom score,
//! user and groups, umask, no_new_privs, hostname.

use oci_spec::runtime::{PosixRlimitType, Process, Spec};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("rlimit {kind}: cannot set soft {soft} / hard {hard}: {source} (raising a hard limit needs CAP_SYS_RESOURCE)")]
    Rlimit {
        kind: String,
        soft: u64,
        hard: u64,
        source: nix::Error,
    },
    #[error("oomScoreAdj {value}: {source}")]
    OomScore { value: i32, source: std::io::Error },
    #[error("switching to uid {uid} gid {gid}: {step}: {source}")]
    User {
        uid: u32,
        gid: u32,
        step: &'static str,
        source: nix::Error,
    },
    #[error("setting {what}: {source}")]
    Uts {
        what: &'static str,
        source: nix::Error,
    },
    #[error("no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("cwd {path}: {source}")]
    Cwd { path: String, source: nix::Error },
    #[error("cwd {0}: outside the container's root")]
    CwdOutside(String),
}

fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType as R;
    match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(process: &Process) -> Result<(), ProcessError> {
    for rl in process.rlimits().iter().flatten() {
        let lim = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: setrlimit with a valid pointer to a local struct.
        let rc = unsafe { libc::setrlimit(resource(rl.typ()), &lim) };
        if rc != 0 {
            return Err(ProcessError::Rlimit {
                kind: format!("{:?}", rl.typ()),
                soft: rl.soft(),
                hard: rl.hard(),
                source: nix::Error::last(),
            });
        }
    }
    Ok(())
}

pub fn set_oom_score(process: &Process) -> Result<(), ProcessError> {
    if let Some(value) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", value.to_string())
            .map_err(|source| ProcessError::OomScore { value, source })?;
    }
    Ok(())
}

/// Hostname and domainname, in the container's (new) uts namespace.
pub fn set_uts(spec: &Spec) -> Result<(), ProcessError> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|source| ProcessError::Uts {
            what: "hostname",
            source,
        })?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: pointer and length of a live byte slice.
        let rc = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        nix::Error::result(rc).map_err(|source| ProcessError::Uts {
            what: "domainname",
            source,
        })?;
    }
    Ok(())
}

/// setgroups → setgid → setuid. Capabilities survive through KEEPCAPS (set by
/// the caller) and are re-applied afterwards.
pub fn switch_user(process: &Process) -> Result<(), ProcessError> {
    let user = process.user();
    let (uid, gid) = (user.uid(), user.gid());
    let err = |step, source| ProcessError::User {
        uid,
        gid,
        step,
        source,
    };
    let groups: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // In a user namespace with setgroups denied this fails; only call it when
    // there is something to set or something to clear.
    match nix::unistd::setgroups(&groups) {
        Err(nix::Error::EPERM) if groups.is_empty() => {}
        other => other.map_err(|e| err("setgroups", e))?,
    }
    let g = nix::unistd::Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(|e| err("setresgid", e))?;
    let u = nix::unistd::Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(|e| err("setresuid", e))?;
    // Unset in the spec: 0022, as runc does — not whatever the runtime's
    // starter had (berthd runs with UMask=0077).
    let mask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    Ok(())
}

pub fn set_no_new_privs(process: &Process) -> Result<(), ProcessError> {
    if process.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().map_err(ProcessError::NoNewPrivs)?;
    }
    Ok(())
}

pub fn enter_cwd(process: &Process) -> Result<(), ProcessError> {
    let err = |source| ProcessError::Cwd {
        path: process.cwd().display().to_string(),
        source,
    };
    nix::unistd::chdir(process.cwd()).map_err(err)?;
    // A cwd through a magic link (/proc/self/fd/N, /proc/<pid>/cwd) can be a
    // directory outside our root, from which `..` climbs to the host's /
    // (CVE-2024-21626). getcwd(3) fails with ENOENT for such a directory
    // (the kernel says "(unreachable)"): refuse it.
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(ProcessError::CwdOutside(
            process.cwd().display().to_string(),
        )),
    }
}

/// Makes `fds` the process's stdin, stdout and stderr (a shim's pipes).
pub fn set_stdio(fds: [std::os::fd::RawFd; 3]) -> Result<(), String> {
    for (target, fd) in fds.into_iter().enumerate() {
        nix::unistd::dup2(fd, target as i32).map_err(|e| format!("dup2 stdio: {e}"))?;
    }
    Ok(())
}
