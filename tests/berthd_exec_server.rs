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
    // The shim cloned the process itself, straight into x1's pid namespace
    // (berth-init's exec::fork::clone_direct): the process is its child and
    // in the init's namespace, and the shim's own next child would be born
    // in the shim's namespace again, not the container's.
    let field = |record: &str, key: &str| {
        b.sh_ok(&format!(
            "sed 's/.*\"{key}\":\\([0-9]*\\).*/\\1/' /run/berth/x1/{record}"
        ))
        .trim()
        .to_string()
    };
    let (shim, process) = (
        field("exec-long.shim.json", "pid"),
        field("exec-long.shim.json", "init_pid"),
    );
    let init = field("shim.json", "init_pid");
    let ppid = b.sh_ok(&format!(
        "awk '/^PPid/ {{print $2}}' /proc/{process}/status"
    ));
    assert_eq!(ppid.trim(), shim, "the exec's process's parent");
    let ns = |pid: &str, ns: &str| b.sh_ok(&format!("readlink /proc/{pid}/ns/{ns}"));
    assert_eq!(
        ns(&process, "pid"),
        ns(&init, "pid"),
        "the process's pid namespace"
    );
    assert_eq!(
        ns(&process, "mnt"),
        ns(&init, "mnt"),
        "the process's mount namespace"
    );
    assert_eq!(
        ns(&shim, "pid_for_children"),
        ns(&shim, "pid"),
        "the shim's children's pid namespace"
    );
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
    // Nothing of the request stays with it: its socket and /dev/null (and
    // its pool of network namespaces, below, its warmer's pipe, and the
    // socket of each spare shim it made once the exec was over: one, x1's).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let spares = b.sh_ok(&format!(
        "for p in $(cat /sys/fs/cgroup/berth.slice/berthd-monitors.scope/x1/cgroup.procs); do \
           [ \"$(awk '/^PPid/ {{print $2}}' /proc/$p/status)\" = {server} ] && \
             tr '\\0' ' ' < /proc/$p/cmdline | grep -q -- --exec-server && echo $p; done; true"
    ));
    assert_eq!(spares.lines().count(), 1, "x1's spares: {spares}");
    let sockets = b.sh_ok(&format!(
        "ls -l /proc/{server}/fd | grep -c 'socket:' || true"
    ));
    assert_eq!(
        sockets.trim(),
        "2",
        "the server's sockets: berthd's, the spare's"
    );
    assert_eq!(request_free_fds(&b, server), "0 1 2 3", "the server's fds");
    let pipes = b.sh_ok(&format!(
        "ls -l /proc/{server}/fd | grep -c 'pipe:' || true"
    ));
    assert_eq!(pipes.trim(), "1", "the warmer's pipe, nothing else");
    // The warmer: a child of the server's in berthd-monitors.scope itself,
    // holding its pipe and that cgroup's cgroup.procs, nothing else.
    let warmer = b.sh_ok(&format!(
        "for p in $(cat /sys/fs/cgroup/berth.slice/berthd-monitors.scope/cgroup.procs); do \\
           [ \"$(awk '/^PPid/ {{print $2}}' /proc/$p/status)\" = {server} ] && echo $p; done; true"
    ));
    let warmer = warmer.trim();
    assert!(!warmer.is_empty(), "no warmer");
    let held = b.sh_ok(&format!(
        "cd /proc/{warmer}/fd && for f in *; do echo $f $(readlink $f); done"
    ));
    let held: Vec<&str> = held.lines().collect();
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held[0].starts_with("0 pipe:"), "{held:?}");
    assert!(
        held[1].ends_with("berthd-monitors.scope/cgroup.procs"),
        "{held:?}"
    );
    exec(&c, "t1", &["true"]);
    assert_eq!(m.wait_exec("x1", "t1").unwrap(), (0, 0));
    // Over before a monitor would start, silent: its shim records it (the
    // quick exit, monitor/src/quick_exit.rs), a signal's death as 128+n.
    exec(&c, "t-sig", &["sh", "-c", "kill -9 $$"]);
    assert_eq!(m.wait_exec("x1", "t-sig").unwrap(), (137, 9));

    // bench/ab.sh exec's client, so it cannot rot: execs timed back to back.
    let dbus_bench = std::path::Path::new(BERTHD)
        .with_file_name("examples")
        .join("dbus_bench");
    let timed = b.sh_ok(&format!(
        "{} --bundle {} --exec-into x1 --iterations 3",
        dbus_bench.display(),
        bundle.path()
    ));
    assert!(timed.contains("RESULT execs=3 "), "{timed}");

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

/// The server's fds that are not network namespaces, pipes or its spares'
/// sockets (those past its own, 3).
fn request_free_fds(b: &berth_box::SystemdBox, server: u32) -> String {
    b.sh_ok(&format!(
        "cd /proc/{server}/fd && for f in *; do readlink $f | grep -qE '^(net|pipe):' || \
           {{ [ $f -gt 3 ] && readlink $f | grep -q '^socket:'; }} || echo $f; done \\
         | sort -n | tr '\\n' ' '"
    ))
    .trim()
    .to_string()
}

/// The network namespaces (inode numbers) the server holds, its own among them.
fn netns_fds(b: &berth_box::SystemdBox, server: u32) -> Vec<String> {
    b.sh_ok(&format!(
        "cd /proc/{server}/fd && for f in *; do readlink $f; done | sed -n 's/^net:\\[\\(.*\\)\\]$/\\1/p'"
    ))
    .lines()
    .map(String::from)
    .collect()
}

/// The exec server: the parent of container `id`'s monitor (its shim,
/// forked by the server).
fn server_of_monitor(b: &berth_box::SystemdBox, id: &str) -> u32 {
    let monitor = b.sh_ok(&format!(
        "sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' /run/berth/{id}/shim.json"
    ));
    b.sh_ok(&format!(
        "awk '/^PPid/ {{print $2}}' /proc/{}/status",
        monitor.trim()
    ))
    .trim()
    .parse()
    .unwrap()
}

fn netns_of(b: &berth_box::SystemdBox, pid: u32) -> String {
    let link = b.sh_ok(&format!("readlink /proc/{pid}/ns/net"));
    link.trim()
        .trim_start_matches("net:[")
        .trim_end_matches(']')
        .to_string()
}

fn created(c: &zbus::blocking::Connection, id: &str, bundle: &berth_box::bundle::Bundle) -> u32 {
    let _: zbus::zvariant::OwnedObjectPath =
        call(c, "CreateContainer", &(id, bundle.path(), no_options())).unwrap();
    let () = call(c, "StartContainer", &(id,)).unwrap();
    prop_of::<u32>(c, id, "Pid")
}

#[test]
fn creates_join_network_namespaces_made_ahead() {
    let Some(b) = berth_box::up_or_skip("creates_join_network_namespaces_made_ahead") else {
        return;
    };
    let c = patient_bus_after_install(&b);
    let bundle = busybox_bundle("d-netnspool", &["sleep", "300"]);
    // The first create starts the server; its pool fills once it is quiet.
    let p1 = created(&c, "n1", &bundle);
    let server = server_of_monitor(&b, "n1");
    let own = netns_of(&b, server);
    let pooled = || -> Vec<String> {
        let mut v = netns_fds(&b, server);
        v.retain(|n| *n != own);
        v
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pooled().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "pool: {:?}", pooled());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ready = pooled();
    assert_eq!(ready.len(), 2, "the default netns_pool: {ready:?}");
    assert!(!ready.contains(&netns_of(&b, p1)));

    // The next create joins one of them: a network namespace of its own,
    // fresh (a loopback that is down, nothing else), and no fd of it left
    // in the container.
    let p2 = created(&c, "n2", &bundle);
    let ns2 = netns_of(&b, p2);
    assert!(ready.contains(&ns2), "{ns2} not one of {ready:?}");
    assert_ne!(ns2, netns_of(&b, 1), "not the host's");
    assert_ne!(ns2, netns_of(&b, p1));
    let links = b.sh_ok(&format!("nsenter -t {p2} -n ip -o link show"));
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo: <LOOPBACK>"), "lo is down: {links}");
    let held = b.sh_ok(&format!(
        "ls -l /proc/{p2}/fd /proc/$(awk '/^PPid/ {{print $2}}' /proc/{p2}/status)/fd | grep -c 'net:' || true"
    ));
    assert_eq!(
        held.trim(),
        "0",
        "a netns fd in the container or its monitor"
    );
    // Refilled in the next quiet moment, with another.
    while pooled().len() < 2 {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!pooled().contains(&ns2));
    for id in ["n1", "n2"] {
        let () = call(&c, "DeleteContainer", &(id, true)).unwrap();
    }

    // netns_pool = 0: no pool, and a create gets its namespace from clone.
    b.sh_ok(
        "mkdir -p /etc/berth && echo 'netns_pool = 0' > /etc/berth/berthd.toml && \\
         systemctl restart berthd",
    );
    let c = patient_bus(&b);
    let p3 = created(&c, "n3", &bundle);
    let server = server_of_monitor(&b, "n3");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(netns_fds(&b, server), Vec::<String>::new());
    assert_ne!(netns_of(&b, p3), netns_of(&b, 1));
    let () = call(&c, "DeleteContainer", &("n3", true)).unwrap();
    b.sh_ok("rm /etc/berth/berthd.toml");
}

fn patient_bus_after_install(b: &berth_box::SystemdBox) -> zbus::blocking::Connection {
    install_berthd(b, "");
    patient_bus(b)
}

/// The server keeps what an exec needs of its container (berth-init's
/// exec::Targets) while state.json stays the same file: a container made
/// again under the same id is exec'd into as the new one, a stopped one is
/// refused, and every exec reads whether it is paused.
#[test]
fn execs_follow_the_container_under_its_id() {
    let Some(b) = berth_box::up_or_skip("execs_follow_the_container_under_its_id") else {
        return;
    };
    let c = patient_bus_after_install(&b);
    let m = manager(&c);
    let pid1 = |b: &berth_box::SystemdBox| {
        b.sh_ok(&format!("{} exec k1 cat /proc/1/cmdline", berthctl()))
            .replace('\0', " ")
    };
    let first = busybox_bundle("d-keep1", &["sleep", "300"]);
    let second = busybox_bundle("d-keep2", &["sleep", "301"]);
    let made = |bundle: &berth_box::bundle::Bundle| {
        let _: zbus::zvariant::OwnedObjectPath =
            call(&c, "CreateContainer", &("k1", bundle.path(), no_options())).unwrap();
        let () = call(&c, "StartContainer", &("k1",)).unwrap();
    };
    made(&first);
    assert_eq!(pid1(&b).trim(), "sleep 300");
    assert_eq!(pid1(&b).trim(), "sleep 300", "a second exec, kept");
    // Paused: refused (read for each exec, kept or not), then runs again.
    m.pause_container("k1").unwrap();
    let (code, _, err) = ctl(&b, "exec k1 true");
    assert_ne!(code, 0, "an exec into a paused container ran");
    assert!(err.contains("paused"), "{err}");
    m.resume_container("k1").unwrap();
    assert_eq!(pid1(&b).trim(), "sleep 300");
    // Stopped: refused, not joined to what is left of it.
    m.kill_container("k1", "all", 9).unwrap();
    assert_eq!(m.wait_container("k1").unwrap(), (137, 9));
    let (code, _, err) = ctl(&b, "exec k1 true");
    assert_ne!(code, 0, "an exec into a stopped container ran");
    assert!(err.contains("FailedPrecondition"), "{err}");
    // The same id, another container: the exec is the new one's.
    m.delete_container("k1", true).unwrap();
    made(&second);
    assert_eq!(pid1(&b).trim(), "sleep 301");
    m.delete_container("k1", true).unwrap();
}
