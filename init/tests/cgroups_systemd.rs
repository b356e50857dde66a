//! The cgroup drivers inside a berth box: the systemd driver against a real
//! systemd, and the cgroupfs driver on the box's own cgroup2 tree.
//!
//! The driver must run inside the box (it talks to the box's system bus and
//! places a process of the box), so each step runs the `cgroup_probe` example
//! there; this test asserts from the outside with systemctl and the box's
//! cgroup tree. Every process the probe starts lives in the box and dies with
//! it; `destroy` kills the probe's own child by way of its scope.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use berth_box::SystemdBox;

/// The `cgroup_probe` example, built on first use: `cargo test` with a test
/// name filter (`cargo test -p berth-init cgroups`) does not build examples.
/// Cargo holds no lock while tests run, so a nested build is fine.
fn probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            // target/<profile>/deps/<this test> → target/<profile>
            let dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo.args(["build", "-p", "berth-init", "--example", "cgroup_probe"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cargo.arg("--release");
            }
            let out = cargo.output().expect("running cargo build");
            assert!(
                out.status.success(),
                "building the cgroup_probe example failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let p = dir.join("examples/cgroup_probe");
            assert!(p.exists(), "{} missing after cargo build", p.display());
            p
        })
        .clone()
}

struct Run {
    ok: bool,
    out: String,
    kv: HashMap<String, String>,
}

fn run(b: &SystemdBox, args: &[&str]) -> Run {
    let out = b
        .command(probe().to_str().expect("utf-8 path"))
        .args(args)
        .output()
        .expect("running cgroup_probe in the box");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let kv = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Run {
        ok: out.status.success(),
        out: text,
        kv,
    }
}

fn ok(b: &SystemdBox, args: &[&str]) -> Run {
    let r = run(b, args);
    assert!(r.ok, "cgroup_probe {args:?} failed:\n{}", r.out);
    r
}

/// `systemctl show -p A,B,...` as a map.
fn show(b: &SystemdBox, unit: &str, props: &str) -> HashMap<String, String> {
    b.sh_ok(&format!("systemctl show -p {props} {unit}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gone(b: &SystemdBox, unit: &str) -> bool {
    let load = b.sh_ok(&format!("systemctl show -P LoadState {unit}"));
    load.trim() == "not-found"
}

/// After a destroy: the cgroup `dir` is gone and so is process `pid`. The
/// destroy returns once the cgroup is empty; the process (the probe's
/// `sleep`, orphaned to the box's pid 1) may stay a zombie until pid 1
/// reaps it, so its /proc entry gets up to 2 s.
fn assert_gone(b: &SystemdBox, dir: &str, pid: &str) {
    b.sh_ok(&format!(
        "test ! -e {dir} && for i in $(seq 100); do test -e /proc/{pid} || exit 0; sleep 0.02; done; \
         echo process {pid} still there >&2; exit 1"
    ));
}

#[test]
fn cgroups_systemd_scope_lifecycle() {
    let Some(b) = berth_box::up_or_skip("cgroups_systemd_scope_lifecycle") else {
        return;
    };
    let controllers = b.sh_ok("cat /sys/fs/cgroup/cgroup.controllers");
    let controllers: Vec<&str> = controllers.split_whitespace().collect();

    // Limits: enforced where the controllers exist, refused where not.
    let limits = r#"{"pids":{"limit":10},"memory":{"limit":67108864}}"#;
    let r = run(&b, &["create", "lim", "--resources", limits]);
    if controllers.contains(&"memory") && controllers.contains(&"pids") {
        assert!(r.ok, "{}", r.out);
        let p = show(&b, "berth-lim.scope", "TasksMax,MemoryMax");
        assert_eq!(p["TasksMax"], "10");
        assert_eq!(p["MemoryMax"], "67108864");
        let dir = &r.kv["cgroup"];
        assert_eq!(b.sh_ok(&format!("cat {dir}/pids.max")).trim(), "10");
        assert_eq!(b.sh_ok(&format!("cat {dir}/memory.max")).trim(), "67108864");
        ok(&b, &["destroy", "berth-lim.scope"]);
    } else {
        assert!(
            !r.ok,
            "limits were accepted without their controllers:\n{}",
            r.out
        );
        assert_eq!(
            r.kv.get("error_kind").map(String::as_str),
            Some("ControllerUnavailable controller=memory setting=linux.resources.memory.limit"),
            "{}",
            r.out
        );
        // Checked before creating the scope: nothing is left behind.
        assert!(
            gone(&b, "berth-lim.scope"),
            "a refused scope was left behind"
        );
        b.sh_ok("test ! -e /sys/fs/cgroup/berth.slice/berth-lim.scope");
        let r = run(
            &b,
            &["create", "lim", "--resources", r#"{"pids":{"limit":10}}"#],
        );
        assert!(
            !r.ok
                && r.out
                    .contains("controller=pids setting=linux.resources.pids.limit"),
            "{}",
            r.out
        );
        let host = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers"))
            .unwrap_or_default();
        println!(
            "SKIP enforcement of pids/memory limits: the box's cgroup tree offers controllers \
             [{}] (the host's v2 tree offers [{}]); berth refuses the limits by name: {}",
            controllers.join(" "),
            host.trim(),
            r.kv["error"]
        );
    }

    // What this box can honour: an unlimited pids setting (no controller
    // needed) and a device allowlist (a BPF program, no controller either).
    let res = r#"{"pids":{"limit":-1},"devices":[{"allow":false,"access":"rwm"}]}"#;
    let r = ok(&b, &["create", "web", "--resources", res]);
    println!("scope created in {} ms", r.kv["apply_ms"]);
    let unit = "berth-web.scope";
    assert_eq!(r.kv["path"], unit);
    let pid = r.kv["pid"].clone();
    let p = show(
        &b,
        unit,
        "TasksMax,MemoryMax,Delegate,FreezerState,DevicePolicy,ActiveState,Slice,ControlGroup,Description",
    );
    assert_eq!(p["TasksMax"], "infinity");
    // Not requested, so not set.
    assert_eq!(p["MemoryMax"], "infinity");
    assert_eq!(p["Delegate"], "yes");
    assert_eq!(p["FreezerState"], "running");
    assert_eq!(p["DevicePolicy"], "strict");
    assert_eq!(p["ActiveState"], "active");
    assert_eq!(p["Slice"], "berth.slice");
    assert_eq!(p["ControlGroup"], "/berth.slice/berth-web.scope");
    assert_eq!(p["Description"], "berth container web");
    let dir = "/sys/fs/cgroup/berth.slice/berth-web.scope";
    assert_eq!(r.kv["cgroup"], dir);
    assert_eq!(b.sh_ok(&format!("cat {dir}/cgroup.procs")).trim(), pid);
    assert_eq!(r.kv["pids"], pid);
    // Enforcement of the device policy, from inside the scope.
    assert_eq!(r.kv["dev-null"], "allowed", "{}", r.out);
    match r.kv["dev-kmsg"].as_str() {
        "missing" => println!("SKIP device denial check: the box has no /dev/kmsg"),
        v => assert_eq!(v, "denied", "{}", r.out),
    }

    let r = ok(&b, &["freeze", unit]);
    println!("froze in {} ms", r.kv["freeze_ms"]);
    assert_eq!(r.kv["frozen"], "true");
    assert_eq!(show(&b, unit, "FreezerState")["FreezerState"], "frozen");
    assert_eq!(b.sh_ok(&format!("cat {dir}/cgroup.freeze")).trim(), "1");
    let r = ok(&b, &["thaw", unit]);
    assert_eq!(r.kv["frozen"], "false");
    assert_eq!(show(&b, unit, "FreezerState")["FreezerState"], "running");
    assert_eq!(ok(&b, &["pids", unit]).kv["pids"], pid);

    // update replaces the device allowlist (systemd would append to it).
    let before = b.sh_ok(&format!("systemctl show -p DeviceAllow {unit} | wc -l"));
    let kmsg = r#"{"devices":[{"allow":false,"access":"rwm"},
        {"allow":true,"type":"c","major":1,"minor":11,"access":"r"}]}"#;
    ok(&b, &["update", unit, "--resources", kmsg]);
    let allow = b.sh_ok(&format!("systemctl show -p DeviceAllow {unit}"));
    assert!(allow.contains("DeviceAllow=/dev/char/1:11 r\n"), "{allow}");
    assert_eq!(
        allow.lines().count(),
        before.trim().parse::<usize>().unwrap() + 1,
        "{allow}"
    );

    // Same name again: the live unit is reported, not replaced.
    let r = run(&b, &["create", "web"]);
    assert!(!r.ok && r.out.contains("already exists"), "{}", r.out);
    assert_eq!(ok(&b, &["pids", unit]).kv["pids"], pid);

    // runc-style "slice:prefix:name".
    let r = ok(
        &b,
        &["create", "x", "--cgroups-path", "berth-test.slice:demo:x"],
    );
    assert_eq!(r.kv["path"], "demo-x.scope");
    let p = show(&b, "demo-x.scope", "Slice,ControlGroup");
    assert_eq!(p["Slice"], "berth-test.slice");
    assert_eq!(
        p["ControlGroup"],
        "/berth.slice/berth-test.slice/demo-x.scope"
    );
    ok(&b, &["destroy", "demo-x.scope"]);
    assert!(gone(&b, "demo-x.scope"));

    // apply → update → freeze → destroy on one manager (one bus connection,
    // subscribed twice), as create's rollback does.
    let r = ok(&b, &["create", "cyc", "--cycle", "--resources", res]);
    assert!(gone(&b, "berth-cyc.scope"), "{}", r.out);

    let r = ok(&b, &["destroy", unit]);
    println!("scope destroyed in {} ms", r.kv["destroy_ms"]);
    assert!(gone(&b, unit), "{unit} still loaded after destroy");
    assert_gone(&b, dir, &pid);
    // Idempotent.
    ok(&b, &["destroy", unit]);
}

/// The same driver on a unified (v2) tree: the box's own cgroup2 mount, where
/// nothing else runs. No controllers are delegated there on our machines, so
/// this covers creation, cgroup.freeze, cgroup.kill, removal and refusals.
#[test]
fn cgroups_fs_v2_in_box() {
    let Some(b) = berth_box::up_or_skip("cgroups_fs_v2_in_box") else {
        return;
    };
    let probe = probe();
    let probe = probe.to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        let out = b
            .command(probe)
            .args(args)
            .arg("--fs")
            .output()
            .expect("probe");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text)
    };
    let value = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in:\n{text}"))
            .to_string()
    };

    let (ok, out) = run(&["create", "web"]);
    assert!(ok, "{out}");
    assert_eq!(value(&out, "path"), "/berth/web");
    let dir = "/sys/fs/cgroup/berth/web";
    assert_eq!(value(&out, "cgroup"), dir);
    let pid = value(&out, "pid");
    assert_eq!(b.sh_ok(&format!("cat {dir}/cgroup.procs")).trim(), pid);
    println!("cgroupfs (v2) apply took {} ms", value(&out, "apply_ms"));

    let (ok, out) = run(&["freeze", "/berth/web"]);
    assert!(ok && value(&out, "frozen") == "true", "{out}");
    assert!(b
        .sh_ok(&format!("cat {dir}/cgroup.events"))
        .contains("frozen 1"));
    let (ok, out) = run(&["thaw", "/berth/web"]);
    assert!(ok && value(&out, "frozen") == "false", "{out}");

    let available = b.sh_ok("cat /sys/fs/cgroup/cgroup.controllers");
    if !available.split_whitespace().any(|c| c == "pids") {
        let (ok, out) = run(&["create", "lim", "--resources", r#"{"pids":{"limit":5}}"#]);
        assert!(!ok, "{out}");
        assert!(
            out.contains("controller=pids setting=linux.resources.pids.limit"),
            "{out}"
        );
        b.sh_ok("test ! -e /sys/fs/cgroup/berth/lim");
        println!(
            "SKIP pids.max enforcement on cgroup v2: the box's tree offers [{}]",
            available.trim()
        );
    }
    // Device rules: a BPF program on the cgroup, enforced from inside it.
    let deny_all = r#"{"devices":[{"allow":false,"access":"rwm"}]}"#;
    let (ok, out) = run(&["create", "dev", "--resources", deny_all]);
    assert!(ok, "{out}");
    assert_eq!(
        value(&out, "dev-null"),
        "allowed",
        "a default device: {out}"
    );
    match value(&out, "dev-kmsg").as_str() {
        "missing" => println!("SKIP device denial check: the box has no /dev/kmsg"),
        v => assert_eq!(v, "denied", "{out}"),
    }
    // update replaces the program, so it can loosen the rules too.
    let kmsg_in_dev = || {
        b.sh_ok(
            "echo $$ > /sys/fs/cgroup/berth/dev/cgroup.procs && \
             if (exec 3</dev/kmsg) 2>/dev/null; then echo allowed; else echo denied; fi",
        )
    };
    if b.sh_ok("test -e /dev/kmsg && echo yes || true")
        .contains("yes")
    {
        assert_eq!(kmsg_in_dev().trim(), "denied");
        let allow_all = r#"{"devices":[{"allow":true,"access":"rwm"}]}"#;
        let (ok, out) = run(&["update", "/berth/dev", "--resources", allow_all]);
        assert!(ok, "{out}");
        assert_eq!(kmsg_in_dev().trim(), "allowed");
        let (ok, out) = run(&["update", "/berth/dev", "--resources", deny_all]);
        assert!(ok, "{out}");
        assert_eq!(kmsg_in_dev().trim(), "denied");
    }
    let (ok, out) = run(&["destroy", "/berth/dev"]);
    assert!(ok, "{out}");
    b.sh_ok("test ! -e /sys/fs/cgroup/berth/dev");
    // No rules, or rules that deny nothing: no program, every device reachable.
    let (ok, out) = run(&["create", "nodev", "--resources", r#"{"devices":[]}"#]);
    assert!(ok, "{out}");
    assert_ne!(value(&out, "dev-kmsg"), "denied", "{out}");
    let (ok, out) = run(&["destroy", "/berth/nodev"]);
    assert!(ok, "{out}");

    let (ok, out) = run(&["destroy", "/berth/web"]);
    assert!(ok, "{out}");
    assert_gone(&b, dir, &pid);
    let (ok, out) = run(&["destroy", "/berth/web"]);
    assert!(ok, "idempotent destroy: {out}");
}
