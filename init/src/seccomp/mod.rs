//! `linux.seccomp`: the OCI profile turned into a libseccomp filter and loaded
//! as the last step before execve (after no_new_privs, which the caller sets
//! from `process.noNewPrivileges`; this module never sets it).
//!
//! Follows runc where the spec leaves room: syscall names unknown to the
//! installed libseccomp are skipped, rules whose action equals the default are
//! dropped, several conditions on one argument become one rule each (OR), and
//! errnoRet doubles as the SCMP_ACT_TRACE message. SCMP_ACT_NOTIFY is refused:
//! berth has no seccomp agent to hand the listener fd to.

use libseccomp::error::SeccompError as LibError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

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
    #[error("{at}: SCMP_ACT_NOTIFY is not supported (berth has no seccomp agent for listenerPath {listener})")]
    NotifyUnsupported { at: String, listener: String },
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
}

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
            return Err(match s.listener_path() {
                None => SeccompError::NotifyWithoutListener { at: at() },
                Some(p) => SeccompError::NotifyUnsupported {
                    at: at(),
                    listener: p.display().to_string(),
                },
            })
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
    action(s, s.default_action(), s.default_errno_ret(), &default_at)?;
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let at = || rule_at(i, rule);
        if rule.names().is_empty() {
            return Err(SeccompError::NoNames { at: at() });
        }
        action(s, rule.action(), rule.errno_ret(), &at)?;
        conditions(&at, rule.args().as_deref().unwrap_or_default())?;
    }
    let mut scratch = ScmpFilterContext::new(ScmpAction::Allow)
        .map_err(|source| SeccompError::Init { source })?;
    add_arches_and_flags(&mut scratch, s)
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

/// Builds and loads the filter into the calling thread. The caller has set
/// no_new_privs (or holds CAP_SYS_ADMIN), or the kernel refuses.
pub fn load(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    build(s)?
        .load()
        .map_err(|source| SeccompError::Load { source })
}

#[cfg(test)]
mod tests;
