//! The filter builder's tests; the loading ones fork, so the filter never
//! reaches the test harness.

use super::*;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("seccomp JSON")
}

const MKDIR_EPERM: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#;

#[test]
fn allow_default_with_mkdir_errno_builds() {
    let ctx = build(&profile(MKDIR_EPERM)).expect("build");
    assert_eq!(ctx.get_act_default().expect("default"), ScmpAction::Allow);
    assert!(!ctx.get_ctl_nnp().expect("nnp"), "nnp is the caller's job");
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let s = profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["read", "berth_no_such_syscall"], "action": "SCMP_ACT_ALLOW"}]}"#,
    );
    validate(&s).expect("validate");
    build(&s).expect("build");
}

#[test]
fn bad_architectures_are_rejected() {
    // An unknown name never gets past oci-spec's Arch enum...
    let bad = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#;
    let err = serde_json::from_str::<LinuxSeccomp>(bad).expect_err("VAX");
    assert!(err.to_string().contains("SCMP_ARCH_VAX"), "{err}");
    // ...and one the installed libseccomp predates is named by add_arch
    // (LoongArch arrived in libseccomp 2.6).
    let v = libseccomp::ScmpVersion::current().expect("version");
    if (v.major, v.minor) < (2, 6) {
        let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).expect("ctx");
        let err = add_arch(&mut ctx, ScmpArch::Loongarch64, "SCMP_ARCH_LOONGARCH64")
            .expect_err("loongarch64 on libseccomp < 2.6");
        assert!(err.to_string().contains("SCMP_ARCH_LOONGARCH64"), "{err}");
    }
}

const NOTIFY_MKDIR: &str =
    r#""syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]"#;

fn with_listener(rest: &str) -> LinuxSeccomp {
    profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock", {rest}}}"#
    ))
}

#[test]
fn notify_with_a_listener_builds() {
    let s = with_listener(NOTIFY_MKDIR);
    assert!(notifies(&s));
    build(&s).expect("build");
    // listenerPath alone is ignored (runtime-spec), and nothing notifies.
    let s = with_listener(r#""listenerMetadata": "m""#);
    assert!(!notifies(&s));
    build(&s).expect("build");
}

#[test]
fn notify_misuse_is_refused_with_a_reason() {
    let s = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", {NOTIFY_MKDIR}}}"#
    ));
    let err = validate(&s).expect_err("notify without listener");
    assert!(matches!(err, SeccompError::NotifyWithoutListener { .. }));
    assert!(
        err.to_string().contains("syscalls[0] (mkdir, mkdirat)"),
        "{err}"
    );
    let s = profile(r#"{"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/a.sock"}"#);
    let err = validate(&s).expect_err("notify as default");
    assert!(matches!(err, SeccompError::NotifyDefault), "{err}");
    let s = with_listener(
        r#""syscalls": [{"names": ["close", "sendmsg"], "action": "SCMP_ACT_NOTIFY"}]"#,
    );
    let err = validate(&s).expect_err("notify on the hand-over syscall");
    assert!(err.to_string().contains("for sendmsg"), "{err}");
    let s = profile(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}"#);
    let err = validate(&s).expect_err("metadata without listener");
    assert!(
        matches!(err, SeccompError::MetadataWithoutListener),
        "{err}"
    );
}

#[test]
fn bad_args_and_returns_are_named() {
    let rule = |extra: &str| {
        profile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{{"names": ["personality"], "action": "SCMP_ACT_ERRNO", {extra}}}]}}"#
        ))
    };
    let arg = r#""args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]"#;
    let err = validate(&rule(arg)).expect_err("index 6");
    assert!(matches!(err, SeccompError::ArgIndex { index: 6, .. }));
    let arg = r#""args": [{"index": 0, "value": 8, "valueTwo": 1, "op": "SCMP_CMP_EQ"}]"#;
    let err = validate(&rule(arg)).expect_err("valueTwo with EQ");
    assert!(err.to_string().contains("SCMP_CMP_EQ"), "{err}");
    let err = validate(&rule(r#""errnoRet": 70000"#)).expect_err("70000");
    assert!(matches!(err, SeccompError::ReturnOutOfRange { .. }));
    let s = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    let err = validate(&s).expect_err("empty names");
    assert!(err.to_string().contains("syscalls[0] ()"), "{err}");
}

#[test]
fn repeated_argument_conditions_build_as_separate_rules() {
    // Docker's default profile: personality allowed for any of these values.
    let s = profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["personality"],
            "action": "SCMP_ACT_ALLOW", "args": [
              {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
              {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
              {"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
           {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
              {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]}"#,
    );
    build(&s).expect("build");
}

/// Runs `child` in a forked child with no_new_privs set and `s` loaded,
/// and returns its exit code (101 when loading failed).
fn exit_code_under(s: &LinuxSeccomp, child: impl FnOnce() -> i32) -> i32 {
    exit_code_after(|| load(s).is_ok(), child)
}

/// Runs `child` in a forked child after no_new_privs and `load` (false:
/// loading failed, exit code 101), and returns its exit code.
fn exit_code_after(load: impl FnOnce() -> bool, child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs this code and then _exit()s, never
    // returning into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if nix::sys::prctl::set_no_new_privs().is_err() || !load() {
                    return 101;
                }
                child()
            }));
            unsafe { libc::_exit(code.unwrap_or(100)) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => code,
            other => panic!("child did not exit: {other:?}"),
        },
    }
}

#[test]
fn loaded_filter_makes_mkdir_fail_with_eperm() {
    let dir = std::env::temp_dir().join(format!("berth-seccomp-{}", std::process::id()));
    let code = exit_code_under(&profile(MKDIR_EPERM), || match std::fs::create_dir(&dir) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => 0,
        Ok(()) => 1,
        Err(_) => 2,
    });
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(code, 0, "1 allowed, 2 other error, 101 no load");
}

#[test]
fn errno_ret_is_what_the_syscall_returns() {
    let s = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
    );
    let code = exit_code_under(&s, || {
        // SAFETY: uname only writes into the struct it is given.
        let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::uname(&mut buf) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        match (rc, errno) {
            (-1, Some(libc::ENOSYS)) => 0,
            (0, _) => 1,
            _ => 2,
        }
    });
    assert_eq!(code, 0, "1 allowed, 2 other errno, 101 no load");
}

#[test]
fn the_listener_fd_is_handed_over_and_answers_for_the_process() {
    use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
    use std::os::fd::AsRawFd;
    let s = with_listener(NOTIFY_MKDIR);
    let (ours, theirs) = crate::sync::pair().expect("socketpair");
    let dir = std::env::temp_dir().join(format!("berth-notify-{}", std::process::id()));
    // SAFETY: the child only runs this code and then _exit()s.
    let child = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if nix::sys::prctl::set_no_new_privs().is_err()
                    || load_handing_over(&s, Some(&theirs)).is_err()
                {
                    return 101;
                }
                match std::fs::create_dir(&dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => 0,
                    Ok(()) => 1,
                    Err(_) => 2,
                }
            }));
            // SAFETY: leave without running the test harness's code.
            unsafe { libc::_exit(code.unwrap_or(100)) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let (msg, fd) = ours
        .recv_with_fd::<crate::sync::ToCreator>()
        .expect("recv")
        .expect("a message before the child ended");
    assert_eq!(msg, crate::sync::ToCreator::SeccompListener);
    let fd = fd.expect("the listener fd");
    // Bounded: a child that never notifies must not hang the test.
    let mut pfd = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut pfd, 10_000u16).expect("poll");
    if ready == 0 {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
    }
    assert_eq!(ready, 1, "no notification within 10 s");
    let req = ScmpNotifReq::receive(fd.as_raw_fd()).expect("receive");
    let name = req.data.syscall.get_name().expect("syscall name");
    assert!(name.starts_with("mkdir"), "{name}");
    ScmpNotifResp::new_error(req.id, -libc::EXDEV, ScmpNotifRespFlags::empty())
        .respond(fd.as_raw_fd())
        .expect("respond");
    let code = match waitpid(child, None).expect("waitpid") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("child did not exit: {other:?}"),
    };
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(code, 0, "1 mkdir ran, 2 other error, 101 no load");
}

/// As exit_code_under, with the filter compiled beforehand and loaded by
/// seccomp(2) (seccomp::compiled).
fn exit_code_under_compiled(s: &LinuxSeccomp, child: impl FnOnce() -> i32) -> i32 {
    let compiled = compile(s).expect("compile").expect("no flags: compiled");
    exit_code_after(|| compiled.load().is_ok(), child)
}

#[test]
fn a_compiled_filter_loads_and_acts_like_libseccomps_load() {
    let dir = std::env::temp_dir().join(format!("berth-seccomp-c-{}", std::process::id()));
    let code =
        exit_code_under_compiled(&profile(MKDIR_EPERM), || match std::fs::create_dir(&dir) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => 0,
            Ok(()) => 1,
            Err(_) => 2,
        });
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(code, 0, "1 allowed, 2 other error, 101 no load");
    let s = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
    );
    let code = exit_code_under_compiled(&s, || {
        // SAFETY: uname only writes into the struct it is given.
        let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::uname(&mut buf) };
        match (rc, std::io::Error::last_os_error().raw_os_error()) {
            (-1, Some(libc::ENOSYS)) => 0,
            (0, _) => 1,
            _ => 2,
        }
    });
    assert_eq!(code, 0, "1 allowed, 2 other errno, 101 no load");
}

#[test]
fn flags_and_notify_keep_libseccomps_load() {
    let with_flag = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    assert!(compile(&with_flag).expect("compile").is_none());
    let notify =
        with_listener(r#""syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]"#);
    assert!(compile(&notify).expect("compile").is_none());
}
