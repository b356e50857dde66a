//! `linux.seccomp`: the OCI profile turned into a libseccomp filter and loaded
//! as the last step before execve (after no_new_privs, which the caller sets
//! from `process.noNewPrivileges`; this module never sets it).
//!
//! Follows runc where the spec leaves room: syscall names unknown to the
//! installed libseccomp are skipped, rules whose action equals the default are
//! dropped, several conditions on one argument become one rule each (OR), and
//! errnoRet doubles as the SCMP_ACT_TRACE message.
//!
//! SCMP_ACT_NOTIFY: loading the filter yields a listener fd (libseccomp asks
//! for SECCOMP_FILTER_FLAG_NEW_LISTENER when a rule notifies). The process
//! that loaded it hands the fd at once to the runtime side over its sync
//! channel, and [`agent`] passes it on to `listenerPath` with the container
//! process state, as runc does.

pub mod agent;
mod cache;
mod compiled;

pub use compiled::{compile, Compiled};

/// The filter a process will load (no notifying rule), compiled ahead from
/// the cache under `state_root` (see cache.rs): loaded last with
/// no_new_privs, or early without it (while the process still has
/// CAP_SYS_ADMIN, where libseccomp would load it) — either way not compiled
/// by libseccomp again in every init and exec. None where it loads
/// otherwise or was not compiled here.
pub fn compiled_ahead(
    filter: Option<&LinuxSeccomp>,
    state_root: &std::path::Path,
) -> Option<Compiled> {
    match filter {
        Some(f) if !notifies(f) => cache::compiled_for(f, state_root),
        _ => None,
    }
}

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use libseccomp::error::SeccompError as LibError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::sync::{Channel, ToCreator};

/// Syscalls take at most six arguments (seccomp_data.args[6]).
const MAX_ARGS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.architectures: {arch} is not supported by the installed libseccomp: {source}")]
    UnsupportedArch { arch: String, source: LibError },
    #[error("linux.seccomp.flags: {flag} is not supported by the installed libseccomp or kernel: {source}")]
    UnsupportedFlag { flag: String, source: LibError },
    #[error("{at}: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")]
    NotifyWithoutListener { at: String },
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default (the fd could never be handed over)")]
    NotifyDefault,
    #[error("{at}: SCMP_ACT_NOTIFY cannot be used for {syscall} (the runtime needs it to hand the listener fd over)")]
    NotifyHandOver { at: String, syscall: String },
    #[error("{at}: SCMP_ACT_NOTIFY needs libseccomp >= 2.5 and Linux >= 5.7 (libseccomp API level {api}, want 6)")]
    NotifyUnsupported { at: String, api: u32 },
    #[error("linux.seccomp.listenerMetadata is set without listenerPath")]
    MetadataWithoutListener,
    #[error("{at}: errnoRet {value} does not fit the 16 bits seccomp returns")]
    ReturnOutOfRange { at: String, value: u32 },
    #[error("{at}: names is empty")]
    NoNames { at: String },
    #[error("{at}: args index {index} is out of range (syscalls have {MAX_ARGS} arguments)")]
    ArgIndex { at: String, index: usize },
    #[error("{at}: args[{index}] has valueTwo {value_two} with {op}; only SCMP_CMP_MASKED_EQ uses valueTwo")]
    ValueTwoUnused {
        at: String,
        index: usize,
        op: LinuxSeccompOperator,
        value_two: u64,
    },
    #[error("creating the seccomp filter: {source}")]
    Init { source: LibError },
    #[error("adding the seccomp rule for {syscall}: {source}")]
    Rule { syscall: String, source: LibError },
    #[error("loading the seccomp filter (needs no_new_privs or CAP_SYS_ADMIN): {source}")]
    Load { source: LibError },
    #[error("compiling the seccomp filter to BPF: {source}")]
    Compile { source: std::io::Error },
    #[error("loading the seccomp filter (needs no_new_privs or CAP_SYS_ADMIN): {source}")]
    LoadCompiled { source: std::io::Error },
    #[error("getting the seccomp listener fd: {source}")]
    ListenerFd { source: LibError },
    #[error("SCMP_ACT_NOTIFY: nothing to hand the seccomp listener fd to")]
    NoHandOver,
    #[error("handing the seccomp listener fd over: {source}")]
    HandOver { source: std::io::Error },
}

/// The syscalls between loading a filter and handing its listener fd over
/// (one sendmsg on the sync channel). A notification on one of them would
/// wait for an agent that never gets the fd. runc refuses `write` for the
/// same reason (its hand-over writes).
const HAND_OVER_SYSCALLS: &[&str] = &["sendmsg"];

/// libseccomp's API level with SECCOMP_USER_NOTIF (libseccomp 2.5, Linux 5.7).
const NOTIFY_API: u32 = 6;

/// Where in the spec a rule sits, for error messages: index plus the first
/// few names (Docker's profile has a rule with hundreds).
fn rule_at(i: usize, rule: &LinuxSyscall) -> String {
    let names = rule.names();
    let mut shown = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 3 {
        shown.push_str(", …");
    }
    format!("linux.seccomp.syscalls[{i}] ({shown})")
}

/// The libseccomp action for an OCI one. `ret` is errnoRet: the errno for
/// SCMP_ACT_ERRNO and the tracer's message for SCMP_ACT_TRACE (as in runc),
/// EPERM when absent; other actions carry no data, so it is ignored there.
fn action(
    s: &LinuxSeccomp,
    act: LinuxSeccompAction,
    ret: Option<u32>,
    at: &dyn Fn() -> String,
) -> Result<ScmpAction, SeccompError> {
    let data = || -> Result<u16, SeccompError> {
        let value = ret.unwrap_or(libc::EPERM as u32);
        u16::try_from(value).map_err(|_| SeccompError::ReturnOutOfRange { at: at(), value })
    };
    Ok(match act {
        // SCMP_ACT_KILL is the old name of SCMP_ACT_KILL_THREAD.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(data()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            if s.listener_path().is_none() {
                return Err(SeccompError::NotifyWithoutListener { at: at() });
            }
            ScmpAction::Notify
        }
    })
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

/// Adds an architecture (a no-op for the native one, already present).
/// libseccomp rejects architectures newer than itself here.
fn add_arch(ctx: &mut ScmpFilterContext, arch: ScmpArch, name: &str) -> Result<(), SeccompError> {
    ctx.add_arch(arch)
        .map(drop)
        .map_err(|source| SeccompError::UnsupportedArch {
            arch: name.to_string(),
            source,
        })
}

fn add_arches_and_flags(ctx: &mut ScmpFilterContext, s: &LinuxSeccomp) -> Result<(), SeccompError> {
    for arch in s.architectures().iter().flatten() {
        add_arch(ctx, scmp_arch(*arch), &arch.to_string())?;
    }
    for flag in s.flags().iter().flatten() {
        // Each setter checks the libseccomp API level, which also reflects
        // what the running kernel supports.
        let set = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        };
        set.map_err(|source| SeccompError::UnsupportedFlag {
            flag: flag.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// The conditions of one rule. All must hold (AND) in one libseccomp rule.
fn conditions(
    at: &dyn Fn() -> String,
    args: &[LinuxSeccompArg],
) -> Result<Vec<ScmpArgCompare>, SeccompError> {
    args.iter()
        .map(|arg| {
            let index = arg.index();
            if index >= MAX_ARGS {
                return Err(SeccompError::ArgIndex { at: at(), index });
            }
            let value_two = arg.value_two().unwrap_or(0);
            let op = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                // OCI: value is the mask, valueTwo what (arg & mask) must equal.
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    let mask = ScmpCompareOp::MaskedEqual(arg.value());
                    return Ok(ScmpArgCompare::new(index as u32, mask, value_two));
                }
            };
            // libseccomp would silently ignore it; a profile that sets it most
            // likely meant SCMP_CMP_MASKED_EQ.
            if value_two != 0 {
                return Err(SeccompError::ValueTwoUnused {
                    at: at(),
                    index,
                    op: arg.op(),
                    value_two,
                });
            }
            Ok(ScmpArgCompare::new(index as u32, op, arg.value()))
        })
        .collect()
}

/// Checks everything that does not need the kernel to take the filter:
/// actions, errnoRet ranges, args, and (against a scratch filter) that the
/// installed libseccomp knows every architecture and flag.
pub fn validate(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    let default_at = || "linux.seccomp.defaultAction".to_string();
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    // The spec: listenerPath alone is ignored, metadata alone is an error.
    if s.listener_metadata().is_some() && s.listener_path().is_none() {
        return Err(SeccompError::MetadataWithoutListener);
    }
    action(s, s.default_action(), s.default_errno_ret(), &default_at)?;
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let at = || rule_at(i, rule);
        if rule.names().is_empty() {
            return Err(SeccompError::NoNames { at: at() });
        }
        action(s, rule.action(), rule.errno_ret(), &at)?;
        conditions(&at, rule.args().as_deref().unwrap_or_default())?;
        if rule.action() == LinuxSeccompAction::ScmpActNotify {
            check_notify(&at, rule)?;
        }
    }
    let mut scratch = ScmpFilterContext::new(ScmpAction::Allow)
        .map_err(|source| SeccompError::Init { source })?;
    add_arches_and_flags(&mut scratch, s)
}

fn check_notify(at: &dyn Fn() -> String, rule: &LinuxSyscall) -> Result<(), SeccompError> {
    if let Some(name) = rule
        .names()
        .iter()
        .find(|n| HAND_OVER_SYSCALLS.contains(&n.as_str()))
    {
        return Err(SeccompError::NotifyHandOver {
            at: at(),
            syscall: name.clone(),
        });
    }
    let api = libseccomp::get_api();
    if api < NOTIFY_API {
        return Err(SeccompError::NotifyUnsupported { at: at(), api });
    }
    Ok(())
}

/// Whether loading `s` yields a listener fd (a rule has SCMP_ACT_NOTIFY).
pub fn notifies(s: &LinuxSeccomp) -> bool {
    s.syscalls()
        .iter()
        .flatten()
        .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
}

/// Builds the filter without loading it.
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    validate(s)?;
    let default_at = || "linux.seccomp.defaultAction".to_string();
    let default = action(s, s.default_action(), s.default_errno_ret(), &default_at)?;
    let mut ctx =
        ScmpFilterContext::new(default).map_err(|source| SeccompError::Init { source })?;
    // libseccomp sets no_new_privs itself on load by default; the spec's
    // process.noNewPrivileges decides that, and the caller has applied it.
    ctx.set_ctl_nnp(false)
        .map_err(|source| SeccompError::Init { source })?;
    add_arches_and_flags(&mut ctx, s)?;

    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let at = || rule_at(i, rule);
        let act = action(s, rule.action(), rule.errno_ret(), &at)?;
        // libseccomp refuses rules that repeat the default action; they
        // change nothing, so drop them as runc does.
        if act == default {
            continue;
        }
        let args = rule.args().as_deref().unwrap_or_default();
        let conds = conditions(&at, args)?;
        // libseccomp allows one comparison per argument in a rule. Profiles
        // (Docker's personality rule) list several values for one argument
        // and mean "any of them": split into one rule per condition, like runc.
        let mut seen = [false; MAX_ARGS];
        let repeated = args
            .iter()
            .any(|a| std::mem::replace(&mut seen[a.index()], true));
        for name in rule.names() {
            // Unknown to this libseccomp (newer than it, or another arch's
            // syscall): skipped like runc, so one profile serves many hosts.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if repeated {
                conds
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, syscall, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(act, syscall, &conds).map(drop)
            };
            added.map_err(|source| SeccompError::Rule {
                syscall: name.clone(),
                source,
            })?;
        }
    }
    Ok(ctx)
}

/// A loaded filter: its listener fd when a rule notifies.
pub struct Loaded {
    /// Kept until the caller has handed the listener over: freeing it may
    /// munmap, one more syscall under the filter before the agent has the fd.
    _ctx: ScmpFilterContext,
    pub listener: Option<OwnedFd>,
}

/// Builds and loads the filter into the calling thread. The caller has set
/// no_new_privs (or holds CAP_SYS_ADMIN), or the kernel refuses.
pub fn load(s: &LinuxSeccomp) -> Result<Loaded, SeccompError> {
    let ctx = build(s)?;
    ctx.load().map_err(|source| SeccompError::Load { source })?;
    let listener = if notifies(s) {
        let fd = ctx
            .get_notify_fd()
            .map_err(|source| SeccompError::ListenerFd { source })?;
        // SAFETY: the fd is the kernel's fresh listener, which libseccomp
        // only remembers (it closes it on seccomp_reset(NULL), which nothing
        // here calls); we own it from now on and close it once handed over.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    } else {
        None
    };
    Ok(Loaded {
        _ctx: ctx,
        listener,
    })
}

/// Loads the filter; its listener fd, if it has one, goes at once over `to`
/// (the sync channel to the creator, or an exec's to its caller), the only
/// syscall between the two being one sendmsg.
pub fn load_handing_over(s: &LinuxSeccomp, to: Option<&Channel>) -> Result<(), SeccompError> {
    let loaded = load(s)?;
    if let Some(fd) = &loaded.listener {
        let to = to.ok_or(SeccompError::NoHandOver)?;
        to.send_with_fd(&ToCreator::SeccompListener, fd.as_fd())
            .map_err(|source| SeccompError::HandOver { source })?;
    }
    // Dropped now: our copy of the listener closes, so no process of the
    // container can ever answer its own notifications.
    drop(loaded);
    Ok(())
}

#[cfg(test)]
mod tests;
