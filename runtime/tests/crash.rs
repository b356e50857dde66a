//! A `start` killed half-way: before the process is let go (while a
//! startContainer hook runs) the container stays created and a second
//! `start` runs it — the init waits for the next reader of its FIFO instead
//! of failing on the dead one's EPIPE. berthd relies on it when it is
//! killed inside StartContainer (tests/berthd_crash.rs).

mod common;

use common::{busybox_bundle, shell_join, text, Rt};
use serde_json::json;

#[test]
fn a_start_killed_before_the_exec_can_be_repeated() {
    let Some(b) = berth_box::up_or_skip("a_start_killed_before_the_exec") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let mut bundle = busybox_bundle("crash-start", &["sh", "-c", "echo ran; sleep 300"]);
    bundle.config["hooks"] =
        json!({"startContainer": [{"path": "/bin/sleep", "args": ["sleep", "1"]}]});
    bundle.save();
    let out = rt.create("k1", &bundle, "/tmp/k1.log");
    assert!(out.status.success(), "{}", text(&out));
    // The starter dies while the hook holds the init back; the hook then
    // ends and the init finds no reader.
    let start = shell_join(&rt.argv(&["start", "k1"]));
    b.sh_ok(&format!(
        "{start} & s=$!; sleep 0.3; kill -9 $s; wait $s; sleep 1.2; true"
    ));
    assert_eq!(rt.status("k1"), "created", "{}", b.sh_ok("cat /tmp/k1.log"));
    rt.ok(&["start", "k1"]);
    assert_eq!(rt.status("k1"), "running");
    assert!(b.sh_ok("cat /tmp/k1.log").contains("ran"));
    rt.ok(&["delete", "-f", "k1"]);
}
