//! podman 4.3 with `--runtime`: storage (vfs), state and config in the cell's
//! scratch dir; the image imported from a busybox rootfs tar (no registry).

use crate::cases::{a_block_device, busybox_rootfs, seccomp_without_close_range, Case, Peer};
use crate::place::{Place, Scratch};

pub struct Podman {
    /// `podman` with this cell's storage, config and cgroup manager.
    base: String,
    /// `run` flags every case gets.
    run: String,
    manager: &'static str,
    /// The runtimes' --root: their state stays in the scratch dir too.
    runtime_root: String,
}

const IMAGE: &str = "localhost/berth-peers:1";

impl Podman {
    pub fn new(place: &Place, s: &Scratch, manager: &'static str) -> Podman {
        // Root's podman defaults raise RLIMIT_NOFILE/NPROC to their maximum,
        // which needs CAP_SYS_RESOURCE (we lack it; runc fails the same);
        // pids_limit 0: podman's default pids.max is not on the box's tree.
        let conf = s.path("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             pids_limit = 0\n[engine]\nevents_logger = \"file\"\n",
        )
        .expect("writing containers.conf");
        let base = format!(
            "CONTAINERS_CONF={conf} podman --root {} --runroot {} --tmpdir {} \
             --storage-driver vfs --cgroup-manager {manager}",
            s.path("root"),
            s.run,
            s.path("tmp")
        );
        let mut run = "run --rm --network=none".to_string();
        if let Place::Host { parent } = place {
            run.push_str(&format!(" --cgroup-parent=/{parent}"));
        }
        let rootfs = s.path("rootfs");
        busybox_rootfs(&rootfs);
        place.sh_ok(&format!(
            "tar -C {rootfs} -cf {rootfs}.tar . && {base} import -q {rootfs}.tar {IMAGE}"
        ));
        Podman {
            base,
            run,
            manager,
            runtime_root: s.path("rt"),
        }
    }
}

impl Peer for Podman {
    fn label(&self) -> String {
        format!("podman ({})", self.manager)
    }

    fn command(&self, runtime: &str, case: &Case) -> String {
        format!(
            "{} --runtime {runtime} --runtime-flag root={runtime_root} {} {} {IMAGE} {}",
            self.base,
            self.run,
            case.flags,
            case.cmd,
            runtime_root = self.runtime_root
        )
    }

    fn mountinfo(&self) -> String {
        "/proc/self/mountinfo".into()
    }
}

/// The cases, and those that cannot run in this place with why.
pub fn cases(place: &Place, s: &Scratch) -> (Vec<Case>, Vec<(&'static str, &'static str)>) {
    let seccomp = s.path("seccomp.json");
    seccomp_without_close_range(&seccomp);
    let src = s.path("shared-src");
    std::fs::create_dir_all(&src).expect("mkdir shared-src");
    let mut c = vec![
        Case::new("kill -9 0 spares conmon", "", "sh -c 'sh -c \"kill -9 0\"; echo after $?'", 0, "after 137"),
        Case::new("kill -TERM 0 spares conmon", "", "sh -c 'kill -TERM 0; sleep 1; echo survived'", 0, "survived"),
        Case {
            within: Some(std::time::Duration::from_secs(15)),
            ..Case::new("run --timeout 2", "--timeout 2", "sleep 30", 255, "")
        },
        Case::new(
            "seccomp profile without close_range",
            &format!("--security-opt seccomp={seccomp}"),
            "echo seccomp-ok",
            0,
            "seccomp-ok",
        ),
        Case::new("--tmpfs /x", "--tmpfs /x", "grep ' /x ' /proc/mounts", 0, "tmpfs /x tmpfs"),
        Case::new(
            "--read-only (tmpcopyup /tmp)",
            "--read-only",
            "sh -c 'touch /etc/f 2>/dev/null && echo rw; touch /tmp/f && echo tmp-ok'",
            0,
            "tmp-ok",
        ),
        Case::new("missing program", "", "/nonexistent", 127, ""),
        Case::new("not executable", "", "/etc/passwd", 126, ""),
        Case::new(
            "--device rules",
            "--device /dev/null:/dev/mynull --cap-add mknod",
            "sh -c 'echo x >/dev/mynull && echo dev-ok; mknod /dev/m c 1 1; head -c1 /dev/m >/dev/null || echo denied'",
            0,
            "dev-ok\ndenied",
        ),
        Case::new(
            "rshared bind (rootfsPropagation shared)",
            &format!("--mount type=bind,src={src},dst=/mnt,bind-propagation=rshared"),
            "true",
            0,
            "[mounts +0]",
        ),
    ];
    let mut skipped = Vec::new();
    if place.v1() {
        c.push(Case::new(
            "--memory 64m --cgroupns=host",
            "--memory 64m --cgroupns=host",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
            0,
            "67108864",
        ));
        c.push(Case::new(
            "--uidmap 0:100000:65536",
            "--uidmap 0:100000:65536 --gidmap 0:100000:65536",
            "cat /proc/self/uid_map",
            0,
            "100000",
        ));
        let (flag, want) = match a_block_device() {
            Some((node, nums)) => (
                format!("--device-read-bps {node}:1mb"),
                format!("{nums} 1048576"),
            ),
            None => (String::new(), String::new()),
        };
        c.push(Case::new(
            "--memory-swappiness --oom-kill-disable --kernel-memory --device-read-bps",
            &format!("--memory 64m --memory-swappiness 7 --oom-kill-disable --kernel-memory 64m {flag}"),
            "sh -c 'cat /sys/fs/cgroup/memory/memory.swappiness; head -1 /sys/fs/cgroup/memory/memory.oom_control; cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device'",
            0,
            &format!("7\noom_kill_disable 1\n{want}"),
        ));
    } else {
        let why = "the box's v2 tree has no memory/io controller: runc and berth both refuse \
                   (runc: exit 127 on memory.swap.max/io.max missing; berth: exit 126 naming the controller)";
        skipped.push((
            "--memory, --memory-swappiness, --oom-kill-disable, --device-read-bps",
            why,
        ));
        skipped.push((
            "--uidmap",
            "the box's /proc has /proc/sys bound read-only over it, so a user namespace may not mount a fresh proc (runc and berth both exit 126)",
        ));
    }
    (c, skipped)
}
