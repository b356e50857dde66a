//! berthd when the system bus goes away: dbus-daemon restarted, or killed
//! (and socket-activated again). berthd exits non-zero on losing the bus,
//! systemd restarts it (Restart=on-failure), and the new berthd owns the
//! name again with every container re-attached — same pid, still running —
//! and berth-init's own bus connections (StartTransientUnit, FreezeUnit)
//! work on the new bus.

mod common;
#[allow(unused_imports)]
use common::*;

use std::time::{Duration, Instant};

use berth_box::bundle::Bundle;
use berth_box::SystemdBox;
use zbus::zvariant::OwnedObjectPath;

/// A new connection to the (new) bus on which berthd answers ListContainers,
/// within 30 s.
fn berthd_back(b: &SystemdBox) -> (zbus::blocking::Connection, List, Duration) {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < Duration::from_secs(30) {
        match bus(b).and_then(|c| call::<List>(&c, "ListContainers", &()).map(|l| (c, l))) {
            Ok((c, list)) => return (c, list, t.elapsed()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "berthd did not answer within 30 s (last: {last}):\n{}",
        b.sh_ok("systemctl status --no-pager berthd dbus || true")
    );
}

/// Container `id` survives `outage` (a shell command that takes the bus
/// away) and berthd serves it again, and new containers work.
fn survives(b: &SystemdBox, c: zbus::blocking::Connection, outage: &str, id: &str, other: &Bundle) {
    let path: OwnedObjectPath = call(&c, "GetContainer", &(id,)).unwrap();
    let pid: u32 = prop(&c, &path, "Pid");
    let berthd_before = main_pid(b);
    let restarts_before = b.sh_ok("systemctl show -P NRestarts berthd");
    drop(c);

    b.sh_ok(outage);
    let (c, list, took) = berthd_back(b);
    eprintln!("`{outage}`: berthd answered again after {took:?}");
    // berthd noticed, said so, exited non-zero, and systemd restarted it.
    assert_ne!(main_pid(b), berthd_before, "the same berthd answers");
    let restarts = b.sh_ok("systemctl show -P NRestarts berthd");
    assert!(
        restarts.trim().parse::<u32>().unwrap() > restarts_before.trim().parse::<u32>().unwrap(),
        "NRestarts {restarts_before} → {restarts}"
    );
    let journal = b.sh_ok("journalctl --sync; journalctl -u berthd -o cat --no-pager");
    assert!(
        journal.contains("lost the system bus connection"),
        "{journal}"
    );

    // The container: still there, still running, the same process.
    assert!(
        list.iter().any(|(i, s, _)| i == id && s == "running"),
        "{list:?}"
    );
    assert_eq!(prop::<u32>(&c, &path, "Pid"), pid, "same pid");
    assert_eq!(prop::<String>(&c, &path, "Status"), "running");
    assert!(b.sh(&format!("kill -0 {pid}")).unwrap().status.success());

    // berth-init's own bus connections work on the new bus: a new container
    // (StartTransientUnit), pause/resume (FreezeUnit/ThawUnit), delete.
    let new_path: OwnedObjectPath = call(
        &c,
        "CreateContainer",
        &("fresh", other.path(), no_options()),
    )
    .unwrap();
    let () = call(&c, "StartContainer", &("fresh",)).unwrap();
    assert_eq!(prop::<String>(&c, &new_path, "Status"), "running");
    let () = call(&c, "PauseContainer", &(id,)).unwrap();
    assert_eq!(prop::<String>(&c, &path, "Status"), "paused");
    let () = call(&c, "ResumeContainer", &(id,)).unwrap();
    assert_eq!(prop::<String>(&c, &path, "Status"), "running");
    let () = call(&c, "DeleteContainer", &("fresh", true)).unwrap();
    assert_eq!(
        b.sh_ok("systemctl list-units --all --no-legend 'berth-fresh*' | wc -l")
            .trim(),
        "0"
    );
}

#[test]
fn containers_survive_a_bus_restart() {
    let Some(b) = berth_box::up_or_skip("containers_survive_a_bus_restart") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("bus-sleep", &["sleep", "300"]);
    let _: OwnedObjectPath =
        call(&c, "CreateContainer", &("b1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("b1",)).unwrap();

    // Debian 12's dbus.service may be restarted (no RefuseManualStop).
    survives(&b, c, "systemctl restart dbus", "b1", &bundle);
    // dbus-daemon killed: dbus.service fails, dbus.socket still listens and
    // starts it again when the restarted berthd connects.
    let (c, _, _) = berthd_back(&b);
    survives(&b, c, "systemctl kill -s KILL dbus.service", "b1", &bundle);

    // The re-attached watch still sees the container's exit.
    let (c, _, _) = berthd_back(&b);
    let () = call(&c, "KillContainer", &("b1", "init", 9)).unwrap();
    let (code, signal): (i32, i32) = call(&c, "WaitContainer", &("b1",)).unwrap();
    assert_eq!((code, signal), (137, 9));
    let () = call(&c, "DeleteContainer", &("b1", false)).unwrap();
    let list: List = call(&c, "ListContainers", &()).unwrap();
    assert!(list.is_empty(), "{list:?}");
    assert_eq!(
        b.sh_ok("systemctl list-units --all --no-legend 'berth-b1*' | wc -l")
            .trim(),
        "0"
    );
}
