//! Socket activation: berth-sock.socket (127.0.0.1:PORT, owned by the
//! box's systemd) in front of the generated berth-sock.service; the first
//! connection starts the container, whose process accepts on fd 3.
//!
//! The server is a small static C program (built here with gcc -static:
//! busybox has no applet that accepts on an inherited socket). Its answer
//! tells what it sees: its pid, LISTEN_*, and every fd it has open — so a
//! leaked fd, a wrong LISTEN_PID or a missing name fails the test.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use berth_box::SystemdBox;

use super::common::*;
use super::{eventually, inspect};

const SERVER: &str = r#"
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static void bye(int s) { (void)s; _exit(0); }
int main(void) {
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID"), *names = getenv("LISTEN_FDNAMES");
    char open_fds[512] = "";
    signal(SIGTERM, bye);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
        strncat(open_fds, e->d_name, 16);
        strcat(open_fds, " ");
    }
    if (d) closedir(d);
    for (;;) {
        int c = accept(3, 0, 0);
        if (c < 0) return 1;
        dprintf(c, "pid=%d LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=%s open=%s\n", getpid(),
                pid ? pid : "-", fds ? fds : "-", names ? names : "-", open_fds);
        close(c);
    }
}
"#;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Connects to the socket unit on the box's loopback (the box has a network
/// namespace of its own) and reads to the end.
fn ask(b: &SystemdBox, port: u16) -> String {
    let ns = format!("/proc/{}/ns/net", b.init_pid());
    let mut s = super::common::in_netns(&ns, || TcpStream::connect(("127.0.0.1", port))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

pub fn socket_activation(b: &SystemdBox) {
    let bundle = busybox_bundle("sysd-sock", &["/bin/listener"]);
    let bp = bundle.path();
    let src = Path::new(bp).join("listener.c");
    std::fs::write(&src, SERVER).unwrap();
    let cc = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(Path::new(bp).join("rootfs/bin/listener"))
        .arg(&src)
        .output()
        .expect("gcc (scripts/deps installs it)");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );

    // The generator from the test before makes berth-sock.service; the
    // socket unit of the same name activates it.
    let port = free_port();
    b.sh_ok(&format!(
        "printf 'bundle = \"{bp}\"\\nstop_timeout = 2\\n' > /etc/berth/containers/sock.toml && \
         printf '[Socket]\\nListenStream=127.0.0.1:{port}\\nFileDescriptorName=web\\n' \
           > /run/systemd/system/berth-sock.socket && \
         systemctl daemon-reload && systemctl start berth-sock.socket"
    ));
    assert_eq!(
        b.sh_ok("systemctl is-active berth-sock.service || true")
            .trim(),
        "inactive"
    );
    let (code, _, _) = ctl(b, "inspect sock");
    assert_ne!(code, 0, "no container before the first connection");

    // The first connection starts the unit, the container, and is answered.
    let t0 = std::time::Instant::now();
    let first = ask(b, port);
    eprintln!("first connection answered after {:?}", t0.elapsed());
    assert_eq!(
        first.trim(),
        "pid=1 LISTEN_PID=1 LISTEN_FDS=1 LISTEN_FDNAMES=web open=0 1 2 3",
        "what the container's process sees"
    );
    assert_eq!(inspect(b, "sock")["Status"], "running");
    let pid = inspect(b, "sock")["Pid"].as_u64().unwrap();
    // The shim (berth-monitor) let go of the socket: only systemd and
    // the container hold it.
    let sock = b.sh_ok(&format!("readlink /proc/{pid}/fd/3"));
    assert!(sock.starts_with("socket:["), "{sock}");
    let in_shim = b.sh_ok(&format!(
        "for p in $(cat /sys/fs/cgroup/berth.slice/berthd-monitors.scope/sock/cgroup.procs); do \
           ls -l /proc/$p/fd; done | grep -cF '{}' || true",
        sock.trim()
    ));
    assert_eq!(
        in_shim.trim(),
        "0",
        "the shim holds the listening socket {sock}: {}",
        b.sh_ok(
            "for p in $(cat /sys/fs/cgroup/berth.slice/berthd-monitors.scope/sock/cgroup.procs); do \
                 cat /proc/$p/cmdline; echo; ls -l /proc/$p/fd; done"
        )
    );
    // Later connections go to the same container.
    let t0 = std::time::Instant::now();
    assert_eq!(ask(b, port), first);
    eprintln!("a warm connection: {:?}", t0.elapsed());
    assert_eq!(inspect(b, "sock")["Pid"].as_u64(), Some(pid));

    // Stopped, the socket stays with systemd; the next connection starts
    // the container again.
    b.sh_ok("systemctl stop berth-sock.service");
    eventually("sock removed", || ctl(b, "inspect sock").0 != 0);
    assert_eq!(ask(b, port), first);
    assert_eq!(inspect(b, "sock")["Status"], "running");
    b.sh_ok("systemctl stop berth-sock.socket berth-sock.service");
}
