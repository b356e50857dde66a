//! Execs (and creates) through berthd's exec server (`berth-shim
//! --exec-server`, forking each shim): it is what starts them, it holds nothing of a
//! request once it has forked, a killed server is started again at the next
//! exec, and a berthd restart ends the old server while the execs it
//! started run on and are still waited for and killed.

mod common;
#[allow(unused_imports)]
use common::*;

use serde_json::json;
use zbus::zvariant::Value;

fn process(args: &[&str]) -> String {
    json!({"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]})
        .to_string()
}

/// Starts exec `exec_id` of `args` in container x1.
fn exec(c: &zbus::blocking::Connection, exec_id: &str, args: &[&str]) {
    let mut opts = no_options();
    opts.insert("id".into(), Value::from(exec_id.to_string()));
    let got: String = call(c, "ExecContainer", &("x1", process(args).as_str(), opts)).unwrap();
    assert_eq!(got, exec_id);
}

/// The pid of the exec server: the parent of exec `exec_id`'s (running) shim.
fn server_of(b: &berth_box::SystemdBox, exec_id: &str) -> u32 {
    let shim = b.sh_ok(&format!(
        "sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' /run/berth/x1/exec-{exec_id}.shim.json"
    ));
    let ppid = b.sh_ok(&format!(
        "awk '/^PPid/ {{print $2}}' /proc/{}/status",
        shim.trim()
    ));
    ppid.trim().parse().unwrap()
}

#[test]
fn execs_come_from_the_exec_server() {
    let Some(b) = berth_box::up_or_skip("execs_come_from_the_exec_server") else {
        return;
    };
    let c = patient_bus_after_install(&b);
    let bundle = busybox_bundle("d-execsrv", &["sleep", "300"]);
    let _: zbus::zvariant::OwnedObjectPath =
        call(&c, "CreateContainer", &("x1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("x1",)).unwrap();
    let m = manager(&c);

    // The running exec's shim is a child of the server, which is berthd's.
    exec(&c, "long", &["sleep", "300"]);
    let server = server_of(&b, "long");
    let cmdline = b.sh_ok(&format!("tr '\\0' ' ' < /proc/{server}/cmdline"));
    assert!(cmdline.contains("berth-shim --exec-server"), "{cmdline}");
    let parent = b.sh_ok(&format!("awk '/^PPid/ {{print $2}}' /proc/{server}/status"));
    assert_eq!(parent.trim().parse::<u32>().unwrap(), main_pid(&b));
    // x1's own shim (its monitor now) was forked by the server too: a
    // create starts no berth-shim binary either.
    let monitor = b.sh_ok("sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' /run/berth/x1/shim.json");
    let monitor_parent = b.sh_ok(&format!(
        "awk '/^PPid/ {{print $2}}' /proc/{}/status",
        monitor.trim()
    ));
    assert_eq!(
        monitor_parent.trim().parse::<u32>().unwrap(),
        server,
        "x1's monitor's parent"
    );
    // Nothing of the request stays with it: its socket and /dev/null.
    let fds = b.sh_ok(&format!("ls /proc/{server}/fd | sort -n | tr '\\n' ' '"));
    assert_eq!(fds.trim(), "0 1 2 3", "the server's fds");
    exec(&c, "t1", &["true"]);
    assert_eq!(m.wait_exec("x1", "t1").unwrap(), (0, 0));
    // Over before a monitor would start, silent: its shim records it (the
    // quick exit, monitor/src/quick_exit.rs), a signal's death as 128+n.
    exec(&c, "t-sig", &["sh", "-c", "kill -9 $$"]);
    assert_eq!(m.wait_exec("x1", "t-sig").unwrap(), (137, 9));

    // Killed, it is started again by the next exec (which succeeds).
    b.sh_ok(&format!("kill -9 {server}; while [ -e /proc/{server}/cmdline ] && ! grep -q zombie /proc/{server}/status 2>/dev/null; do sleep 0.05; done"));
    exec(&c, "after-kill", &["sleep", "300"]);
    let second = server_of(&b, "after-kill");
    assert_ne!(second, server, "a new server");
    exec(&c, "t2", &["sh", "-c", "exit 7"]);
    assert_eq!(m.wait_exec("x1", "t2").unwrap(), (7, 0));

    // A berthd restart ends its server (EOF on its socket); the execs it
    // started run on, and the new berthd waits for and kills them.
    b.sh_ok("systemctl restart berthd");
    b.sh_ok(&format!(
        "for i in $(seq 100); do [ -e /proc/{second} ] || exit 0; sleep 0.05; done; exit 1"
    ));
    let c = bus(&b).unwrap();
    let m = manager(&c);
    m.kill_exec("x1", "long", 9).unwrap();
    assert_eq!(m.wait_exec("x1", "long").unwrap(), (137, 9));
    exec(&c, "t3", &["true"]);
    assert_eq!(m.wait_exec("x1", "t3").unwrap(), (0, 0));
    let () = call(&c, "DeleteContainer", &("x1", true)).unwrap();
}

fn patient_bus_after_install(b: &berth_box::SystemdBox) -> zbus::blocking::Connection {
    install_berthd(b, "");
    patient_bus(b)
}
