//! `linux.resources.devices` with the cgroupfs driver on cgroup v2 (the box's
//! own unified tree): enforced by a BPF device program on the container's
//! cgroup, with the default devices still reachable, and gone with the cgroup.

mod common;

use common::{busybox_bundle, text, Bundle, Rt};
use serde_json::json;

/// Opens (write-only: /dev/kmsg needs no capability for that, and nothing is
/// written) and mknods a few devices, printing one verdict per line.
const SCRIPT: &str = r#"
try() { if (exec 3>"$2") 2>/dev/null; then echo "$1=ok"; else echo "$1=denied"; fi; }
try null /dev/null
try kmsg /dev/kmsg
mknod /dev/null2 c 1 3 && try mknod-null /dev/null2
mknod /dev/kmsg2 c 1 11 && try mknod-kmsg /dev/kmsg2
(exec 3>/dev/kmsg) 2>&1 | grep -o 'Operation not permitted' | sed 's/^/kmsg-error=/'
true"#;

/// A bundle running SCRIPT, with /dev/kmsg made by the runtime and CAP_MKNOD.
fn bundle(name: &str) -> Bundle {
    let mut b = busybox_bundle(name, &["sh", "-c", SCRIPT]);
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 438}]);
    let caps = &mut b.config["process"]["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        caps[set].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
    }
    b
}

fn verdicts(rt: &Rt, id: &str, b: &Bundle) -> String {
    let out = rt.run(&["run", id, "--bundle", b.path()]);
    assert!(out.status.success(), "{id}: {}", text(&out));
    let cgroup = format!("/sys/fs/cgroup/berth/{id}");
    rt.b.sh_ok(&format!("test ! -e {cgroup}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn device_rules_on_cgroup_v2_with_cgroupfs() {
    let Some(b) = berth_box::up_or_skip("device_rules_on_cgroup_v2_with_cgroupfs") else {
        return;
    };
    if b.sh("test -e /sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|o| !o.status.success())
    {
        eprintln!("SKIP device_rules_on_cgroup_v2_with_cgroupfs: the box has no cgroup2 root");
        return;
    }
    let rt = Rt::new(&b, false);

    let mut denied = bundle("devices-deny");
    denied.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ]);
    denied.save();
    let out = verdicts(&rt, "dev-deny", &denied);
    for want in [
        "null=ok",
        "kmsg=denied",
        "mknod-null=ok",
        "mknod-kmsg=denied",
        "kmsg-error=Operation not permitted",
    ] {
        assert!(out.lines().any(|l| l == want), "want {want}:\n{out}");
    }

    // No rules (the default config has an empty list): no program, and every
    // device the container has is reachable.
    let open = bundle("devices-none");
    open.save();
    let out = verdicts(&rt, "dev-none", &open);
    for want in ["null=ok", "kmsg=ok", "mknod-kmsg=ok"] {
        assert!(out.lines().any(|l| l == want), "want {want}:\n{out}");
    }
}
