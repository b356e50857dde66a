//! exec into a running container, pause/resume, the console socket, and the
//! host binary staying out of the container's reach.

mod common;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::{assert_nothing_left, busybox_bundle, text, Bundle, Rt};

/// A detached `sleep 300` container; returns the init's pid.
fn sleeper(rt: &Rt, id: &str, bundle: &Bundle) -> i64 {
    let out = rt.create(id, bundle, "/dev/null");
    assert!(out.status.success(), "{}", text(&out));
    rt.ok(&["start", id]);
    rt.state(id)["pid"].as_i64().unwrap()
}

#[test]
fn exec_joins_the_container() {
    let Some(b) = berth_box::up_or_skip("exec_joins_the_container") else {
        return;
    };
    for systemd in [true, false] {
        let rt = Rt::new(&b, systemd);
        let bundle = busybox_bundle("exec", &["sleep", "300"]);
        let pid = sleeper(&rt, "e1", &bundle);
        let out = rt.ok(&["exec", "e1", "sh", "-c", "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; cat /proc/self/cgroup | tail -n1; hostname"]);
        let want_ns = b.sh_ok(&format!("readlink /proc/{pid}/ns/pid /proc/{pid}/ns/mnt"));
        let mut lines = out.lines();
        for want in want_ns.lines() {
            assert_eq!(
                lines.next(),
                Some(want),
                "exec is in the container's namespaces: {out}"
            );
        }
        assert_eq!(
            lines.next(),
            Some("0::/"),
            "exec is in the container's cgroup: {out}"
        );
        assert_eq!(lines.next(), Some("berth"));
        // Exit status, environment, user, and errors.
        let code = rt.run(&["exec", "e1", "sh", "-c", "exit 5"]);
        assert_eq!(code.status.code(), Some(5));
        let env = rt.ok(&[
            "exec",
            "-e",
            "FOO=bar",
            "--user",
            "1000:1000",
            "e1",
            "sh",
            "-c",
            "echo $FOO; id -u; id -g",
        ]);
        assert_eq!(env, "bar\n1000\n1000\n");
        let missing = rt.run(&["exec", "e1", "/no/such/binary"]);
        assert!(!missing.status.success());
        assert!(
            String::from_utf8_lossy(&missing.stderr).contains("/no/such/binary"),
            "{}",
            text(&missing)
        );
        // The pids of the container, exec'd processes included while they run.
        let ps = rt.ok(&["ps", "--format", "json", "e1"]);
        assert!(ps.contains(&pid.to_string()), "{ps}");
        rt.ok(&["kill", "e1", "KILL"]);
        rt.wait_status("e1", "stopped");
        let stopped = rt.run(&["exec", "e1", "true"]);
        assert!(String::from_utf8_lossy(&stopped.stderr).contains("it is stopped"));
        rt.ok(&["delete", "e1"]);
        assert_nothing_left(&rt, "e1");
    }
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let Some(b) = berth_box::up_or_skip("pause_and_resume_freeze_the_container") else {
        return;
    };
    for systemd in [true, false] {
        let rt = Rt::new(&b, systemd);
        let bundle = busybox_bundle("pause", &["sleep", "300"]);
        let pid = sleeper(&rt, "p1", &bundle);
        rt.ok(&["pause", "p1"]);
        assert_eq!(rt.status("p1"), "paused");
        // The kernel agrees: the task is frozen (state in /proc and cgroup.freeze).
        let freeze = b.sh_ok(&format!(
            "cat /sys/fs/cgroup$(cut -d: -f3 /proc/{pid}/cgroup | tail -n1)/cgroup.freeze"
        ));
        assert_eq!(freeze.trim(), "1");
        if systemd {
            assert_eq!(
                b.sh_ok("systemctl show -P FreezerState berth-p1.scope")
                    .trim(),
                "frozen"
            );
        }
        let again = rt.run(&["pause", "p1"]);
        assert!(String::from_utf8_lossy(&again.stderr).contains("it is paused"));
        // exec reads the pause from the cgroup files, not the driver.
        let exec = rt.run(&["exec", "p1", "true"]);
        assert!(
            String::from_utf8_lossy(&exec.stderr).contains("it is paused"),
            "exec in a paused container: {exec:?}"
        );
        rt.ok(&["resume", "p1"]);
        assert_eq!(rt.status("p1"), "running");
        // A paused container is deleted with --force too.
        rt.ok(&["pause", "p1"]);
        rt.ok(&["delete", "--force", "p1"]);
        assert_nothing_left(&rt, "p1");
    }
}

#[test]
fn terminal_through_the_console_socket() {
    let Some(b) = berth_box::up_or_skip("terminal_through_the_console_socket") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let mut bundle = busybox_bundle(
        "tty",
        &[
            "sh",
            "-c",
            "tty; test -t 0 && echo stdin-is-a-tty; stty size",
        ],
    );
    bundle.config["process"]["terminal"] = serde_json::json!(true);
    bundle.config["process"]["consoleSize"] = serde_json::json!({"height": 30, "width": 100});
    bundle.save();
    // The socket lives in the bundle dir: the box binds it at the same path.
    let sock_path = bundle.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let accept =
        std::thread::spawn(move || berth_init::console::receive_master(&listener).unwrap());
    let sock = sock_path.to_str().unwrap().to_string();
    let out = rt.run(&[
        "run",
        "--detach",
        "--console-socket",
        &sock,
        "--bundle",
        bundle.path(),
        "t1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let master = accept.join().unwrap();
    let mut f = std::fs::File::from(master);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1024];
    while !seen.contains("30 100") && Instant::now() < deadline {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the slave side closed
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(seen.contains("/dev/pts/"), "{seen:?}");
    assert!(seen.contains("stdin-is-a-tty"), "{seen:?}");
    assert!(seen.contains("30 100"), "console size applied: {seen:?}");
    rt.wait_status("t1", "stopped");
    rt.ok(&["delete", "t1"]);
    // Without a socket, a terminal container is refused with a clear message.
    let refused = rt.run(&["run", "--bundle", bundle.path(), "t2"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--console-socket is required"));
    assert_nothing_left(&rt, "t2");
}

#[test]
fn the_host_runtime_binary_is_out_of_reach() {
    let Some(b) = berth_box::up_or_skip("the_host_runtime_binary_is_out_of_reach") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("exe", &["sleep", "300"]);
    // Created, not started: pid 1 of the container is still the runtime's
    // own image (CVE-2019-5736 targets exactly this window).
    let out = rt.create("x1", &bundle, "/dev/null");
    assert!(out.status.success(), "{}", text(&out));
    let probe = rt.run(&[
        "exec",
        "x1",
        "sh",
        "-c",
        "readlink /proc/1/exe && echo exe-visible; echo x >> /proc/1/exe && echo exe-writable; \
         for f in /proc/1/fd/*; do readlink $f && echo fd-target-visible; done; \
         cat /proc/1/environ && echo environ-visible; true",
    ]);
    let seen = String::from_utf8_lossy(&probe.stdout);
    // Non-dumpable until execve: fd numbers can be listed, but nothing behind
    // them (or the binary, or the environment) can be reached.
    for bad in [
        "exe-visible",
        "exe-writable",
        "fd-target-visible",
        "environ-visible",
    ] {
        assert!(!seen.contains(bad), "{bad}: {}", text(&probe));
    }
    assert!(!seen.contains("berth-runtime"), "{seen}");
    rt.ok(&["delete", "x1"]);
    assert_nothing_left(&rt, "x1");
}
