//! create → start → exit → delete, and the errors around it, against a real
//! systemd (the box) with real namespaces, mounts and cgroups.

mod common;

use common::{assert_nothing_left, busybox_bundle, text, Bundle, Rt};
use serde_json::json;

#[test]
fn create_start_output_exit_delete() {
    let Some(b) = berth_box::up_or_skip("create_start_output_exit_delete") else {
        return;
    };
    for systemd in [false, true] {
        let rt = Rt::new(&b, systemd);
        let bundle = busybox_bundle("life", &["sh", "-c", "echo hello from $(hostname); exit 3"]);
        let out = rt.create("c1", &bundle, "/tmp/c1.log");
        assert!(out.status.success(), "create: {}", text(&out));
        assert!(
            out.stderr.is_empty(),
            "a successful create prints nothing on stderr"
        );
        let st = rt.state("c1");
        assert_eq!(st["status"], "created");
        assert_eq!(st["id"], "c1");
        assert_eq!(st["bundle"], bundle.path());
        let pid = st["pid"].as_i64().unwrap();
        assert!(pid > 0);
        // Blocked on the FIFO: nothing ran yet.
        assert_eq!(b.sh_ok("cat /tmp/c1.log"), "");
        rt.ok(&["start", "c1"]);
        rt.wait_status("c1", "stopped");
        assert_eq!(b.sh_ok("cat /tmp/c1.log"), "hello from berth\n");
        assert_eq!(rt.state("c1")["pid"], 0, "runc reports pid 0 once stopped");
        // Start twice: a clear error, as runc's.
        let again = rt.run(&["start", "c1"]);
        assert!(!again.status.success());
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(
            err.contains("cannot start container c1: it is stopped"),
            "{err}"
        );
        assert!(err.contains("level=error"), "runc-style error line: {err}");
        rt.ok(&["delete", "c1"]);
        assert_nothing_left(&rt, "c1");
    }
}

#[test]
fn run_returns_the_exit_code_and_output() {
    let Some(b) = berth_box::up_or_skip("run_returns_the_exit_code_and_output") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("run", &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    let out = rt.run(&["run", "r1", "--bundle", bundle.path()]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    assert_nothing_left(&rt, "r1");
    // A signal death is reported like a shell: 128 + signal. (The container's
    // pid 1 cannot SIGKILL itself: the kernel ignores that inside its pid
    // namespace. So the signal comes from outside, through `kill`.)
    let bundle = busybox_bundle("run-sig", &["sleep", "300"]);
    let run = common::shell_join(&rt.argv(&["run", "r2", "--bundle", bundle.path()]));
    let kill = common::shell_join(&rt.argv(&["kill", "r2", "KILL"]));
    let script = format!(
        "{run} </dev/null >/dev/null 2>&1 & \
         until {kill} 2>/dev/null; do sleep 0.05; done; wait $!; echo $?"
    );
    assert_eq!(b.sh_ok(&script).trim(), "137");
    assert_nothing_left(&rt, "r2");
}

#[test]
fn start_twice_and_state_of_running() {
    let Some(b) = berth_box::up_or_skip("start_twice_and_state_of_running") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("twice", &["sleep", "300"]);
    assert!(rt.create("c2", &bundle, "/dev/null").status.success());
    rt.ok(&["start", "c2"]);
    assert_eq!(rt.status("c2"), "running");
    let again = rt.run(&["start", "c2"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("it is running"));
    // Delete of a running container needs --force.
    let del = rt.run(&["delete", "c2"]);
    assert!(!del.status.success());
    assert!(
        String::from_utf8_lossy(&del.stderr).contains("cannot delete container c2: it is running")
    );
    rt.ok(&["kill", "c2", "KILL"]);
    rt.wait_status("c2", "stopped");
    rt.ok(&["delete", "c2"]);
    assert_nothing_left(&rt, "c2");
}

#[test]
fn kill_a_created_container_and_force_delete() {
    let Some(b) = berth_box::up_or_skip("kill_a_created_container_and_force_delete") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("killc", &["sleep", "300"]);
    assert!(rt.create("k1", &bundle, "/dev/null").status.success());
    rt.ok(&["kill", "k1", "SIGKILL"]);
    rt.wait_status("k1", "stopped");
    let bad = rt.run(&["kill", "k1", "NOSUCHSIG"]);
    assert!(!bad.status.success());
    rt.ok(&["delete", "k1"]);
    // --force deletes a running one.
    assert!(rt.create("k2", &bundle, "/dev/null").status.success());
    rt.ok(&["start", "k2"]);
    let pid = rt.state("k2")["pid"].as_i64().unwrap();
    rt.ok(&["delete", "--force", "k2"]);
    assert!(!b
        .sh(&format!("test -d /proc/{pid}"))
        .unwrap()
        .status
        .success());
    assert_nothing_left(&rt, "k2");
}

#[test]
fn missing_executable_fails_at_create_and_leaves_nothing() {
    let Some(b) = berth_box::up_or_skip("missing_executable_fails_at_create") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("noexec", &["/bin/does-not-exist"]);
    let out = rt.create("m1", &bundle, "/tmp/m1.log");
    assert!(!out.status.success());
    let log = b.sh_ok("cat /tmp/m1.log");
    assert!(
        log.contains("stat /bin/does-not-exist: no such file or directory"),
        "{log}"
    );
    assert_nothing_left(&rt, "m1");
}

#[test]
fn bad_input_gives_named_errors_and_changes_nothing() {
    let Some(b) = berth_box::up_or_skip("bad_input_gives_named_errors") else {
        return;
    };
    let rt = Rt::new(&b, true);
    type Mutate = Box<dyn Fn(&mut Bundle)>;
    let cases: Vec<(&str, Mutate, &str)> = vec![
        (
            "missing root",
            Box::new(|b| {
                b.config.as_object_mut().unwrap().remove("root");
            }),
            "root: missing",
        ),
        (
            "bad json",
            Box::new(|b| {
                std::fs::write(b.dir.join("config.json"), "{ not json").unwrap();
            }),
            "invalid config.json",
        ),
        (
            "bad mount",
            Box::new(|b| {
                b.config["mounts"].as_array_mut().unwrap().push(
                    json!({"destination": "relative/path", "type": "tmpfs", "source": "tmpfs"}),
                );
            }),
            "relative/path must be absolute",
        ),
        (
            "unknown namespace",
            Box::new(|b| {
                b.config["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "bogus"}));
            }),
            "invalid config.json",
        ),
        (
            "bind source missing",
            Box::new(|b| {
                b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "bind", "source": "/nonexistent-berth", "options": ["rbind"]}));
            }),
            "no such file or directory",
        ),
        (
            "ociVersion",
            Box::new(|b| {
                b.config["ociVersion"] = json!("2.0.0");
            }),
            "ociVersion",
        ),
        (
            "empty args",
            Box::new(|b| {
                b.config["process"]["args"] = json!([]);
            }),
            "process.args",
        ),
    ];
    for (i, (what, mutate, expect)) in cases.iter().enumerate() {
        let mut bundle = busybox_bundle("bad", &["true"]);
        mutate(&mut bundle);
        if *what != "bad json" {
            bundle.save();
        }
        let id = format!("bad{i}");
        let out = rt.create(&id, &bundle, "/tmp/bad.log");
        assert!(!out.status.success(), "{what}: create succeeded");
        let log = b.sh_ok("cat /tmp/bad.log");
        assert!(log.contains(expect), "{what}: expected {expect:?} in {log}");
        assert_nothing_left(&rt, &id);
    }
    for id in ["", "a/b", "..", "x\u{1}y", &"a".repeat(129)] {
        let bundle = busybox_bundle("badid", &["true"]);
        let out = rt.create(id, &bundle, "/tmp/badid.log");
        assert!(!out.status.success(), "id {id:?} accepted");
        assert!(b
            .sh_ok("cat /tmp/badid.log")
            .contains("invalid container id"));
    }
    let missing = rt.run(&["create", "nob", "--bundle", "/nonexistent-bundle"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such directory"));
    assert!(
        String::from_utf8_lossy(&rt.run(&["state", "nosuch"]).stderr).contains("does not exist")
    );
}
