//! Tests of the hooks runner with real /bin/sh hooks.
use super::*;
use oci_spec::runtime::HooksBuilder;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, unique per process and test,
/// removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("berth-hooks-test-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hook(path: &str, args: &[&str]) -> Hook {
    let mut hook = Hook::default();
    hook.set_path(path.into());
    hook.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    hook
}

/// `/bin/sh -c script`, where the script sees `arg` as `$1`.
fn sh(script: &str, arg: &str) -> Hook {
    hook("/bin/sh", &["sh", "-c", script, "sh", arg])
}

fn state() -> OciState {
    OciState {
        oci_version: "1.2.0".into(),
        id: "web".into(),
        status: "created".into(),
        pid: Some(4242),
        bundle: "/run/berth/web/bundle".into(),
        annotations: BTreeMap::from([("io.berth.test".into(), "yes".into())]),
    }
}

fn run1(hook: Hook) -> Result<(), HookError> {
    run(&[hook], Phase::Poststop, &state())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn phase_names_are_the_spec_keys() {
    let names = Phase::ALL.map(|p| p.to_string()).join(" ");
    let want = "prestart createRuntime createContainer startContainer poststart poststop";
    assert_eq!(names, want);
}

#[test]
fn hooks_for_picks_the_phase() {
    let (a, b) = (hook("/bin/a", &[]), hook("/bin/b", &[]));
    let mut hooks = HooksBuilder::default().build().unwrap();
    hooks.set_create_runtime(Some(vec![a.clone()]));
    hooks.set_poststop(Some(vec![b.clone(), a.clone()]));
    assert_eq!(
        hooks_for(Some(&hooks), Phase::CreateRuntime),
        vec![a.clone()]
    );
    assert_eq!(hooks_for(Some(&hooks), Phase::Poststop), [b, a]);
    assert!(hooks_for(Some(&hooks), Phase::Prestart).is_empty());
    assert!(hooks_for(None, Phase::Poststart).is_empty());
}

#[test]
fn validate_rejects_relative_paths_zero_timeouts_and_bad_env() {
    let mut ok = hook("/bin/true", &[]);
    ok.set_timeout(Some(5));
    ok.set_env(Some(vec!["A=b=c".into(), "EMPTY=".into()]));
    // `bad` is hooks.poststart[1], after a valid hook.
    let check = |edit: &dyn Fn(&mut Hook) -> &mut Hook| {
        let mut bad = ok.clone();
        edit(&mut bad);
        let mut hooks = Hooks::default();
        hooks.set_poststart(Some(vec![ok.clone(), bad]));
        validate(Some(&hooks))
    };
    assert!(validate(None).is_ok());
    assert!(check(&|h| h).is_ok());

    let err = check(&|h| h.set_path("bin/true".into())).unwrap_err();
    assert!(
        matches!(err, HookError::RelativePath { index: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "hooks.poststart[1] bin/true: path must be absolute"
    );
    for timeout in [0, -3] {
        let err = check(&|h| h.set_timeout(Some(timeout))).unwrap_err();
        assert!(matches!(err, HookError::InvalidTimeout { timeout: t, .. } if t == timeout));
    }
    for entry in ["NOEQUALS", "=value"] {
        let err = check(&|h| h.set_env(Some(vec![entry.into()]))).unwrap_err();
        assert!(matches!(err, HookError::InvalidEnv { .. }), "{err:?}");
    }
    // run() checks too, for callers that skipped validate().
    let err = run1(hook("true", &[])).unwrap_err();
    assert!(matches!(err, HookError::RelativePath { .. }), "{err:?}");
}

#[test]
fn hooks_run_in_order_and_stop_at_the_first_failure() {
    let dir = TempDir::new();
    let log = dir.file("log");
    let append = |n: &str| sh(&format!("echo {n} >> \"$1\""), &log);
    run(
        &[append("1"), append("2"), append("3")],
        Phase::Prestart,
        &state(),
    )
    .unwrap();
    assert_eq!(read(&log), "1\n2\n3\n");

    std::fs::remove_file(&log).unwrap();
    let hooks = [append("1"), sh("exit 7", ""), append("3")];
    let err = run(&hooks, Phase::CreateRuntime, &state()).unwrap_err();
    let HookError::Failed {
        phase,
        index: 1,
        status,
        ..
    } = err
    else {
        panic!("expected hook 1 to fail, got {err:?}");
    };
    assert_eq!((phase, status.code()), (Phase::CreateRuntime, Some(7)));
    assert_eq!(read(&log), "1\n");
}

#[test]
fn state_arrives_on_stdin() {
    let dir = TempDir::new();
    let out = dir.file("state.json");
    run1(sh("cat > \"$1\"", &out)).unwrap();
    let got: OciState = serde_json::from_str(&read(&out)).unwrap();
    assert_eq!(got, state());
}

#[test]
fn a_hook_that_ignores_a_large_state_succeeds() {
    // Larger than a pipe buffer, so writing it meets EPIPE once `true` exits.
    let mut big = state();
    big.annotations.insert("big".into(), "x".repeat(1 << 20));
    run(&[hook("/bin/true", &["true"])], Phase::Poststop, &big).unwrap();
}

#[test]
fn env_is_exactly_the_hooks_env() {
    let dir = TempDir::new();
    let out = dir.file("env");
    // Shells export some variables of their own (dash PWD; bash also SHLVL, _).
    let env_of = |hook: Hook| {
        run1(hook).unwrap();
        let shell = ["PWD=", "OLDPWD=", "SHLVL=", "_="];
        let text = read(&out);
        let mut lines: Vec<String> = (text.lines())
            .filter(|l| !shell.iter().any(|s| l.starts_with(s)))
            .map(String::from)
            .collect();
        lines.sort();
        lines
    };
    let mut given = sh("env > \"$1\"", &out);
    given.set_env(Some(vec!["FOO=bar=baz".into(), "EMPTY=".into()]));
    assert_eq!(env_of(given), ["EMPTY=", "FOO=bar=baz"]);
    // No env: nothing of ours leaks, not even PATH.
    assert_eq!(env_of(sh("env > \"$1\"", &out)), Vec::<String>::new());
}

#[test]
fn args_are_the_whole_argv() {
    let dir = TempDir::new();
    let out = dir.file("cmdline");
    let script = "cat /proc/$$/cmdline > \"$1\"";
    run1(hook("/bin/sh", &["my-hook", "-c", script, "sh", &out])).unwrap();
    let cmdline = read(&out);
    let got: Vec<&str> = cmdline.trim_end_matches('\0').split('\0').collect();
    assert_eq!(got, ["my-hook", "-c", script, "sh", out.as_str()]);

    // Without args argv[0] is the path: the shell names itself by it when it
    // reads the state JSON on stdin as a script and fails.
    let mut bare = hook("/bin/sh", &[]);
    assert_eq!(argv(&bare), ("/bin/sh".to_string(), vec![]));
    bare.set_args(None);
    let err = run1(bare).unwrap_err();
    assert!(matches!(&err, HookError::Failed { output, .. } if output.starts_with("/bin/sh:")));
}

#[test]
fn failure_reports_status_and_output() {
    let err = run1(sh("echo to-stdout; echo to-stderr >&2; exit 3", "")).unwrap_err();
    let HookError::Failed {
        status, ref output, ..
    } = err
    else {
        panic!("expected Failed, got {err:?}");
    };
    assert_eq!(
        (status.code(), output.as_str()),
        (Some(3), "to-stdout\nto-stderr")
    );
    let want = "hooks.poststop[0] /bin/sh: failed with exit status: 3: to-stdout\nto-stderr";
    assert_eq!(err.to_string(), want);
}

#[test]
fn chatty_output_neither_deadlocks_nor_grows() {
    let script =
        "i=0; while [ $i -lt 20000 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done; exit 1";
    let err = run1(sh(script, "")).unwrap_err();
    let HookError::Failed { output, .. } = err else {
        panic!("expected Failed, got {err:?}");
    };
    assert!(
        output.len() <= 2 * OUTPUT_LIMIT + 1,
        "{} bytes",
        output.len()
    );
    assert!(output.contains("out-19999\n") && output.ends_with("err-19999"));
}

#[test]
fn timeout_kills_the_hook() {
    let dir = TempDir::new();
    let pidfile = dir.file("pid");
    let mut slow = sh("echo $$ > \"$1\"; exec sleep 10", &pidfile);
    slow.set_timeout(Some(1));
    let started = Instant::now();
    let err = run1(slow).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, HookError::TimedOut { timeout: 1, .. }),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(990), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // Killed and reaped: not even a zombie is left.
    let pid = read(&pidfile);
    assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists());
}

#[test]
fn a_grandchild_holding_stdout_does_not_block() {
    let dir = TempDir::new();
    let pidfile = dir.file("pid");
    let started = Instant::now();
    run1(sh("sleep 10 & echo $! > \"$1\"", &pidfile)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let pid = nix::unistd::Pid::from_raw(read(&pidfile).trim().parse().unwrap());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}
