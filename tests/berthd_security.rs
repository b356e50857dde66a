//! Security of berthd as a real service in a box: an unprivileged caller
//! changes nothing through any mutating method (bus policy + polkit), a
//! container and an exec see none of berthd's fds, and nothing under
//! /run/berth or /var/lib/berth is readable (or writable) by other users.
//! The runtime-level regressions (CVE-2024-21626, CVE-2019-5736, masks,
//! symlinks) are in runtime/tests/security.rs.

mod common;
#[allow(unused_imports)]
use common::*;

use std::time::{Duration, Instant};

use berth_box::SystemdBox;
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, Value};

const NOBODY: &str = "setpriv --reuid=nobody --regid=nogroup --clear-groups";

fn status(c: &zbus::blocking::Connection, id: &str) -> String {
    let list: Vec<(String, String, OwnedObjectPath)> = call(c, "ListContainers", &()).unwrap();
    list.into_iter()
        .find(|(i, _, _)| i == id)
        .map(|(_, s, _)| s)
        .unwrap_or_else(|| "absent".into())
}

/// The methods an interface declares in dbus/<iface>.xml.
fn methods_of(iface: &str) -> Vec<String> {
    let file = format!("{}/dbus/{iface}.xml", env!("CARGO_MANIFEST_DIR"));
    let xml = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    xml.split("<method name=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}

/// Methods anyone may call: they change nothing.
const READ_ONLY: &[&str] = &[
    "Wait",
    "WaitExec",
    "WaitContainer",
    "GetContainerStats",
    "GetStats",
    "ListContainers",
    "GetContainer",
    "Info",
];

#[test]
fn unprivileged_callers_change_nothing() {
    let Some(b) = berth_box::up_or_skip("unprivileged_callers_change_nothing") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle_writable("sec-d-authz", &["sleep", "300"]);
    let _: OwnedObjectPath = call(
        &c,
        "CreateContainer",
        &("made", bundle.path(), no_options()),
    )
    .unwrap();
    let _: OwnedObjectPath = call(
        &c,
        "CreateContainer",
        &("runs", bundle.path(), no_options()),
    )
    .unwrap();
    let () = call(&c, "StartContainer", &("runs",)).unwrap();
    let runs_path = "/io/berth/Berth1/container/runs";
    let made_path = "/io/berth/Berth1/container/made";
    let process =
        json!({"args": ["touch", "/tmp/pwned"], "cwd": "/", "user": {"uid": 0, "gid": 0}})
            .to_string()
            .replace('"', "\\\"");
    let bundle_arg = bundle.path();
    // Every mutating method, with arguments that would succeed for root.
    let calls: Vec<(&str, &str, String)> = vec![
        (
            MANAGER,
            "CreateContainer",
            format!("ssa{{sv}} evil {bundle_arg} 0"),
        ),
        (MANAGER, "StartContainer", "s made".into()),
        (MANAGER, "KillContainer", "ssi runs all 9".into()),
        (MANAGER, "PauseContainer", "s runs".into()),
        (
            MANAGER,
            "UpdateContainer",
            "sa{sv} runs 1 pids_limit x 5".into(),
        ),
        (MANAGER, "ResumeContainer", "s runs".into()),
        (
            MANAGER,
            "ExecContainer",
            format!("ssa{{sv}} runs \"{process}\" 0"),
        ),
        (
            MANAGER,
            "ExecContainerAndWait",
            format!("ssa{{sv}} runs \"{process}\" 0"),
        ),
        (MANAGER, "DeleteContainer", "sb runs true".into()),
        (MANAGER, "AttachContainer", "s runs".into()),
        (MANAGER, "AttachContainerSplit", "s runs".into()),
        (MANAGER, "AttachExec", "ss runs e1".into()),
        (MANAGER, "KillExec", "ssi runs e1 9".into()),
        (MANAGER, "ResizeTerminal", "ssqq runs \"\" 10 10".into()),
        (MANAGER, "GetLogs", "sa{sv} runs 0".into()),
        (MANAGER, "ReopenContainerLog", "s runs".into()),
        (MANAGER, "RunHealthcheck", "s runs".into()),
        (MANAGER, "TopContainer", "s runs".into()),
        (MANAGER, "CopyFromContainer", "ss runs /etc".into()),
        (MANAGER, "ExportContainer", "s runs".into()),
        (MANAGER, "CommitContainer", "ss runs local/evil:1".into()),
        (CONTAINER, "Start", String::new()),
        (CONTAINER, "Kill", "si all 9".into()),
        (CONTAINER, "Pause", String::new()),
        (CONTAINER, "Update", "a{sv} 1 pids_limit x 5".into()),
        (CONTAINER, "Resume", String::new()),
        (CONTAINER, "Exec", format!("sa{{sv}} \"{process}\" 0")),
        (
            CONTAINER,
            "ExecAndWait",
            format!("sa{{sv}} \"{process}\" 0"),
        ),
        (CONTAINER, "Delete", "b true".into()),
        (CONTAINER, "Attach", String::new()),
        (CONTAINER, "AttachExec", "s e1".into()),
        (CONTAINER, "KillExec", "si e1 9".into()),
        (CONTAINER, "ResizeTerminal", "sqq \"\" 10 10".into()),
        (CONTAINER, "Logs", "a{sv} 0".into()),
        (CONTAINER, "RunHealthcheck", String::new()),
        (CONTAINER, "Top", String::new()),
        (CONTAINER, "CopyFrom", "s /etc".into()),
        (CONTAINER, "Commit", "s local/evil:1".into()),
        (CONTAINER, "Export", String::new()),
    ];
    // The table covers every method the XML declares, but the read-only ones.
    for iface in [MANAGER, CONTAINER] {
        for m in methods_of(iface) {
            if READ_ONLY.contains(&m.as_str()) {
                continue;
            }
            // busctl cannot send an fd (`h`): CopyTo's first step is the
            // same require_root as CopyFrom's, probed here.
            if ["CopyToContainer", "CopyTo"].contains(&m.as_str()) {
                continue;
            }
            assert!(
                calls.iter().any(|(i, name, _)| *i == iface && *name == m),
                "{iface}.{m} is not probed as an unprivileged caller: add it"
            );
        }
    }
    for (iface, method, args) in &calls {
        let path = match (*iface, *method) {
            (CONTAINER, "Start") => made_path,
            (CONTAINER, _) => runs_path,
            _ => PATH,
        };
        let out = b
            .sh(&format!(
                "{NOBODY} busctl call {DEST} {path} {iface} {method} {args}"
            ))
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "nobody called {iface}.{method}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            err.contains("root only")
                || err.contains("not authorized")
                || err.contains("Access denied")
                || err.contains("PermissionDenied"),
            "{iface}.{method} as nobody: {err}"
        );
    }
    // Setting a property is no way around it either.
    let out = b
        .sh(&format!(
            "{NOBODY} busctl set-property {DEST} {runs_path} {CONTAINER} Status s stopped"
        ))
        .unwrap();
    assert!(!out.status.success());
    // And nothing changed.
    assert_eq!(status(&c, "made"), "created");
    assert_eq!(status(&c, "runs"), "running");
    assert_eq!(status(&c, "evil"), "absent");
    // The exec would have touched /tmp/pwned in the (shared) rootfs.
    assert!(
        !bundle.dir.join("rootfs/tmp/pwned").exists(),
        "an unprivileged exec ran"
    );
    // Read-only calls stay open to everyone.
    b.sh_ok(&format!(
        "{NOBODY} busctl call {DEST} {PATH} {MANAGER} WaitContainer s made >/dev/null & \
         {NOBODY} busctl call {DEST} {PATH} {MANAGER} GetContainer s runs && \
         {NOBODY} busctl call {DEST} {PATH} {MANAGER} Info >/dev/null; kill %1 2>/dev/null; true"
    ));
    let () = call(&c, "DeleteContainer", &("runs", true)).unwrap();
    let () = call(&c, "DeleteContainer", &("made", true)).unwrap();
}

/// The output lines of a container (or its execs) that start with `prefix`.
fn journal_lines(b: &SystemdBox, id: &str, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = b.sh_ok(&format!(
            "journalctl --sync; journalctl -o cat CONTAINER_NAME={id}"
        ));
        let lines: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_only_stdio(what: &str, lines: &[String]) {
    assert!(!lines.is_empty(), "{what}: no fd list in the journal");
    for line in lines {
        let fds: Vec<u32> = line
            .split_whitespace()
            .map(|f| f.parse().unwrap_or_else(|_| panic!("{what}: {line}")))
            .collect();
        // 0-2, and the directory `echo *` reads /proc/self/fd through.
        assert!(fds.iter().all(|f| *f <= 3), "{what} sees fds {fds:?}");
    }
}

#[test]
fn containers_and_execs_see_no_berthd_fds() {
    let Some(b) = berth_box::up_or_skip("containers_and_execs_see_no_berthd_fds") else {
        return;
    };
    let c = berthd(&b);
    let script = "cd /proc/self/fd && echo fds: *; readlink /proc/self/exe | sed 's/^/exe: /'; \
                  for f in 0 1 2; do echo link: $(readlink /proc/self/fd/$f); done; sleep 300";
    let bundle = busybox_bundle_writable("sec-d-fds", &["sh", "-c", script]);
    let _ = std::os::unix::fs::symlink("busybox", bundle.dir.join("rootfs/bin/sed"));
    let _: OwnedObjectPath = call(
        &c,
        "CreateContainer",
        &("fds1", bundle.path(), no_options()),
    )
    .unwrap();
    let () = call(&c, "StartContainer", &("fds1",)).unwrap();
    assert_only_stdio("the container", &journal_lines(&b, "fds1", "fds: "));
    let exe = journal_lines(&b, "fds1", "exe: ");
    assert_eq!(exe, ["/bin/busybox"], "the container's /proc/self/exe");
    // Its stdio: /dev/null and the shim's pipes, no host file.
    for l in journal_lines(&b, "fds1", "link: ") {
        assert!(l == "/dev/null" || l.starts_with("pipe:["), "stdio {l}");
    }
    for n in 0..3 {
        let process = json!({
            "args": ["sh", "-c", "cd /proc/self/fd && echo execfds: *"],
            "cwd": "/", "user": {"uid": 0, "gid": 0},
        })
        .to_string();
        let mut opts = no_options();
        opts.insert("id".into(), Value::from(format!("x{n}")));
        let exec_id: String = call(&c, "ExecContainer", &("fds1", process.as_str(), opts)).unwrap();
        let (code, _): (i32, i32) = call(&c, "WaitExec", &("fds1", exec_id.as_str())).unwrap();
        assert_eq!(code, 0);
    }
    let lines = journal_lines(&b, "fds1", "execfds: ");
    assert_only_stdio("an exec", &lines);
    let () = call(&c, "DeleteContainer", &("fds1", true)).unwrap();
}

#[test]
fn state_and_metadata_are_root_only() {
    let Some(b) = berth_box::up_or_skip("state_and_metadata_are_root_only") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle_writable("sec-d-modes", &["sleep", "300"]);
    // A rewritten bundle (an option that changes the spec) and an exec whose
    // process object carries a secret in its environment.
    let mut opts = no_options();
    opts.insert("env".into(), Value::from(vec!["TOKEN=container-secret"]));
    opts.insert("stdin".into(), Value::from(true));
    let _: OwnedObjectPath = call(&c, "CreateContainer", &("m1", bundle.path(), opts)).unwrap();
    let () = call(&c, "StartContainer", &("m1",)).unwrap();
    let process = json!({"args": ["sleep", "300"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["TOKEN=exec-secret"]})
        .to_string();
    let mut opts = no_options();
    opts.insert("id".into(), Value::from("e1"));
    opts.insert("attach".into(), Value::from(true));
    let _: String = call(&c, "ExecContainer", &("m1", process.as_str(), opts)).unwrap();
    // Every path under both trees, enumerated as root, then probed as nobody:
    // a directory must not be listable, nothing readable or writable.
    let paths = b.sh_ok("find /run/berth /var/lib/berth");
    assert!(paths.contains("/var/lib/berth/data.mdb"), "{paths}");
    assert!(paths.contains("exec-e1.process.json"), "{paths}");
    assert!(
        paths.contains("/var/lib/berth/bundles/m1/config.json"),
        "{paths}"
    );
    let mut open_to_others = Vec::new();
    for p in paths.lines() {
        let out = b
            .sh(&format!(
                "{NOBODY} sh -c 'if [ -d \"$0\" ]; then test -r \"$0\" || test -w \"$0\"; \
                 else test -r \"$0\" || test -w \"$0\"; fi' '{p}'"
            ))
            .unwrap();
        if out.status.success() {
            open_to_others.push(p.to_string());
        }
    }
    let modes = b.sh_ok("stat -c '%a %n' /run/berth /var/lib/berth /var/lib/berth/*.mdb");
    assert!(
        open_to_others.is_empty(),
        "readable or writable by others: {open_to_others:?}\n{modes}"
    );
    // The secrets are in those files, and nobody reads them.
    let grep = b
        .sh(&format!(
            "{NOBODY} grep -rl -e exec-secret -e container-secret /run/berth /var/lib/berth"
        ))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&grep.stdout).trim().is_empty(),
        "{grep:?}"
    );
    let () = call(&c, "DeleteContainer", &("m1", true)).unwrap();
}
