//! berthd as a real systemd service (Type=notify) on a real system bus, in a
//! box: the container lifecycle over D-Bus, named errors, restart recovery.

mod common;
#[allow(unused_imports)]
use common::*;

use std::collections::HashMap;
use std::time::Duration;

use berth_box::SystemdBox;
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, Value};

#[test]
fn lifecycle_over_dbus() {
    let Some(b) = berth_box::up_or_skip("lifecycle_over_dbus") else {
        return;
    };
    let c = berthd(&b);
    assert_eq!(b.sh_ok("systemctl is-active berthd").trim(), "active");
    let bundle = busybox_bundle("d-life", &["sh", "-c", "echo hello-dbus; exit 3"]);
    let path: OwnedObjectPath =
        call(&c, "CreateContainer", &("web", bundle.path(), no_options())).unwrap();
    assert_eq!(path.as_str(), "/io/berth/Berth1/container/web");
    assert_eq!(prop::<String>(&c, &path, "Status"), "created");
    assert!(prop::<u32>(&c, &path, "Pid") > 0);
    assert_eq!(prop::<String>(&c, &path, "Unit"), "berth-web.scope");
    assert_eq!(
        b.sh_ok("systemctl is-active berth-web.scope").trim(),
        "active"
    );
    let list: Vec<(String, String, OwnedObjectPath)> = call(&c, "ListContainers", &()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].1, "created");
    // STATUS= reaches systemd (updated every few seconds, and at start).
    let status = b.sh_ok("systemctl show -P StatusText berthd");
    assert!(status.contains("containers"), "{status}");
    assert_eq!(
        b.sh_ok("systemctl show -P WatchdogUSec berthd").trim(),
        "30s"
    );
    let () = call(&c, "StartContainer", &("web",)).unwrap();
    let (code, signal): (i32, i32) = call(&c, "WaitContainer", &("web",)).unwrap();
    assert_eq!((code, signal), (3, 0));
    assert_eq!(prop::<String>(&c, &path, "Status"), "stopped");
    assert_eq!(prop::<i32>(&c, &path, "ExitCode"), 3);
    assert!(prop::<u64>(&c, &path, "ExitedAt") >= prop::<u64>(&c, &path, "StartedAt"));
    let logs = b.sh_ok("journalctl --sync; journalctl -o cat CONTAINER_NAME=web");
    assert!(logs.contains("hello-dbus"), "{logs}");
    let () = call(&c, "DeleteContainer", &("web", false)).unwrap();
    let list: Vec<(String, String, OwnedObjectPath)> = call(&c, "ListContainers", &()).unwrap();
    assert!(list.is_empty());
    let gone = call::<OwnedObjectPath>(&c, "GetContainer", &("web",)).unwrap_err();
    assert!(error_name(gone).starts_with("io.berth.Berth1.Error.NotFound"));
    assert_eq!(
        b.sh_ok("systemctl list-units --no-legend 'berth-web*' | wc -l")
            .trim(),
        "0"
    );
}

#[test]
fn kill_0_in_a_container_spares_its_monitor() {
    let Some(b) = berth_box::up_or_skip("kill_0_spares_monitor") else {
        return;
    };
    let c = berthd(&b);
    // `kill -9 0` signals the sender's process group. Shared with the
    // monitor (no setsid for a container without a terminal), it killed
    // the monitor: no exit record, no logs after it. pid 1 itself is immune
    // to SIGKILL from inside its namespace, so a child sends it too.
    let script = "echo before-kill; kill -9 0; sh -c 'kill -9 0'; echo after-kill $?; exit 5";
    let bundle = busybox_bundle("d-kill0", &["sh", "-c", script]);
    let m = manager(&c);
    m.create_container("k0", bundle.path(), HashMap::new())
        .unwrap();
    m.start_container("k0").unwrap();
    let (code, signal) = m.wait_container("k0").unwrap();
    assert_eq!((code, signal), (5, 0), "the exit the monitor recorded");
    let logs = b.sh_ok("journalctl --sync; journalctl -o cat CONTAINER_NAME=k0");
    assert!(
        logs.contains("before-kill") && logs.contains("after-kill 137"),
        "{logs}"
    );
    m.delete_container("k0", false).unwrap();
}

#[test]
fn bad_input_gets_named_errors_and_changes_nothing() {
    let Some(b) = berth_box::up_or_skip("bad_input_gets_named_errors") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-bad", &["sleep", "300"]);
    let err = |r: zbus::Result<OwnedObjectPath>| error_name(r.unwrap_err());
    for id in ["", "a/b", "..", "x\u{7}y", &"a".repeat(129)] {
        let e = err(call(
            &c,
            "CreateContainer",
            &(id, bundle.path(), no_options()),
        ));
        assert!(
            e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
            "{id:?}: {e}"
        );
    }
    for bundle_path in ["relative/dir", "/nonexistent-bundle"] {
        let e = err(call(
            &c,
            "CreateContainer",
            &("x1", bundle_path, no_options()),
        ));
        assert!(
            e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
            "{e}"
        );
    }
    let mut opts = no_options();
    opts.insert("nonsense".into(), Value::from(1u32));
    let e = err(call(&c, "CreateContainer", &("x2", bundle.path(), opts)));
    assert!(e.contains("unknown option"), "{e}");
    // A limit whose controller the box lacks: named, and no scope left.
    let mut limited = busybox_bundle("d-mem", &["true"]);
    limited.config["linux"]["resources"]["memory"] = json!({"limit": 100_000_000});
    limited.save();
    let e = err(call(
        &c,
        "CreateContainer",
        &("mem1", limited.path(), no_options()),
    ));
    assert!(
        e.starts_with("io.berth.Berth1.Error.ControllerUnavailable"),
        "{e}"
    );
    assert!(e.contains("memory"), "{e}");
    assert_eq!(
        b.sh_ok("systemctl list-units --all --no-legend 'berth-mem1*' | wc -l")
            .trim(),
        "0"
    );

    // A program the container does not have: named (runc's message), at
    // create, and nothing left of the container.
    let missing = busybox_bundle("d-missing", &["no-such-program"]);
    let e = err(call(
        &c,
        "CreateContainer",
        &("nx1", missing.path(), no_options()),
    ));
    assert!(
        e.starts_with("io.berth.Berth1.Error.NotExecutable")
            && e.contains("executable file not found"),
        "{e}"
    );
    assert_eq!(
        b.sh_ok("systemctl list-units --all --no-legend 'berth-*nx1*' | wc -l; ls /run/berth | grep -c nx1 || true")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "0"]
    );

    let _: OwnedObjectPath =
        call(&c, "CreateContainer", &("ok1", bundle.path(), no_options())).unwrap();
    let e = err(call(
        &c,
        "CreateContainer",
        &("ok1", bundle.path(), no_options()),
    ));
    assert!(e.starts_with("io.berth.Berth1.Error.AlreadyExists"), "{e}");
    let () = call(&c, "StartContainer", &("ok1",)).unwrap();
    let e = error_name(call::<()>(&c, "StartContainer", &("ok1",)).unwrap_err());
    assert!(
        e.starts_with("io.berth.Berth1.Error.FailedPrecondition"),
        "{e}"
    );
    let e = error_name(call::<()>(&c, "DeleteContainer", &("ok1", false)).unwrap_err());
    assert!(
        e.starts_with("io.berth.Berth1.Error.FailedPrecondition"),
        "{e}"
    );
    let e = error_name(
        call::<String>(
            &c,
            "ExecContainer",
            &(
                "ok1",
                r#"{"args": ["/bin/nope"], "cwd": "/"}"#,
                no_options(),
            ),
        )
        .unwrap_err(),
    );
    assert!(e.starts_with("io.berth.Berth1.Error.NotExecutable"), "{e}");
    let e = error_name(call::<()>(&c, "KillContainer", &("ok1", "everyone", 9)).unwrap_err());
    assert!(
        e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
        "{e}"
    );
    let e = error_name(call::<()>(&c, "KillContainer", &("ok1", "init", 99)).unwrap_err());
    assert!(e.contains("unknown signal"), "{e}");
    let e = error_name(call::<()>(&c, "StartContainer", &("nosuch",)).unwrap_err());
    assert!(e.starts_with("io.berth.Berth1.Error.NotFound"), "{e}");
    // Unprivileged callers may read, not change.
    let denied = b
        .sh(&format!(
            "setpriv --reuid=nobody --regid=nogroup --clear-groups busctl call {DEST} {PATH} {MANAGER} DeleteContainer sb ok1 true"
        ))
        .unwrap();
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("root only"),
        "{denied:?}"
    );
    b.sh_ok(&format!("setpriv --reuid=nobody --regid=nogroup --clear-groups busctl call {DEST} {PATH} {MANAGER} ListContainers"));
    let () = call(&c, "DeleteContainer", &("ok1", true)).unwrap();
}

#[test]
fn containers_survive_berthd_restarts_and_crashes() {
    let Some(b) = berth_box::up_or_skip("containers_survive_berthd_restarts") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-restart", &["sleep", "300"]);
    let path: OwnedObjectPath =
        call(&c, "CreateContainer", &("r1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("r1",)).unwrap();
    let pid: u32 = prop(&c, &path, "Pid");
    b.sh_ok("systemctl restart berthd");
    wait_active(&b, "berthd");
    assert!(
        b.sh(&format!("kill -0 {pid}")).unwrap().status.success(),
        "container died with berthd"
    );
    assert_eq!(
        prop::<u32>(&c, &path, "Pid"),
        pid,
        "same pid after the restart"
    );
    assert_eq!(prop::<String>(&c, &path, "Status"), "running");
    // Crash (SIGKILL) berthd; the container exits while it is down; the next
    // berthd finds the exit the shim recorded.
    b.sh_ok("systemctl kill -s KILL berthd");
    b.sh_ok(&format!("kill -9 {pid}"));
    std::thread::sleep(Duration::from_millis(300));
    b.sh_ok("systemctl reset-failed berthd; systemctl start berthd");
    wait_active(&b, "berthd");
    let (code, signal): (i32, i32) = call(&c, "WaitContainer", &("r1",)).unwrap();
    assert_eq!((code, signal), (137, 9));
    let () = call(&c, "DeleteContainer", &("r1", false)).unwrap();
}

#[test]
fn pause_resume_and_exec_over_dbus() {
    let Some(b) = berth_box::up_or_skip("pause_resume_and_exec_over_dbus") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-exec", &["sleep", "300"]);
    let path: OwnedObjectPath =
        call(&c, "CreateContainer", &("p1", bundle.path(), no_options())).unwrap();
    let e = error_name(call::<()>(&c, "PauseContainer", &("p1",)).unwrap_err());
    assert!(
        e.starts_with("io.berth.Berth1.Error.FailedPrecondition"),
        "pause of created: {e}"
    );
    let () = call(&c, "StartContainer", &("p1",)).unwrap();
    let () = call(&c, "PauseContainer", &("p1",)).unwrap();
    assert_eq!(prop::<String>(&c, &path, "Status"), "paused");
    assert_eq!(
        b.sh_ok("systemctl show -P FreezerState berth-p1.scope")
            .trim(),
        "frozen"
    );
    let () = call(&c, "ResumeContainer", &("p1",)).unwrap();
    assert_eq!(prop::<String>(&c, &path, "Status"), "running");

    // Stats: real figures where the tree has them, "unavailable" (with a
    // reason) where it has no controller — never a made-up 0.
    let stats: HashMap<String, zbus::zvariant::OwnedValue> =
        call(&c, "GetContainerStats", &("p1",)).unwrap();
    assert!(
        u64::try_from(stats["cpu_usage_usec"].try_clone().unwrap()).is_ok(),
        "{stats:?}"
    );
    assert_eq!(
        u64::try_from(stats["processes"].try_clone().unwrap()).unwrap(),
        1
    );
    let controllers = b.sh_ok("cat /sys/fs/cgroup/cgroup.controllers");
    for (key, ctrl) in [("memory_current", "memory"), ("pids_current", "pids")] {
        let v = &stats[key];
        if controllers.contains(ctrl) {
            assert!(
                u64::try_from(v.try_clone().unwrap()).is_ok(),
                "{key}: {v:?}"
            );
        } else {
            eprintln!("SKIP {key}: the box's cgroup tree has no {ctrl} controller (reported as unavailable)");
            assert_eq!(
                String::try_from(v.try_clone().unwrap()).unwrap(),
                "unavailable"
            );
            assert!(stats.contains_key(&format!("{key}_reason")));
        }
    }
    assert_eq!(
        b.sh_ok("systemctl show -P FreezerState berth-p1.scope")
            .trim(),
        "running"
    );

    let process = json!({
        "args": ["sh", "-c", "echo exec-says-hi; exit 5"],
        "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"],
    })
    .to_string();
    let mut opts = no_options();
    opts.insert("id".into(), Value::from("e1"));
    let exec_id: String = call(&c, "ExecContainer", &("p1", process.as_str(), opts)).unwrap();
    assert_eq!(exec_id, "e1");
    let (code, signal): (i32, i32) = call(&c, "WaitExec", &("p1", "e1")).unwrap();
    assert_eq!((code, signal), (5, 0));
    let logs = b.sh_ok("journalctl --sync; journalctl -o cat CONTAINER_NAME=p1");
    assert!(logs.contains("exec-says-hi"), "{logs}");
    let e = error_name(call::<(i32, i32)>(&c, "WaitExec", &("p1", "nope")).unwrap_err());
    assert!(e.starts_with("io.berth.Berth1.Error.NotFound"), "{e}");
    // The container's object offers the same verbs, without the id.
    let obj = container_object(&c, &path);
    assert_eq!(obj.wait_exec("e1").unwrap(), (5, 0));
    let stats = obj.get_stats().unwrap();
    assert!(stats.contains_key("cpu_usage_usec"), "{stats:?}");
    let e = error_name(obj.attach_exec("../x").unwrap_err());
    assert!(
        e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
        "{e}"
    );
    let e = error_name(obj.resize_terminal("nope", 24, 80).unwrap_err());
    assert!(e.starts_with("io.berth.Berth1.Error."), "{e}");
    let e = error_name(
        call::<String>(&c, "ExecContainer", &("p1", "{not json", no_options())).unwrap_err(),
    );
    assert!(
        e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
        "{e}"
    );
    let () = call(&c, "DeleteContainer", &("p1", true)).unwrap();
}

/// Runs `busctl call … <method> <args>` on the Manager as `nobody`; its
/// error message when refused.
fn as_nobody(b: &SystemdBox, method_and_args: &str) -> Result<String, String> {
    let out = b
        .sh(&format!(
            "setpriv --reuid=nobody --regid=nogroup --clear-groups \
             busctl call {DEST} {PATH} {MANAGER} {method_and_args}"
        ))
        .unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// `nobody` is refused by `action`, by name.
fn refused_by(b: &SystemdBox, method_and_args: &str, action: &str) {
    let err = as_nobody(b, method_and_args).expect_err(method_and_args);
    assert!(
        err.contains(action) && err.contains("not authorized"),
        "{method_and_args}: {err}"
    );
}

/// Replaces the test's polkit rule: `nobody` is granted `actions`.
fn grant_nobody(b: &SystemdBox, actions: &[&str]) {
    let list = actions
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    b.sh_ok(&format!(
        "mkdir -p /etc/polkit-1/rules.d && cat > /etc/polkit-1/rules.d/50-berth-test.rules <<'RULES'
polkit.addRule(function(action, subject) {{
    if ([{list}].indexOf(action.id) >= 0 && subject.user == \"nobody\") {{
        return polkit.Result.YES;
    }}
}});
RULES
systemctl restart polkit"
    ));
}

#[test]
fn polkit_decides_for_non_root_callers() {
    let Some(b) = berth_box::up_or_skip("polkit_decides_for_non_root_callers") else {
        return;
    };
    let c = berthd(&b);
    // The policy as installed: attaching is manage's (it writes to the
    // container's stdin), read is logs only; no default can be met by a
    // check without interaction, so none promises a kept authentication.
    for (action, what) in [
        ("io.berth.berth1.manage", "attach"),
        ("io.berth.berth1.read", "logs"),
    ] {
        let info = b.sh_ok(&format!("pkaction --verbose --action-id {action}"));
        assert!(info.contains(what), "{info}");
        assert!(!info.contains("auth_admin_keep"), "{info}");
        assert!(info.contains("implicit active:   auth_admin\n"), "{info}");
        assert!(info.contains("implicit inactive: no"), "{info}");
        assert!(info.contains("implicit any:      no"), "{info}");
    }
    let read = b.sh_ok("pkaction --verbose --action-id io.berth.berth1.read");
    assert!(
        !read.contains("attach"),
        "read must not claim attaching: {read}"
    );

    let bundle = busybox_bundle("d-polkit", &["sleep", "300"]);
    let _: OwnedObjectPath =
        call(&c, "CreateContainer", &("k1", bundle.path(), no_options())).unwrap();
    const MANAGE: &str = "io.berth.berth1.manage";
    const READ: &str = "io.berth.berth1.read";
    let start = "StartContainer s k1";
    let attach = "AttachContainer s k1";
    let logs = "GetLogs sa{sv} k1 0";

    // No rule: the defaults (auth_admin, no) cannot be met without an agent.
    refused_by(&b, start, MANAGE);
    refused_by(&b, attach, MANAGE);
    refused_by(&b, logs, READ);

    // manage granted: changing and attaching, not reading logs.
    grant_nobody(&b, &[MANAGE]);
    as_nobody(&b, start).unwrap();
    let path: OwnedObjectPath = call(&c, "GetContainer", &("k1",)).unwrap();
    assert_eq!(prop::<String>(&c, &path, "Status"), "running");
    let fd = as_nobody(&b, attach).unwrap();
    assert!(fd.starts_with("h "), "{fd}");
    refused_by(&b, logs, READ);

    // read granted alone: logs, and nothing else.
    grant_nobody(&b, &[READ]);
    let fd = as_nobody(&b, logs).unwrap();
    assert!(fd.starts_with("h "), "{fd}");
    refused_by(&b, attach, MANAGE);
    refused_by(&b, "KillContainer ssi k1 all 9", MANAGE);
    let () = call(&c, "DeleteContainer", &("k1", true)).unwrap();
}

/// The `<interface name="…">` block of `iface` in introspection XML, without
/// comments and indentation, for comparison.
fn interface_block(xml: &str, iface: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{iface}\">"))
        .unwrap_or_else(|| panic!("{iface} not served"));
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    let mut out = String::new();
    let mut in_comment = false;
    for line in xml[start..end].lines().map(str::trim) {
        if line.starts_with("<!--") {
            in_comment = !line.ends_with("-->");
            continue;
        }
        if in_comment {
            in_comment = !line.ends_with("-->");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn introspection_matches_the_xml_in_dbus() {
    let Some(b) = berth_box::up_or_skip("introspection_matches_the_xml_in_dbus") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-xml", &["true"]);
    let path: OwnedObjectPath =
        call(&c, "CreateContainer", &("x1", bundle.path(), no_options())).unwrap();
    c.call_method(
        Some(DEST),
        PATH,
        Some("io.berth.Berth1.Volumes"),
        "CreateVolume",
        &("v1", no_options()),
    )
    .unwrap();
    for (obj, iface) in [
        (PATH.to_string(), "io.berth.Berth1.Manager"),
        (PATH.to_string(), "io.berth.Berth1.Images"),
        (PATH.to_string(), "io.berth.Berth1.Networks"),
        (format!("{PATH}/network/berth"), "io.berth.Berth1.Network"),
        (PATH.to_string(), "io.berth.Berth1.Volumes"),
        (format!("{PATH}/volume/v1"), "io.berth.Berth1.Volume"),
        (path.to_string(), "io.berth.Berth1.Container"),
    ] {
        let xml: String = c
            .call_method(
                Some(DEST),
                obj.as_str(),
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                &(),
            )
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        let served = interface_block(&xml, iface);
        let file = format!("{}/dbus/{iface}.xml", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("BERTH_WRITE_DBUS_XML").is_some() {
            let doc = format!(
                "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n{}</node>\n",
                xml[xml.find(&format!("  <interface name=\"{iface}\">")).unwrap()..]
                    .split_inclusive('\n')
                    .scan(false, |done, l| {
                        if *done {
                            return None;
                        }
                        *done = l.trim() == "</interface>";
                        Some(l.to_string())
                    })
                    .collect::<String>()
            );
            std::fs::write(&file, doc).unwrap();
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            interface_block(&committed, iface),
            served,
            "{file} differs from what berthd serves (regenerate with BERTH_WRITE_DBUS_XML=1)"
        );
    }
    let () = call(&c, "DeleteContainer", &("x1", true)).unwrap();
}
