//! Self-tests of the systemd box: each proves one thing the later integration
//! tests rely on (a real bus, real scopes, a real journal) or one promise the box
//! makes to the host (nothing changed, nothing left behind).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_box::{up_or_skip, SystemdBox};

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn system_bus_and_systemd_answer() {
    let Some(b) = up_or_skip("system_bus_and_systemd_answer") else {
        return;
    };
    let id = b
        .sh_ok("busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetId");
    assert!(id.starts_with("s \""), "GetId answered {id:?}");
    let version = b.sh_ok(
        "busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
         org.freedesktop.systemd1.Manager Version",
    );
    assert!(version.starts_with("s \""), "Version answered {version:?}");
    // It is the box's own systemd: PID 1 inside, and running.
    assert_eq!(b.sh_ok("cat /proc/1/comm").trim(), "systemd");
    let state = b.sh_ok("systemctl is-system-running || true");
    assert!(
        state.trim() == "running",
        "box state {state:?}; failed units: {}",
        b.sh_ok("systemctl --failed --no-legend || true")
    );
}

#[test]
fn scope_gets_a_real_cgroup() {
    let Some(b) = up_or_skip("scope_gets_a_real_cgroup") else {
        return;
    };
    // A delegated scope, as berthd will make for containers.
    b.sh_ok(
        "systemd-run --scope --unit=selftest.scope -p Delegate=yes sleep 300 \
         >/dev/null 2>&1 </dev/null &",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while b
        .sh("systemctl is-active -q selftest.scope")
        .unwrap()
        .status
        .code()
        != Some(0)
    {
        assert!(
            Instant::now() < deadline,
            "selftest.scope never became active"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Seen from the host, the scope is a cgroup inside the box's subtree, with the
    // sleep in it.
    let host_cg = b.cgroup().join("system.slice/selftest.scope");
    let procs = fs::read_to_string(host_cg.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("{} on the host: {e}", host_cg.display()));
    let pid: i32 = procs.trim().parse().expect("one pid in the scope");
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );
    // And from inside, the same cgroup under the box's own cgroup2 mount.
    b.sh_ok("test -d /sys/fs/cgroup/system.slice/selftest.scope");
    assert_eq!(
        b.sh_ok("systemctl show -P Delegate selftest.scope").trim(),
        "yes"
    );
    b.sh_ok("systemctl stop selftest.scope");
    assert!(!host_cg.exists(), "scope cgroup survived systemctl stop");
}

#[test]
fn journald_receives_messages() {
    let Some(b) = up_or_skip("journald_receives_messages") else {
        return;
    };
    let tag = format!("berth-selftest-{}", std::process::id());
    b.sh_ok(&format!("logger -t {tag} 'hello from the box'"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = b.sh_ok(&format!(
            "journalctl --sync; journalctl -t {tag} -o cat --no-pager"
        ));
        if out.contains("hello from the box") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "journal never showed the message: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A snapshot of what the box must not change on the host.
#[derive(Debug, PartialEq)]
struct HostSnapshot {
    etc: BTreeMap<PathBuf, (u64, i64)>,
    sysctls: BTreeMap<&'static str, String>,
    hostname: String,
}

// Settings systemd's boot (systemd-sysctl, its own defaults) would change if
// /proc/sys were writable.
const SYSCTLS: &[&str] = &[
    "kernel/hostname",
    "kernel/domainname",
    "kernel/sysrq",
    "kernel/core_pattern",
    "kernel/pid_max",
    "kernel/kptr_restrict",
    "fs/protected_hardlinks",
    "fs/protected_symlinks",
    "fs/protected_fifos",
    "fs/protected_regular",
    "net/core/default_qdisc",
    "net/ipv4/conf/all/rp_filter",
];

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, i64)>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        out.insert(e.path(), (md.size(), md.mtime()));
        if md.is_dir() {
            walk(&e.path(), out);
        }
    }
}

fn snapshot() -> HostSnapshot {
    let mut etc = BTreeMap::new();
    walk(Path::new("/etc"), &mut etc);
    HostSnapshot {
        etc,
        sysctls: SYSCTLS
            .iter()
            .map(|k| {
                let v = fs::read_to_string(Path::new("/proc/sys").join(k)).unwrap_or_default();
                (*k, v)
            })
            .collect(),
        hostname: nix::unistd::gethostname()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    }
}

#[test]
fn host_tmp_etc_and_sysctls_are_untouched() {
    if berth_box::host_support().is_err() {
        up_or_skip("host_tmp_etc_and_sysctls_are_untouched");
        return;
    }
    // A file in the host's /tmp that systemd-tmpfiles --boot/--remove would wipe.
    let keep = PathBuf::from(format!("/tmp/berth-selftest-keep-{}", std::process::id()));
    fs::write(&keep, "host file").unwrap();
    let before = snapshot();
    let tmp_before: Vec<_> = fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();

    let b = up_or_skip("host_tmp_etc_and_sysctls_are_untouched").unwrap();
    let probe = format!("berth-box-probe-{}", std::process::id());
    b.sh_ok(&format!("touch /etc/{probe} /tmp/{probe} /var/tmp/{probe}"));
    // What a booting systemd would do to the host, all refused or kept inside.
    b.sh_ok("systemd-tmpfiles --create --remove --boot >/dev/null 2>&1 || true");
    let sysctl = b.sh("echo 1 > /proc/sys/kernel/sysrq").unwrap();
    assert!(!sysctl.status.success(), "the box could write /proc/sys");
    let sys = b.sh("echo x > /sys/kernel/uevent_helper").unwrap();
    assert!(!sys.status.success(), "the box could write /sys");
    // Its own UTS namespace: renaming the box does not rename the host.
    b.sh_ok("hostname berth-box-probe");
    b.down().unwrap();

    for dir in ["/etc", "/tmp", "/var/tmp"] {
        let p = Path::new(dir).join(&probe);
        assert!(!p.exists(), "{} leaked onto the host", p.display());
    }
    for p in tmp_before {
        // Other tests may remove their own files meanwhile; ours must survive.
        if p == keep {
            assert!(p.exists(), "the box wiped the host's {}", p.display());
        }
    }
    let after = snapshot();
    fs::remove_file(&keep).unwrap();
    assert_eq!(before.hostname, after.hostname);
    assert_eq!(before.sysctls, after.sysctls);
    assert_eq!(before.etc, after.etc, "the host's /etc changed");
}

fn mountinfo_mentions(needle: &str) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(needle))
}

/// The start time of a live (non-zombie) process: with the pid, it names one
/// process, so a pid reused by an unrelated process is not mistaken for it.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first().is_some_and(|s| *s == "Z" || *s == "X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[test]
fn teardown_leaves_no_process_cgroup_mount_or_state() {
    let Some(b) = up_or_skip("teardown_leaves_no_process_cgroup_mount_or_state") else {
        return;
    };
    // Give the box something to clean up: a scope, a service, a process in it.
    b.sh_ok("systemd-run --unit=selftest-svc sleep 300 >/dev/null");
    b.sh_ok("systemd-run --scope -q sleep 300 >/dev/null 2>&1 </dev/null &");
    let cg = b.cgroup().to_path_buf();
    let state = b.state_dir().to_path_buf();
    let pids: Vec<(i32, Option<u64>)> = berth_box::cgroup::pids_in_tree(&cg)
        .into_iter()
        .map(|p| (p, start_time(p)))
        .collect();
    assert!(
        pids.len() >= 3,
        "expected systemd, dbus, sleep in the box: {pids:?}"
    );
    let took = b.down().unwrap();
    eprintln!("teardown took {} ms", took.as_millis());
    assert!(!cg.exists(), "box cgroup {} survived", cg.display());
    assert!(!state.exists(), "state dir {} survived", state.display());
    assert!(
        !mountinfo_mentions(&state.to_string_lossy()),
        "a box mount is visible on the host"
    );
    for (pid, start) in pids {
        assert!(
            start.is_none() || start_time(pid) != start,
            "box process {pid} survived teardown"
        );
    }
}

#[test]
fn a_panicking_test_still_tears_its_box_down() {
    if up_or_skip("a_panicking_test_still_tears_its_box_down").is_none() {
        return;
    }
    let mut seen: Option<(PathBuf, i32, Option<u64>)> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let b = SystemdBox::up(berth_box::BoxOptions::default()).unwrap();
        seen = Some((
            b.cgroup().to_path_buf(),
            b.init_pid(),
            start_time(b.init_pid()),
        ));
        panic!("deliberate panic with a box alive");
    }));
    assert!(result.is_err());
    let (cg, pid, start) = seen.expect("the box booted");
    assert!(!cg.exists(), "cgroup {} survived the panic", cg.display());
    assert!(
        start.is_some() && start_time(pid) != start,
        "box systemd {pid} survived the panic"
    );
}

#[test]
fn ten_boxes_boot_in_parallel() {
    if up_or_skip("ten_boxes_boot_in_parallel").is_none() {
        return;
    }
    let handles: Vec<_> = (0..10)
        .map(|i| {
            std::thread::spawn(move || {
                let b = SystemdBox::up(berth_box::BoxOptions::default())
                    .unwrap_or_else(|e| panic!("box {i}: {e}"));
                let state = b.sh_ok("systemctl is-system-running");
                assert_eq!(state.trim(), "running", "box {i}");
                b.sh_ok("busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetId");
                let boot = b.boot_time();
                let cg = b.cgroup().to_path_buf();
                b.down().unwrap();
                assert!(!cg.exists());
                boot
            })
        })
        .collect();
    let mut boots: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    boots.sort();
    eprintln!(
        "10 parallel boxes: boot median {} ms, max {} ms",
        boots[4].as_millis(),
        boots[9].as_millis()
    );
}

#[test]
fn cli_up_exec_down() {
    if up_or_skip("cli_up_exec_down").is_none() {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_berth-box");
    let name = format!("cli{}", std::process::id());
    let up = Command::new(bin)
        .args(["up", "--name", &name])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // The box outlives the `up` command.
    let listed = Command::new(bin).arg("list").output().unwrap();
    assert!(stdout_of(&listed).lines().any(|l| l == name));
    let ok = Command::new(bin)
        .args(["exec", &name, "--", "systemctl", "is-system-running"])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&ok), "running");
    let code = Command::new(bin)
        .args(["exec", &name, "--", "sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(code.code(), Some(7), "exec passes the exit status through");
    let cg = SystemdBox::attach(&name).unwrap().detach().cgroup;
    let down = Command::new(bin).args(["down", &name]).output().unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!cg.exists());
    let missing = Command::new(bin)
        .args(["exec", &name, "--", "true"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no box named"));
}
