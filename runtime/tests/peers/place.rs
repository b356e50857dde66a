//! Where a peer runs: on the host (its hybrid tree: cgroup v1 controllers,
//! cgroupfs only — podman and containerd need no systemd there) or inside a
//! box (our own systemd on a pure cgroup v2 tree), and the scratch directory
//! every cell keeps its state in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_box::SystemdBox;

/// One command's result, as a peer's user sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

pub enum Place {
    /// The host's hybrid tree; `parent` is this test's own cgroup in every
    /// v1 hierarchy (removed with everything under it at the end).
    Host {
        parent: String,
    },
    Boxed(SystemdBox),
}

/// A hung peer must not hang CI.
const TIMEOUT: Duration = Duration::from_secs(90);

impl Place {
    pub fn host() -> Place {
        Place::Host {
            parent: format!("berth-peers-{}", std::process::id()),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Place::Host { .. } => "host cgroup v1",
            Place::Boxed(_) => "box cgroup v2",
        }
    }

    pub fn v1(&self) -> bool {
        matches!(self, Place::Host { .. })
    }

    pub fn sh(&self, script: &str) -> Outcome {
        let start = Instant::now();
        let out = match self {
            Place::Host { .. } => Command::new("timeout")
                .arg(TIMEOUT.as_secs().to_string())
                .args(["/bin/sh", "-c", script])
                .stdin(Stdio::null())
                .output()
                .expect("running /bin/sh"),
            Place::Boxed(b) => b
                .exec_timeout(&["/bin/sh", "-c", script], TIMEOUT)
                .expect("running /bin/sh in the box"),
        };
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
            took: start.elapsed(),
        }
    }

    pub fn sh_ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert_eq!(o.code, 0, "`{script}` in {}: {o:#?}", self.label());
        o.stdout
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let Place::Host { parent } = self else { return };
        // Only the cgroups this test made: its parent in each hierarchy and
        // what podman/runc left under it (podman's `conmon` cgroup).
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_cgroup_tree(&h.path().join(&*parent));
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&child.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A cell's scratch directory in the cargo target dir (the box binds it at
/// the same path, and it is a real filesystem: no overlay upper dirs needed,
/// podman uses vfs, containerd a ready rootfs). Removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
    /// A short path for podman's runroot (at most 50 characters, podman
    /// says): on /run of the place (the host's, or the box's own tmpfs).
    pub run: String,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = berth_box::target_dir()
            .expect("cargo target dir")
            .join("berth-tests")
            .join(berth_box::bundle::unique(name));
        std::fs::create_dir_all(&dir).expect("creating the scratch dir");
        let run = format!("/run/{}", berth_box::bundle::unique("berth-peers"));
        Scratch { dir, run }
    }

    pub fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

/// Peers are installed by scripts/deps; elsewhere a missing one is a skip,
/// unless BERTH_REQUIRE_PEERS=1 (scripts/test, CI) makes it a failure.
pub fn tools_or_skip(test: &str, tools: &[&str]) -> bool {
    let mut missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root");
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "needs {} (apt-get install podman containerd runc)",
        missing.join(", ")
    );
    if std::env::var_os("BERTH_REQUIRE_PEERS").is_some_and(|v| v == "1") {
        panic!("{test}: BERTH_REQUIRE_PEERS=1 but it {why}");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

fn on_path(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

/// The host's v1 tree, or why not.
pub fn v1_host_or_skip(test: &str) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v1 = info
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup/memory ") && l.contains(" - cgroup "));
    if !v1 {
        eprintln!("SKIP {test}: no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory");
    }
    v1
}
