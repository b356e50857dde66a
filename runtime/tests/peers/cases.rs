//! The cases every peer runs, once with runc (the reference) and once with
//! berth-runtime, and the comparison: same exit code, same output, no mount
//! left behind where the peer's containers are made.

use std::time::Duration;

use crate::place::{Outcome, Place, Scratch};

pub const RUNC: &str = "runc";
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth-runtime");

/// One thing a peer's user does, and what runc makes of it.
pub struct Case {
    pub what: &'static str,
    /// The peer's flags for this case.
    pub flags: String,
    /// The container's command line, as shell words.
    pub cmd: &'static str,
    /// What runc gives (checked, so a broken reference fails loudly).
    pub code: i32,
    pub out: String,
    /// An upper bound on how long the peer may take (`podman run --timeout`).
    pub within: Option<Duration>,
}

impl Case {
    pub fn new(what: &'static str, flags: &str, cmd: &'static str, code: i32, out: &str) -> Case {
        Case {
            what,
            flags: flags.to_string(),
            cmd,
            code,
            out: out.to_string(),
            within: None,
        }
    }
}

/// A client (podman, ctr) as configured for one cell of the matrix.
pub trait Peer {
    fn label(&self) -> String;
    /// The shell command running `case` with `runtime` (a name or a path).
    fn command(&self, runtime: &str, case: &Case) -> String;
    /// The mountinfo of the mount namespace the peer's containers are made in.
    fn mountinfo(&self) -> String;
}

/// Runs every case with runc then berth-runtime; prints one line per case and
/// the skipped ones with their reason; fails listing every difference.
pub fn compare(
    place: &Place,
    scratch: &Scratch,
    peer: &dyn Peer,
    cases: &[Case],
    skipped: &[(&str, &str)],
) {
    let cell = format!("{} on {}", peer.label(), place.label());
    let mut failures = Vec::new();
    for case in cases {
        let expected = |o: &Outcome| o.code == case.code && o.stdout.contains(&case.out);
        // Each runtime's run is retried (twice at most) when it did not come
        // out as the case expects: ctr has lost a short-lived container's
        // stdout line now and then (a local scripts/test run, 2026-12-05:
        // runc's "rc=1" missing, its stderr there). The same rule for both
        // runtimes, and a difference that stays is still one.
        let attempt = |runtime: &str| {
            let mut out = run(place, scratch, peer, runtime, case);
            for _ in 0..2 {
                if expected(&out) {
                    break;
                }
                eprintln!(
                    "peers: {cell}: {}: {runtime} came out {out:?}; running it again",
                    case.what
                );
                out = run(place, scratch, peer, runtime, case);
            }
            out
        };
        let runc = attempt(RUNC);
        let berth = attempt(BERTH);
        let mut why = Vec::new();
        if !expected(&runc) {
            why.push(format!(
                "the runc reference is not as expected (exit {}, {:?})",
                case.code, case.out
            ));
        }
        if (berth.code, &berth.stdout) != (runc.code, &runc.stdout) {
            why.push("berth-runtime differs from runc".into());
        }
        if !berth.stdout.ends_with("[mounts +0]") {
            why.push("berth-runtime left a mount behind".into());
        }
        if let Some(limit) = case.within {
            if berth.took > limit {
                why.push(format!(
                    "berth-runtime took {:?} (limit {limit:?})",
                    berth.took
                ));
            }
        }
        let verdict = if why.is_empty() { "same" } else { "DIFFERS" };
        eprintln!(
            "peers: {cell}: {}: runc exit {}, berth exit {}: {verdict}",
            case.what, runc.code, berth.code
        );
        if !why.is_empty() {
            failures.push(format!(
                "{cell}: {}: {}\n  command: {}\n  runc:  {runc:?}\n  berth: {berth:?}",
                case.what,
                why.join("; "),
                peer.command(BERTH, case)
            ));
        }
    }
    for (what, reason) in skipped {
        eprintln!("peers: {cell}: {what}: SKIP: {reason}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The case's command, then how many more mounts mention the scratch dir
/// than before it: a container mount propagated back would show there.
fn run(place: &Place, scratch: &Scratch, peer: &dyn Peer, runtime: &str, case: &Case) -> Outcome {
    let mi = peer.mountinfo();
    let pat = scratch.dir.display();
    let script = format!(
        "b=$(grep -c '{pat}' {mi}); {cmd}; rc=$?; \
         echo \"[mounts +$(( $(grep -c '{pat}' {mi}) - b ))]\"; exit $rc",
        cmd = peer.command(runtime, case)
    );
    place.sh(&script)
}

/// A busybox-static rootfs with every applet, in `dir`.
pub fn busybox_rootfs(dir: &str) {
    let root = std::path::Path::new(dir);
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "root", "mnt", "run", "var/tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("creating the rootfs");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (apt-get install busybox-static)");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
}

/// A seccomp profile allowing everything but close_range (ENOSYS): the
/// runtime must still close its fds without it.
pub fn seccomp_without_close_range(path: &str) {
    let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["close_range"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#;
    std::fs::write(path, profile).expect("writing the seccomp profile");
}

/// The first non-loop block device, as /dev/NAME and MAJ:MIN (a throttle
/// rule needs a real one).
pub fn a_block_device() -> Option<(String, String)> {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/block").ok()?.flatten().collect();
    devs.sort_by_key(|d| d.file_name());
    devs.iter()
        .filter(|d| !d.file_name().to_string_lossy().starts_with("loop"))
        .find_map(|d| {
            let nums = std::fs::read_to_string(d.path().join("dev")).ok()?;
            let node = format!("/dev/{}", d.file_name().to_string_lossy());
            std::path::Path::new(&node)
                .exists()
                .then(|| (node, nums.trim().to_string()))
        })
}
