//! Spare exec shims (berth-shim's spares.rs): after an exec and a quiet
//! moment, the exec server forks the container's next exec's shim ahead,
//! in the container's monitors' cgroup; the next exec is started by that
//! process. A spare holds nothing but its socket and the init's pidfd, and
//! goes with its container's init, with its server, with berthd, and
//! leaves nothing behind; one killed costs nothing but itself; there are
//! never more than four.

mod common;
#[allow(unused_imports)]
use common::*;

use serde_json::json;

const MONITORS: &str = "/sys/fs/cgroup/berth.slice/berthd-monitors.scope";

fn process(args: &[&str]) -> String {
    json!({"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]})
        .to_string()
}

/// Exec `exec_id` of `true` into `id`, to its end.
fn exec_true(c: &zbus::blocking::Connection, id: &str, exec_id: &str) {
    let mut opts = no_options();
    opts.insert("id".into(), exec_id.into());
    let (got, code, signal): (String, i32, i32) = call(
        c,
        "ExecContainerAndWait",
        &(id, process(&["true"]).as_str(), opts),
    )
    .unwrap();
    assert_eq!((got.as_str(), code, signal), (exec_id, 0, 0));
}

/// The spares in container `id`'s monitors' cgroup: its processes that are
/// the exec server's forks (its command line), not yet any exec's shim.
fn spares_of(b: &berth_box::SystemdBox, id: &str) -> Vec<u32> {
    b.sh_ok(&format!(
        "for p in $(cat {MONITORS}/{id}/cgroup.procs 2>/dev/null); do \
           tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q -- '--exec-server' && echo $p; \
         done; true"
    ))
    .split_whitespace()
    .filter_map(|p| p.parse().ok())
    .collect()
}

/// Waits up to 5 s for `id` to have a spare other than `not`.
fn spare_of(b: &berth_box::SystemdBox, id: &str, not: Option<u32>) -> u32 {
    for _ in 0..100 {
        if let Some(p) = spares_of(b, id).into_iter().find(|p| Some(*p) != not) {
            return p;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no spare shim for {id} in 5 s");
}

fn shim_pid_of(b: &berth_box::SystemdBox, id: &str, exec_id: &str) -> u32 {
    b.sh_ok(&format!(
        "sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' /run/berth/{id}/exec-{exec_id}.shim.json"
    ))
    .trim()
    .parse()
    .unwrap()
}

fn gone_within_5s(b: &berth_box::SystemdBox, pid: u32) -> bool {
    b.sh(&format!(
        "for i in $(seq 100); do [ -e /proc/{pid}/cmdline ] || exit 0; sleep 0.05; done; exit 1"
    ))
    .is_ok_and(|out| out.status.success())
}

#[test]
fn the_next_exec_is_started_by_a_spare() {
    let Some(b) = berth_box::up_or_skip("the_next_exec_is_started_by_a_spare") else {
        return;
    };
    install_berthd(&b, "");
    let c = patient_bus(&b);
    let bundle = busybox_bundle("d-spares", &["sleep", "300"]);
    for id in ["x1", "x2", "x3", "x4", "x5"] {
        let _: zbus::zvariant::OwnedObjectPath =
            call(&c, "CreateContainer", &(id, bundle.path(), no_options())).unwrap();
        let () = call(&c, "StartContainer", &(id,)).unwrap();
    }
    assert!(spares_of(&b, "x1").is_empty(), "a spare before any exec");

    exec_true(&c, "x1", "a");
    let spare = spare_of(&b, "x1", None);
    // Its socket and the init's pidfd, nothing else of the server's (its
    // socket, its network namespaces, its warmer's pipe) or of a request.
    let fds = b.sh_ok(&format!(
        "cd /proc/{spare}/fd && for f in *; do echo $f $(readlink $f); done"
    ));
    let fds: Vec<&str> = fds.lines().collect();
    assert_eq!(fds.len(), 5, "{fds:?}");
    assert!(fds[3].starts_with("3 socket:"), "{fds:?}");
    assert!(fds[4].starts_with("4 anon_inode:[pidfd]"), "{fds:?}");
    // Its memory is the server's, shared: only the few pages it wrote are
    // its own (anonymous ones: a file's dirty page cache counts as private
    // to the one process that maps the page, the binary just built).
    let private: u64 = b
        .sh_ok(&format!(
            "awk '/^[0-9a-f]+-/ {{anon = ($5 == 0)}} /^Private_Dirty/ && anon {{kb += $2}} \
             END {{print kb + 0}}' /proc/{spare}/smaps"
        ))
        .trim()
        .parse()
        .unwrap();
    assert!(
        private < 1024,
        "the spare's own anonymous pages: {private} KiB"
    );

    // The next exec's shim is that process; a new spare follows it.
    exec_true(&c, "x1", "b");
    assert_eq!(shim_pid_of(&b, "x1", "b"), spare, "exec b's shim");
    let next = spare_of(&b, "x1", Some(spare));

    // A spare killed (-9): the next exec's shim is forked as before.
    b.sh_ok(&format!("kill -9 {next}"));
    assert!(gone_within_5s(&b, next), "the killed spare");
    exec_true(&c, "x1", "c");
    assert_ne!(shim_pid_of(&b, "x1", "c"), next, "exec c's shim");
    let next = spare_of(&b, "x1", Some(next));

    // Never more than four, however many containers are exec'd into.
    for id in ["x2", "x3", "x4", "x5"] {
        exec_true(&c, id, "a");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let all: usize = ["x1", "x2", "x3", "x4", "x5"]
        .iter()
        .map(|id| spares_of(&b, id).len())
        .sum();
    assert_eq!(all, 4, "spares across five containers");
    // x1's is among them still: a full set waits for its own containers.
    assert_eq!(spares_of(&b, "x1"), vec![next]);

    // The container's init gone, its spare goes; the delete leaves its
    // monitors' cgroup to nobody.
    let () = call(&c, "KillContainer", &("x1", "init", 9)).unwrap();
    assert!(gone_within_5s(&b, next), "x1's spare outlived its init");
    let () = call(&c, "DeleteContainer", &("x1", true)).unwrap();
    b.sh_ok(&format!(
        "for i in $(seq 100); do [ -e {MONITORS}/x1 ] || exit 0; sleep 0.05; done; \
         cat {MONITORS}/x1/cgroup.procs; exit 1"
    ));

    // The exec server killed (-9): its spares go with it; the next exec
    // starts a new server, which makes its own.
    let spares: Vec<u32> = ["x2", "x3", "x4", "x5"]
        .iter()
        .flat_map(|id| spares_of(&b, id))
        .collect();
    assert_eq!(spares.len(), 3, "x2's, x3's and x4's spares");
    let server = b.sh_ok(&format!(
        "awk '/^PPid/ {{print $2}}' /proc/{}/status",
        spares[0]
    ));
    b.sh_ok(&format!("kill -9 {}", server.trim()));
    for p in spares {
        assert!(gone_within_5s(&b, p), "spare {p} outlived its server");
    }
    exec_true(&c, "x2", "after-server");
    let x2s = spare_of(&b, "x2", None);

    // berthd gone, its server and every spare go; a new berthd's execs run.
    b.sh_ok("systemctl stop berthd");
    assert!(gone_within_5s(&b, x2s), "x2's spare outlived berthd");
    b.sh_ok("systemctl start berthd");
    let c = bus(&b).unwrap();
    exec_true(&c, "x2", "after");
    for id in ["x2", "x3", "x4", "x5"] {
        let () = call(&c, "DeleteContainer", &(id, true)).unwrap();
    }
}
