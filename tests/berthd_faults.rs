//! Faults around berthd (a real systemd service in a box): a container's
//! shim killed, its init killed from outside (and OOM where the tree can
//! enforce memory), systemd refusing the scope's name, the LMDB map full,
//! berthd restarted under a running exec, callers that hang up mid-call.
//! Each ends with what berthd reports and nothing left behind.

mod common;
#[allow(unused_imports)]
use common::*;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_box::SystemdBox;
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, Value};

fn berthd(b: &SystemdBox) -> zbus::blocking::Connection {
    install_berthd(b, "");
    patient_bus(b)
}

/// Open fds of berthd's main process.
fn fd_count(b: &SystemdBox) -> usize {
    let pid = main_pid(b);
    b.sh_ok(&format!("ls /proc/{pid}/fd | wc -l"))
        .trim()
        .parse()
        .unwrap()
}

/// WaitContainer from its own thread, so a wrong answer cannot hang the test.
fn wait_container(b: &SystemdBox, id: &str, within: Duration) -> (i32, i32) {
    let c = patient_bus(b);
    let id2 = id.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call::<(i32, i32)>(&c, "WaitContainer", &(id2.as_str(),)));
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("WaitContainer {id} did not return within {within:?}"))
        .unwrap_or_else(|e| panic!("WaitContainer {id}: {}", error_name(e)))
}

/// The processes of a unit's cgroup (none when the unit is gone).
fn unit_pids(b: &SystemdBox, unit: &str) -> Vec<u32> {
    let out = b.sh_ok(&format!(
        "cg=$(systemctl show -P ControlGroup {unit}); \
         [ -n \"$cg\" ] && cat /sys/fs/cgroup$cg/cgroup.procs 2>/dev/null; true"
    ));
    out.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The processes of container `id`'s monitors' cgroup (its monitor and its
/// execs' shims: a sub-cgroup of berthd-monitors.scope).
fn monitor_pids(b: &SystemdBox, id: &str) -> Vec<u32> {
    b.sh_ok(&format!(
        "cat /sys/fs/cgroup/berth.slice/berthd-monitors.scope/{id}/cgroup.procs 2>/dev/null; true"
    ))
    .split_whitespace()
    .filter_map(|p| p.parse().ok())
    .collect()
}

/// Units, /run/berth dirs and rewritten bundles of container `id`, and
/// berth-shim/berth-monitor processes naming it: what must be gone after its
/// delete (or a failed create).
fn leftovers(b: &SystemdBox, id: &str) -> String {
    b.sh_ok(&format!(
        "systemctl list-units --all --no-legend --plain 'berth-{id}.scope' 'berth-shim-{id}.scope' 'berth-shim-{id}-*'; \
         [ -e /run/berth/{id} ] && echo /run/berth/{id}; \
         [ -e /var/lib/berth/bundles/{id} ] && echo /var/lib/berth/bundles/{id}; \
         [ -e /sys/fs/cgroup/berth.slice/berthd-monitors.scope/{id} ] && echo monitors/{id}; \
         for p in /proc/[0-9]*; do \
           c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue; \
           case \"$c\" in berth-monitor\\ *\\ {id}\\ *|*berth-shim\\ *--id\\ {id}\\ *) echo \"process ${{p#/proc/}}: $c\";; esac; \
         done; true"
    ))
}

fn ids(c: &zbus::blocking::Connection) -> Vec<String> {
    call::<List>(c, "ListContainers", &())
        .unwrap()
        .into_iter()
        .map(|l| l.0)
        .collect()
}

/// (a) A container's shim (berth-monitor in berthd-monitors.scope/<id>) SIGKILLed:
/// the container is recorded stopped, exit code -1, reason "shim died"
/// (docs/operations.md); WaitContainer returns; its processes, left without
/// a shim, go with its scope on delete. The same when the shim dies while
/// berthd is down (recovery finds it).
#[test]
fn shim_killed_is_shim_died() {
    let Some(b) = berth_box::up_or_skip("shim_killed_is_shim_died") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("f-shim", &["sleep", "300"]);
    for (id, berthd_down) in [("s1", false), ("s2", true)] {
        let _: OwnedObjectPath =
            call(&c, "CreateContainer", &(id, bundle.path(), no_options())).unwrap();
        let () = call(&c, "StartContainer", &(id,)).unwrap();
        let init: u32 = prop_of(&c, id, "Pid");
        let monitors = monitor_pids(&b, id);
        assert_eq!(
            monitors.len(),
            1,
            "berthd-monitors.scope/{id}: {monitors:?}"
        );
        let comm = b.sh_ok(&format!("cat /proc/{}/comm", monitors[0]));
        assert_eq!(comm.trim(), "berth-monitor");
        let t0 = Instant::now();
        let old = main_pid(&b);
        if berthd_down {
            b.sh_ok("systemctl kill -s KILL berthd");
        }
        b.sh_ok(&format!("kill -9 {}", monitors[0]));
        if berthd_down {
            // Restart=on-failure brings it back; recovery sees the shim gone.
            wait_back(&b, &c, old);
        }
        let exit = wait_container(&b, id, Duration::from_secs(20));
        eprintln!(
            "{id} (berthd {}): shim killed → WaitContainer {exit:?} after {:?}",
            if berthd_down { "down" } else { "up" },
            t0.elapsed()
        );
        assert_eq!(exit, (-1, 0));
        assert_eq!(prop_of::<String>(&c, id, "Status"), "stopped");
        assert_eq!(prop_of::<i32>(&c, id, "ExitCode"), -1);
        assert_eq!(prop_of::<String>(&c, id, "ExitReason"), "shim died");
        assert_eq!(prop_of::<u32>(&c, id, "Pid"), 0);
        assert!(prop_of::<u64>(&c, id, "ExitedAt") > 0);
        // The init outlived its shim (documented: it goes on delete).
        let alive = b.sh(&format!("kill -0 {init}")).unwrap().status.success();
        eprintln!("{id}: init {init} still alive after its shim died: {alive}");
        let () = call(&c, "DeleteContainer", &(id, false)).unwrap();
        assert!(
            !b.sh(&format!("kill -0 {init}")).unwrap().status.success(),
            "the init {init} outlived the delete"
        );
        let left = leftovers(&b, id);
        assert_eq!(left.trim(), "", "left after deleting {id}");
    }
    assert!(ids(&c).is_empty());
}

/// (b) The container's init SIGKILLed from outside: exit 137, signal 9. An
/// OOM kill where the tree has a memory controller; without one, a memory
/// limit is refused naming the controller (never silently unenforced).
#[test]
fn init_killed_and_oom() {
    let Some(b) = berth_box::up_or_skip("init_killed_and_oom") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("f-init", &["sleep", "300"]);
    let _: OwnedObjectPath =
        call(&c, "CreateContainer", &("k1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("k1",)).unwrap();
    let init: u32 = prop_of(&c, "k1", "Pid");
    b.sh_ok(&format!("kill -9 {init}"));
    assert_eq!(wait_container(&b, "k1", Duration::from_secs(20)), (137, 9));
    assert_eq!(prop_of::<String>(&c, "k1", "ExitReason"), "exited");
    let () = call(&c, "DeleteContainer", &("k1", false)).unwrap();
    assert_eq!(leftovers(&b, "k1").trim(), "");

    // A process the kernel kills as it would an OOM victim (SIGKILL of a
    // child, the init reporting it): the code the init returns.
    let mut opts = no_options();
    opts.insert(
        "args".into(),
        Value::from(vec!["sh", "-c", "sleep 300 & kill -9 $!; wait $!"]),
    );
    let _: OwnedObjectPath = call(&c, "CreateContainer", &("k2", bundle.path(), opts)).unwrap();
    let () = call(&c, "StartContainer", &("k2",)).unwrap();
    assert_eq!(wait_container(&b, "k2", Duration::from_secs(20)), (137, 0));
    let () = call(&c, "DeleteContainer", &("k2", false)).unwrap();

    let controllers = b.sh_ok("cat /sys/fs/cgroup/cgroup.controllers");
    let mut opts = no_options();
    opts.insert("memory".into(), Value::from(16u64 << 20));
    opts.insert(
        "args".into(),
        Value::from(vec![
            "sh",
            "-c",
            "x=a; while :; do x=$x$x$x$x; done", // grows until the limit
        ]),
    );
    let created = call::<OwnedObjectPath>(&c, "CreateContainer", &("oom", bundle.path(), opts));
    if controllers.split_whitespace().any(|c| c == "memory") {
        created.unwrap();
        assert_eq!(
            b.sh_ok("systemctl show -P MemoryMax berth-oom.scope")
                .trim(),
            (16u64 << 20).to_string()
        );
        let () = call(&c, "StartContainer", &("oom",)).unwrap();
        assert_eq!(wait_container(&b, "oom", Duration::from_secs(60)), (137, 9));
        // The monitor read the scope's memory.events oom_kill.
        assert_eq!(prop_of::<String>(&c, "oom", "ExitReason"), "oom-killed");
        let () = call(&c, "DeleteContainer", &("oom", false)).unwrap();
    } else {
        let e = error_name(created.unwrap_err());
        assert!(
            e.starts_with("io.berth.Berth1.Error.ControllerUnavailable") && e.contains("memory"),
            "{e}"
        );
        eprintln!(
            "SKIP OOM enforcement: the box's cgroup tree has no memory controller \
             ({}); CreateContainer with memory is refused: {e}",
            controllers.trim()
        );
    }
    assert_eq!(leftovers(&b, "oom").trim(), "");
    assert!(ids(&c).is_empty());
}

/// (c) systemd refuses the scope: a unit named berth-clash.scope is already
/// there (someone else's). CreateContainer("clash") gets a named error and
/// leaves nothing — and does not touch the other unit.
#[test]
fn unit_name_clash_is_named_and_leaves_nothing() {
    let Some(b) = berth_box::up_or_skip("unit_name_clash") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("f-clash", &["sleep", "300"]);
    // A foreign scope under the container's scope's name.
    b.sh_ok(
        "systemd-run --scope --unit=berth-clash.scope --quiet sleep 1000 >/dev/null 2>&1 </dev/null & \
         for i in $(seq 100); do systemctl is-active -q berth-clash.scope && break; sleep 0.05; done; \
         systemctl is-active berth-clash.scope",
    );
    let foreign = unit_pids(&b, "berth-clash.scope");
    assert_eq!(foreign.len(), 1, "{foreign:?}");
    let t0 = Instant::now();
    let e = error_name(
        call::<OwnedObjectPath>(
            &c,
            "CreateContainer",
            &("clash", bundle.path(), no_options()),
        )
        .unwrap_err(),
    );
    eprintln!("CreateContainer(clash) after {:?}: {e}", t0.elapsed());
    assert!(
        e.starts_with("io.berth.Berth1.Error.AlreadyExists") && e.contains("berth-clash.scope"),
        "{e}"
    );
    // Nothing of ours; the foreign scope untouched.
    assert!(ids(&c).is_empty());
    let left = b.sh_ok(
        "systemctl list-units --all --no-legend --plain 'berth-shim-clash*'; \
         [ -e /run/berth/clash ] && echo /run/berth/clash; \
         ls /var/lib/berth/bundles 2>/dev/null; \
         pgrep -a -x 'berth-monitor|berth-shim' | grep -v -- ' --exec-server$'; true",
    );
    assert_eq!(left.trim(), "", "left behind");
    // The failed shim's sub-cgroup goes too (berthd's undo removes it once
    // the shim, forked by the exec server, has exited).
    b.sh_ok(
        "for i in $(seq 100); do \
           [ -e /sys/fs/cgroup/berth.slice/berthd-monitors.scope/clash ] || exit 0; \
           sleep 0.05; done; exit 1",
    );
    assert_eq!(
        b.sh_ok("systemctl is-active berth-clash.scope").trim(),
        "active"
    );
    assert_eq!(unit_pids(&b, "berth-clash.scope"), foreign);
    // The monitors' scope (berthd-monitors.scope: every container's monitor
    // in a sub-cgroup of it) stopped by hand while no container runs: the
    // next create makes it again, with a new keeper.
    b.sh_ok("systemctl stop berthd-monitors.scope");
    assert!(!b
        .sh("test -d /sys/fs/cgroup/berth.slice/berthd-monitors.scope")
        .unwrap()
        .status
        .success());
    // With the name free again, the id works.
    b.sh_ok("systemctl stop berth-clash.scope");
    let _: OwnedObjectPath = call(
        &c,
        "CreateContainer",
        &("clash", bundle.path(), no_options()),
    )
    .unwrap();
    assert_eq!(
        b.sh_ok("systemctl is-active berthd-monitors.scope").trim(),
        "active"
    );
    let monitors = monitor_pids(&b, "clash");
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    // The keeper holds the scope (beside it for a moment, maybe, the exec
    // server's grace-period warmer of the failed create).
    let keeper = unit_pids(&b, "berthd-monitors.scope");
    let names: Vec<String> = keeper
        .iter()
        .map(|p| b.sh_ok(&format!("cat /proc/{p}/comm 2>/dev/null; true")))
        .collect();
    assert!(
        names.iter().any(|n| n.trim() == "berth-keeper"),
        "{keeper:?}: {names:?}"
    );
    let () = call(&c, "DeleteContainer", &("clash", true)).unwrap();
    assert_eq!(leftovers(&b, "clash").trim(), "");
}

/// (d) The LMDB map full (berthd with --map-size-mib 1, records made big by
/// labels): CreateContainer is refused by name with nothing half-made,
/// berthd keeps answering, what exists stays listed and works, and a delete
/// frees room for the next create.
#[test]
fn store_full_is_named_and_recoverable() {
    let Some(b) = berth_box::up_or_skip("store_full_is_named_and_recoverable") else {
        return;
    };
    install_berthd(
        &b,
        &format!(
            "mkdir -p /run/systemd/system/berthd.service.d && \
             printf '[Service]\\nExecStart=\\nExecStart={BERTHD} --map-size-mib 1\\n' \
               > /run/systemd/system/berthd.service.d/map.conf &&"
        ),
    );
    let c = patient_bus(&b);
    let pid = main_pid(&b);
    let bundle = busybox_bundle("f-full", &["sleep", "300"]);
    // ~100 KiB of labels per record: a 1 MiB map holds a handful.
    let labels: HashMap<String, String> = (0..25)
        .map(|i| (format!("k{i}"), "v".repeat(4000)))
        .collect();
    let create = |id: &str| {
        let mut opts = no_options();
        opts.insert("labels".into(), Value::from(labels.clone()));
        call::<OwnedObjectPath>(&c, "CreateContainer", &(id, bundle.path(), opts))
    };
    let mut made = Vec::new();
    let full = loop {
        let id = format!("f{}", made.len());
        match create(&id) {
            Ok(_) => {
                let () = call(&c, "StartContainer", &(id.as_str(),)).unwrap();
                made.push(id);
                assert!(made.len() < 40, "a 1 MiB map never filled");
            }
            Err(e) => break (id, error_name(e)),
        }
    };
    eprintln!("after {} containers: {}", made.len(), full.1);
    assert!(
        full.1.starts_with("io.berth.Berth1.Error.Internal") && full.1.contains("full"),
        "{}",
        full.1
    );
    assert!(!made.is_empty());
    // Nothing of the refused one.
    assert_eq!(leftovers(&b, &full.0).trim(), "", "half-made {}", full.0);
    // berthd: the same process, answering, listing what exists.
    assert_eq!(main_pid(&b), pid);
    assert_eq!(ids(&c), made);
    for id in &made {
        assert_eq!(prop_of::<String>(&c, id, "Status"), "running", "{id}");
    }
    // More refusals change nothing either.
    for _ in 0..3 {
        assert!(create(&full.0).is_err());
    }
    // A container exiting while the store is full: its exit is recorded.
    let last = made.last().unwrap().clone();
    let init: u32 = prop_of(&c, &last, "Pid");
    b.sh_ok(&format!("kill -9 {init}"));
    assert_eq!(wait_container(&b, &last, Duration::from_secs(20)), (137, 9));
    // Deletes work and make room.
    let () = call(&c, "DeleteContainer", &(last.as_str(), false)).unwrap();
    let () = call(&c, "DeleteContainer", &(made[0].as_str(), true)).unwrap();
    assert_eq!(leftovers(&b, &last).trim(), "");
    create(&full.0).unwrap_or_else(|e| panic!("after two deletes: {}", error_name(e)));
    // And all of it survives a restart of berthd with the full map.
    b.sh_ok("systemctl restart berthd");
    wait_back(&b, &c, pid);
    let listed = ids(&c);
    assert!(listed.contains(&full.0), "{listed:?}");
    for id in listed {
        let () = call(&c, "DeleteContainer", &(id.as_str(), true)).unwrap();
        assert_eq!(leftovers(&b, &id).trim(), "", "{id}");
    }
    assert!(ids(&c).is_empty());
}

/// (e) `systemctl restart berthd` while an exec runs: WaitExec after the
/// restart returns the exec's code; a WaitExec in flight across the
/// restart gets an error (the bus's), never a wrong code.
#[test]
fn restart_during_exec() {
    let Some(b) = berth_box::up_or_skip("restart_during_exec") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("f-exec", &["sleep", "300"]);
    let _: OwnedObjectPath =
        call(&c, "CreateContainer", &("x1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("x1",)).unwrap();
    let process = json!({"args": ["sh", "-c", "sleep 3; exit 4"]}).to_string();
    let mut opts = no_options();
    opts.insert("id".into(), Value::from("e1"));
    let e1: String = call(&c, "ExecContainer", &("x1", process.as_str(), opts)).unwrap();
    let t0 = Instant::now();
    let in_flight = {
        let c = patient_bus(&b);
        std::thread::spawn(move || call::<(i32, i32)>(&c, "WaitExec", &("x1", e1.as_str())))
    };
    std::thread::sleep(Duration::from_millis(200));
    let old = main_pid(&b);
    b.sh_ok("systemctl restart berthd");
    wait_back(&b, &c, old);
    let restarted = t0.elapsed();
    let before = in_flight.join().unwrap();
    eprintln!(
        "WaitExec in flight across the restart: {:?}",
        before.map_err(error_name)
    );
    let exit: (i32, i32) = call(&c, "WaitExec", &("x1", "e1")).unwrap();
    eprintln!(
        "berthd back after {restarted:?}; WaitExec → {exit:?} after {:?}",
        t0.elapsed()
    );
    assert!(
        restarted < Duration::from_secs(3),
        "restart took {restarted:?}"
    );
    assert_eq!(exit, (4, 0));
    assert!(t0.elapsed() >= Duration::from_millis(2500));
    // An exec that ends while berthd is down: its code too.
    let process = json!({"args": ["sh", "-c", "sleep 1; exit 7"]}).to_string();
    let mut opts = no_options();
    opts.insert("id".into(), Value::from("e2"));
    let _: String = call(&c, "ExecContainer", &("x1", process.as_str(), opts)).unwrap();
    let old = main_pid(&b);
    b.sh_ok("systemctl stop berthd; sleep 1.5; systemctl start berthd");
    wait_back(&b, &c, old);
    let exit: (i32, i32) = call(&c, "WaitExec", &("x1", "e2")).unwrap();
    assert_eq!(exit, (7, 0));
    assert_eq!(prop_of::<String>(&c, "x1", "Status"), "running");
    let () = call(&c, "DeleteContainer", &("x1", true)).unwrap();
    assert_eq!(leftovers(&b, "x1").trim(), "");
}

/// (f) Callers that hang up mid-call (WaitContainer on a running container,
/// CreateContainer, GetLogs with follow) — 100 of them: berthd goes on, same
/// process, its fds back where they were, and creates cut off by their
/// caller are whole or absent.
#[test]
fn callers_disconnecting_mid_call() {
    let Some(b) = berth_box::up_or_skip("callers_disconnecting_mid_call") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("f-hangup", &["sleep", "300"]);
    let _: OwnedObjectPath =
        call(&c, "CreateContainer", &("w1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("w1",)).unwrap();
    // Warm up: the first calls allocate for good.
    for _ in 0..3 {
        let _ = call::<List>(&c, "ListContainers", &());
    }
    let pid = main_pid(&b);
    let fds = fd_count(&b);
    let t0 = Instant::now();
    // busctl SIGKILLed while its call is pending (its connection closes).
    let m = format!("{DEST} {PATH} {MANAGER}");
    b.sh_ok(&format!(
        "for i in $(seq 60); do timeout -s KILL 0.3 busctl call {m} WaitContainer s w1 >/dev/null 2>&1 & done; \
         for i in $(seq 20); do timeout -s KILL 0.3 busctl call {m} GetLogs 'sa{{sv}}' w1 1 follow b true >/dev/null 2>&1 & done; \
         for i in $(seq 20); do timeout -s KILL 0.$((i % 5)) busctl call {m} CreateContainer 'ssa{{sv}}' h$i {bundle} 0 >/dev/null 2>&1 & done; \
         wait; true",
        bundle = bundle.path()
    ));
    // zbus: a connection dropped with its call pending.
    for i in 0..20 {
        let c2 = patient_bus(&b);
        let conn = c2.inner().clone();
        let msg = zbus::Message::method_call(PATH, "WaitContainer")
            .unwrap()
            .destination(DEST)
            .unwrap()
            .interface(MANAGER)
            .unwrap()
            .build(&("w1",))
            .unwrap();
        zbus::block_on(conn.send(&msg)).unwrap();
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(conn);
        drop(c2);
    }
    eprintln!("120 callers hung up mid-call in {:?}", t0.elapsed());
    // Creates whose caller left: whole (created, its scope active) or absent.
    std::thread::sleep(Duration::from_secs(2));
    let list: List = call(&c, "ListContainers", &()).unwrap();
    let mut whole = 0;
    for (id, status, _) in &list {
        if id == "w1" {
            assert_eq!(status, "running");
            continue;
        }
        assert_eq!(status, "created", "{id}");
        assert_eq!(
            b.sh_ok(&format!("systemctl is-active berth-{id}.scope || true"))
                .trim(),
            "active",
            "{id}"
        );
        whole += 1;
        let () = call(&c, "DeleteContainer", &(id.as_str(), true)).unwrap();
        assert_eq!(leftovers(&b, id).trim(), "", "{id}");
    }
    for i in 1..=20 {
        let id = format!("h{i}");
        if !list.iter().any(|l| l.0 == id) {
            assert_eq!(leftovers(&b, &id).trim(), "", "{id}");
        }
    }
    eprintln!("{whole} of 20 abandoned creates completed (and were deleted)");
    // berthd: the same process, answering, its fds back (journalctl pipes of
    // GetLogs close as their readers went away).
    assert_eq!(main_pid(&b), pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let now = fd_count(&b);
        if now <= fds || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("berthd fds: {fds} before, {after} after");
    assert_eq!(after, fds, "fds leaked");
    assert_eq!(prop_of::<String>(&c, "w1", "Status"), "running");
    let () = call(&c, "KillContainer", &("w1", "init", 9)).unwrap();
    assert_eq!(wait_container(&b, "w1", Duration::from_secs(20)), (137, 9));
    let () = call(&c, "DeleteContainer", &("w1", false)).unwrap();
    assert!(ids(&c).is_empty());
    let journal_pipes = b.sh_ok("pgrep -c journalctl || true");
    assert_eq!(journal_pipes.trim(), "0", "journalctl readers left");
}

/// A container's monitors' sub-cgroup still in use at its delete (here: a
/// process of the test's put there, standing for an exec's shim that has
/// not exited yet) stays while in use — also shared by a new container
/// under the same id — and is removed once its last process goes.
#[test]
fn busy_monitor_cgroup_goes_once_empty() {
    let Some(b) = berth_box::up_or_skip("busy_monitor_cgroup_goes_once_empty") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("f-busy", &["sleep", "300"]);
    let sub = "/sys/fs/cgroup/berth.slice/berthd-monitors.scope/busy";
    let exists = |b: &SystemdBox| b.sh(&format!("test -d {sub}")).unwrap().status.success();
    let run_busy = || {
        let _: OwnedObjectPath = call(
            &c,
            "CreateContainer",
            &("busy", bundle.path(), no_options()),
        )
        .unwrap();
        let () = call(&c, "StartContainer", &("busy",)).unwrap();
    };
    run_busy();
    // Our own sleeper, by pid, in the container's monitors' cgroup.
    let sleeper: u32 = b
        .sh_ok(&format!(
            "sleep 300 >/dev/null 2>&1 & echo $! > {sub}/cgroup.procs; echo $!"
        ))
        .trim()
        .parse()
        .unwrap();
    let () = call(&c, "DeleteContainer", &("busy", true)).unwrap();
    assert!(exists(&b), "{sub} removed while a process was in it");
    // A new container under the id meanwhile: its monitor joins the cgroup.
    run_busy();
    let pids = monitor_pids(&b, "busy");
    assert_eq!(
        pids.len(),
        2,
        "our sleeper and the new monitor in {sub}: {pids:?}"
    );
    let () = call(&c, "DeleteContainer", &("busy", true)).unwrap();
    assert!(exists(&b), "{sub} removed while a process was in it");
    b.sh_ok(&format!("kill {sleeper}"));
    let t0 = Instant::now();
    while exists(&b) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{sub} still there 10 s after its last process went"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{sub} removed {:?} after its last process went",
        t0.elapsed()
    );
    assert_eq!(leftovers(&b, "busy").trim(), "");
}
