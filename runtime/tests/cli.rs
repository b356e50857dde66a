//! The command line as tools drive it: spec, features, list, update, the
//! --log file, option order, and signals forwarded by a foreground `run`.

mod common;

use common::{busybox_bundle, shell_join, text, Rt};
use serde_json::Value;

#[test]
fn spec_and_features_documents() {
    let dir = berth_box::target_dir()
        .unwrap()
        .join(format!("berth-tests/spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(common::RUNTIME)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["process"]["terminal"], true);
    assert_eq!(spec["hostname"], "berth");
    // Like runc: refuses to overwrite.
    let again = run(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let rootless = run(&["spec", "--rootless", "--bundle", dir.to_str().unwrap()]);
    assert!(rootless.status.success());
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let nss = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(
        nss.iter().any(|n| n["type"] == "user"),
        "rootless spec has a user namespace"
    );
    assert!(spec["linux"]["uidMappings"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    std::fs::remove_dir_all(&dir).unwrap();

    let features: Value = serde_json::from_slice(&run(&["features"]).stdout).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(features["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    assert!(features["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == "createRuntime"));
}

#[test]
fn list_update_and_the_log_file() {
    let Some(b) = berth_box::up_or_skip("list_update_and_the_log_file") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("list", &["sleep", "300"]);
    assert!(rt.create("l1", &bundle, "/dev/null").status.success());
    rt.ok(&["start", "l1"]);
    // Options after the id, as runc accepts them.
    assert!(rt.ok(&["ps", "l1", "--format", "json"]).starts_with('['));
    let list: Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], "l1");
    assert_eq!(list[0]["status"], "running");
    assert_eq!(rt.ok(&["list", "-q"]).trim(), "l1");
    assert!(rt.ok(&["list"]).lines().nth(1).unwrap().contains("running"));
    // update: unlimited pids needs no controller and reaches the unit.
    rt.ok(&["update", "l1", "--pids-limit", "-1"]);
    assert_eq!(
        b.sh_ok("systemctl show -P TasksMax berth-l1.scope").trim(),
        "infinity"
    );
    // A limit whose controller this box lacks is refused by name.
    let mem = rt.run(&["update", "l1", "--memory", "100000000"]);
    let err = String::from_utf8_lossy(&mem.stderr);
    if b.sh_ok("cat /sys/fs/cgroup/cgroup.controllers")
        .contains("memory")
    {
        assert!(mem.status.success(), "{err}");
    } else {
        eprintln!("SKIP memory.max enforcement: the box's cgroup tree has no memory controller");
        assert!(err.contains("memory cgroup controller"), "{err}");
    }
    // Errors also go to --log, in JSON with --log-format json.
    let log = format!("{}/log.json", rt.root);
    let bad = rt.run(&["--log", &log, "--log-format", "json", "state", "nosuch"]);
    assert!(!bad.status.success());
    let line: Value = serde_json::from_str(b.sh_ok(&format!("cat {log}")).trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("nosuch"));
    rt.ok(&["delete", "--force", "l1"]);
}

#[test]
fn a_foreground_run_forwards_signals() {
    let Some(b) = berth_box::up_or_skip("a_foreground_run_forwards_signals") else {
        return;
    };
    let rt = Rt::new(&b, true);
    // The container's init traps TERM (pid 1 of a pid namespace only gets
    // signals it handles) and exits 42.
    let bundle = busybox_bundle(
        "fwd",
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let run = shell_join(&rt.argv(&["run", "--bundle", bundle.path(), "f1"]));
    let out = b
        .sh(&format!(
            "{run} >/tmp/f1.out 2>&1 </dev/null & pid=$!; \
             until grep -q ready /tmp/f1.out; do sleep 0.05; done; \
             kill -TERM $pid; wait $pid; echo $?"
        ))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        text(&out)
    );
    common::assert_nothing_left(&rt, "f1");
}
