//! containerd 1.6 started by the test with its own config, root, state and
//! socket in the cell's scratch dir; containers from a ready rootfs
//! (`ctr run --rootfs`, no image store) with `--runc-binary`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cases::{busybox_rootfs, seccomp_without_close_range, Case, Peer};
use crate::place::{Place, Scratch};

pub struct Containerd {
    ctr: String,
    /// ctr's stdio fifos (default /run/containerd/fifo).
    fifo_dir: String,
    rootfs: String,
    runc_root: String,
    systemd: bool,
    /// `--cgroup` parent on the host (this test's own cgroup).
    parent: Option<String>,
    /// The daemon's pid as the place sees it (for its mountinfo).
    pid: u32,
    /// On the host: the daemon we spawned, killed by pid on drop.
    child: Option<Child>,
    seq: AtomicU32,
}

impl Containerd {
    pub fn start(place: &Place, s: &Scratch, systemd: bool) -> Containerd {
        let sock = s.path("c.sock");
        let config = s.path("config.toml");
        // Only what ctr needs: no CRI (it wants CNI), no exotic snapshotters.
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
                 \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
                 \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.internal.v1.tracing\", \
                 \"io.containerd.tracing.processor.v1.otlp\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                s.path("root"),
                s.path("state"),
            ),
        )
        .expect("writing containerd's config");
        let (pid, child, parent) = match place {
            Place::Host { parent } => {
                let log = std::fs::File::create(s.path("containerd.log")).expect("log");
                // Its own mount namespace with a fresh /run: containerd 1.6
                // keeps shim sockets in /run/containerd/s whatever the config.
                let child = Command::new("unshare")
                    .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                    .arg(format!(
                        "mount -t tmpfs berth-peers /run && exec containerd --config {config}"
                    ))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .spawn()
                    .expect("spawning containerd");
                (child.id(), Some(child), Some(parent.clone()))
            }
            Place::Boxed(_) => {
                let unit = berth_box::bundle::unique("peers-containerd");
                place.sh_ok(&format!(
                    "systemd-run --quiet --collect --unit {unit} containerd --config {config}"
                ));
                let pid = place.sh_ok(&format!("systemctl show -P MainPID {unit}"));
                (pid.trim().parse().expect("containerd's pid"), None, None)
            }
        };
        let ctr = format!("ctr --address {sock} -n berth-peers");
        let fifo_dir = s.path("fifo");
        let deadline = Instant::now() + Duration::from_secs(20);
        while place.sh(&format!("{ctr} version")).code != 0 {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: see {}",
                s.path("containerd.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let rootfs = s.path("rootfs");
        busybox_rootfs(&rootfs);
        Containerd {
            ctr,
            fifo_dir,
            rootfs,
            runc_root: s.path("runc-root"),
            systemd,
            parent,
            pid,
            child,
            seq: AtomicU32::new(0),
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Peer for Containerd {
    fn label(&self) -> String {
        let driver = if self.systemd { "systemd" } else { "cgroupfs" };
        format!("containerd ({driver})")
    }

    fn command(&self, runtime: &str, case: &Case) -> String {
        let id = format!("c{}", self.seq.fetch_add(1, Ordering::Relaxed));
        let cgroup = match (&self.parent, self.systemd) {
            (_, true) => format!("--runc-systemd-cgroup --cgroup machine.slice:berth-peers:{id}"),
            (Some(parent), false) => format!("--cgroup /{parent}/{id}"),
            (None, false) => String::new(),
        };
        // --cpu-shares 0: ctr's default (1024) writes cpu.weight, which the
        // box's tree lacks; runc and berth both refuse it there.
        format!(
            "{} run --rm --fifo-dir {} --cpu-shares 0 --runc-binary {runtime} --runc-root {} {cgroup} {} --rootfs {} {id} {}",
            self.ctr, self.fifo_dir, self.runc_root, case.flags, self.rootfs, case.cmd
        )
    }

    fn mountinfo(&self) -> String {
        format!("/proc/{}/mountinfo", self.pid)
    }
}

/// The cases, and those that cannot run in this place with why. Commands
/// are absolute: `ctr run --rootfs` sets no PATH.
pub fn cases(place: &Place, s: &Scratch) -> (Vec<Case>, Vec<(&'static str, &'static str)>) {
    let seccomp = s.path("seccomp.json");
    seccomp_without_close_range(&seccomp);
    let src = s.path("shared-src");
    std::fs::create_dir_all(&src).expect("mkdir shared-src");
    let mut c = vec![
        Case::new("kill -9 0 spares the shim", "", "/bin/sh -c '/bin/sh -c \"kill -9 0\"; echo after $?'", 0, "after 137"),
        Case::new("kill -TERM 0 spares the shim", "", "/bin/sh -c 'kill -TERM 0; /bin/sleep 1; echo survived'", 0, "survived"),
        Case::new(
            "seccomp profile without close_range",
            &format!("--seccomp --seccomp-profile {seccomp}"),
            "/bin/echo seccomp-ok",
            0,
            "seccomp-ok",
        ),
        Case::new(
            "tmpfs mount",
            "--mount type=tmpfs,src=tmpfs,dst=/x,options=nosuid",
            "/bin/grep ' /x ' /proc/mounts",
            0,
            "tmpfs /x tmpfs",
        ),
        Case::new("--read-only", "--read-only", "/bin/sh -c 'touch /etc/f; echo rc=$?'", 0, "rc=1"),
        // ctr reports every failed create as exit 1.
        Case::new("missing program", "", "/nonexistent", 1, ""),
        Case::new("not executable", "", "/etc/passwd", 1, ""),
        Case::new(
            "--device rules",
            "--device /dev/null",
            "/bin/sh -c 'echo x >/dev/null && echo dev-ok; mknod /dev/m c 1 1; head -c1 /dev/m >/dev/null || echo denied'",
            0,
            "dev-ok\ndenied",
        ),
        Case::new(
            "--rootfs-propagation shared, rshared bind",
            &format!("--rootfs-propagation shared --mount type=bind,src={src},dst=/mnt,options=rbind:rshared"),
            "/bin/true",
            0,
            "[mounts +0]",
        ),
    ];
    let mut skipped = vec![(
        "--memory-swappiness, --oom-kill-disable, --device-read-bps, --uidmap",
        "ctr run has no flags for them (--uidmap needs a snapshotter, not --rootfs); covered by podman",
    )];
    if place.v1() {
        // containerd's spec has no cgroup namespace: the v1 case as is.
        c.push(Case::new(
            "--memory-limit, no cgroupns",
            "--memory-limit 67108864 --mount type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev",
            "/bin/cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
            0,
            "67108864",
        ));
    } else {
        skipped.push((
            "--memory-limit",
            "the box's v2 tree has no memory controller (runc and berth both refuse)",
        ));
    }
    (c, skipped)
}
