//! The systemd box: a real systemd booted as PID 1 of fresh pid/mount/uts/ipc/cgroup
//! namespaces, on a copy-on-write overlay of `/`, for berth's integration tests.
//!
//! Our machines' PID 1 is not systemd and their cgroup v2 tree has only `hugetlb`
//! (see docs/testing.md). Booting our own systemd gives every test a real system
//! bus, real transient units and a real journal, without touching the host: the
//! box's writes go to a tmpfs, /proc/sys and /sys are read-only, and teardown is
//! "SIGKILL one pid we started, remove one cgroup subtree we made".
//!
//! ```no_run
//! let b = berth_box::SystemdBox::up(berth_box::BoxOptions::default()).unwrap();
//! let out = b.exec(&["busctl", "status", "org.freedesktop.systemd1"]).unwrap();
//! assert!(out.status.success());
//! // dropped (or `b.down()`): killed by pid, cgroups removed
//! ```

pub mod bundle;
pub mod cgroup;
pub mod launch;
mod paths;
mod pidfd;

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use paths::{launcher_path, project_root, target_dir, SYSTEMD};

/// Where boxes keep their state on the host (one directory per box).
pub const STATE_ROOT: &str = "/run/berth-box";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this host cannot run a systemd box: {0}")]
    Unsupported(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("box {name} failed to boot: {message}")]
    Boot { name: String, message: String },
    #[error("box {name} did not reach running within {waited:?}: {detail}")]
    NotReady {
        name: String,
        waited: Duration,
        detail: String,
    },
    #[error("no box named {0} (state in {STATE_ROOT})")]
    NoSuchBox(String),
    #[error("invalid box name {0:?}: use 1-40 characters from [A-Za-z0-9_-]")]
    BadName(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to boot a box.
#[derive(Debug, Clone)]
pub struct BoxOptions {
    /// Box name (hostname inside, cgroup `berth-box-<name>`); unique by default.
    pub name: Option<String>,
    /// Host directories bound at the same path inside (default: the project and
    /// the cargo target dir, so the box runs the binaries just built).
    pub binds: Vec<PathBuf>,
    /// Directories given a fresh tmpfs inside the box (e.g. /var/lib/berth).
    pub tmpfs: Vec<PathBuf>,
    /// Kill the box if the process (thread) that booted it dies. True for tests.
    pub die_with_parent: bool,
    /// How long to wait for `systemctl is-system-running --wait`.
    pub boot_timeout: Duration,
    /// Share the host's network namespace. Off by default: a box has its own
    /// (lo only), so bridges, veths and iptables rules made by what runs
    /// inside never reach the host's.
    pub host_network: bool,
}

impl Default for BoxOptions {
    fn default() -> Self {
        let mut binds = Vec::new();
        if let Some(root) = project_root() {
            binds.push(root);
        }
        if let Some(target) = target_dir() {
            if !binds.iter().any(|b| target.starts_with(b)) {
                binds.push(target);
            }
        }
        BoxOptions {
            name: None,
            binds,
            tmpfs: vec![PathBuf::from("/var/lib/berth")],
            die_with_parent: true,
            boot_timeout: Duration::from_secs(60),
            host_network: false,
        }
    }
}

/// What is recorded about a box on the host, so `berth-box exec/down` from another
/// process can find it, and so teardown only ever signals pids it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxState {
    pub name: String,
    /// Host pid of the launcher (parent of the box's PID 1).
    pub launcher_pid: i32,
    /// Host pid of the box's systemd.
    pub init_pid: i32,
    pub cgroup: PathBuf,
    pub state_dir: PathBuf,
}

/// A running box. Dropping it tears it down (also while a test panics).
#[derive(Debug)]
pub struct SystemdBox {
    state: BoxState,
    launcher: Option<Child>,
    boot_time: Duration,
    torn_down: bool,
}

/// Checks that this host can boot a box; the error says why not.
pub fn host_support() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Unsupported("not running as root".into()));
    }
    for tool in ["/usr/bin/nsenter", paths::SYSTEMD] {
        if !Path::new(tool).exists() {
            return Err(Error::Unsupported(format!(
                "{tool} is missing (apt-get install systemd util-linux)"
            )));
        }
    }
    cgroup::v2_mount()?;
    launcher_path()?;
    Ok(())
}

/// For tests: boots a box, or returns None after printing why the host cannot.
/// With `BERTH_REQUIRE_BOX=1` (set by the test command and CI) a host that cannot
/// boot a box is a failure instead of a skip.
pub fn up_or_skip(test: &str) -> Option<SystemdBox> {
    if let Err(e) = host_support() {
        if std::env::var_os("BERTH_REQUIRE_BOX").is_some_and(|v| v == "1") {
            panic!("{test}: BERTH_REQUIRE_BOX=1 but {e}");
        }
        eprintln!("SKIP {test}: {e}");
        return None;
    }
    Some(SystemdBox::up(BoxOptions::default()).unwrap_or_else(|e| panic!("{test}: {e}")))
}

fn unique_name() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.into()))
    }
}

impl SystemdBox {
    /// Removes what boxes of killed test processes left: a recorded box
    /// whose cgroup holds no process any more is dead; its cgroup and state
    /// directory go. (Its processes died with the test through
    /// PR_SET_PDEATHSIG; only the directories could not clean themselves.)
    pub fn reap_stale() {
        for name in Self::list() {
            let Ok(b) = Self::attach(&name) else { continue };
            if cgroup::pids_in_tree(b.cgroup()).is_empty() {
                let _ = b.down();
            } else {
                b.detach();
            }
        }
    }

    /// Boots a box and waits until its systemd reports `running` (or `degraded`).
    pub fn up(opts: BoxOptions) -> Result<Self> {
        Self::reap_stale();
        let started = Instant::now();
        let name = opts.name.clone().unwrap_or_else(unique_name);
        check_name(&name)?;
        let state_dir = Path::new(STATE_ROOT).join(&name);
        fs::create_dir_all(STATE_ROOT).map_err(|e| Error::io("creating /run/berth-box", e))?;
        fs::create_dir(&state_dir)
            .map_err(|e| Error::io(format!("creating {} (box exists?)", state_dir.display()), e))?;
        let cg = match cgroup::create(&name) {
            Ok(cg) => cg,
            Err(e) => {
                let _ = fs::remove_dir_all(&state_dir);
                return Err(e);
            }
        };
        let mut half = SystemdBox {
            state: BoxState {
                name: name.clone(),
                launcher_pid: 0,
                init_pid: 0,
                cgroup: cg,
                state_dir,
            },
            launcher: None,
            boot_time: Duration::ZERO,
            torn_down: false,
        };
        // From here on, dropping `half` on an error cleans up what exists.
        half.spawn_launcher(&opts)?;
        half.wait_ready(opts.boot_timeout)?;
        half.boot_time = started.elapsed();
        Ok(half)
    }

    fn spawn_launcher(&mut self, opts: &BoxOptions) -> Result<()> {
        let mut cmd = Command::new(launcher_path()?);
        cmd.arg("boot")
            .arg("--name")
            .arg(&self.state.name)
            .arg("--state-dir")
            .arg(&self.state.state_dir)
            .arg("--cgroup")
            .arg(&self.state.cgroup);
        for b in &opts.binds {
            cmd.arg("--bind").arg(b);
        }
        for t in &opts.tmpfs {
            cmd.arg("--tmpfs").arg(t);
        }
        if !opts.die_with_parent {
            cmd.arg("--detach");
        }
        if opts.host_network {
            cmd.arg("--host-network");
        }
        // A detached launcher outlives us: it must not hold our caller's stderr
        // open (a caller reading to EOF would hang). Its errors come on stdout.
        let stderr = if opts.die_with_parent {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("spawning the box launcher", e))?;
        self.state.launcher_pid = child.id() as i32;
        let stdout = child.stdout.take().expect("stdout was piped");
        self.launcher = Some(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| Error::io("reading the launcher's report", e))?;
        let line = line.trim();
        match line.strip_prefix("ok ").and_then(|p| p.parse::<i32>().ok()) {
            Some(pid) => self.state.init_pid = pid,
            None => {
                return Err(Error::Boot {
                    name: self.state.name.clone(),
                    message: line.strip_prefix("err ").unwrap_or(line).to_string(),
                })
            }
        }
        let json = serde_json::to_string_pretty(&self.state).expect("state serializes");
        fs::write(self.state.state_dir.join("state.json"), json)
            .map_err(|e| Error::io("writing state.json", e))
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if !self.init_alive() {
                return Err(Error::Boot {
                    name: self.state.name.clone(),
                    message: format!("systemd exited; see {}", self.console_log().display()),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let out = self.exec_timeout(&["systemctl", "is-system-running", "--wait"], left)?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match state.as_str() {
                "running" | "degraded" => return Ok(()),
                // The manager's private socket is not up yet: ask again.
                _ => {
                    last = format!("{state} {}", String::from_utf8_lossy(&out.stderr).trim());
                    sleep(Duration::from_millis(20));
                }
            }
        }
        Err(Error::NotReady {
            name: self.state.name.clone(),
            waited: timeout,
            detail: last,
        })
    }

    /// Re-attaches to a box booted by another process (`berth-box up`).
    pub fn attach(name: &str) -> Result<Self> {
        check_name(name)?;
        let path = Path::new(STATE_ROOT).join(name).join("state.json");
        let json = fs::read_to_string(&path).map_err(|_| Error::NoSuchBox(name.into()))?;
        let state: BoxState = serde_json::from_str(&json)
            .map_err(|e| Error::io(format!("parsing {}", path.display()), e.into()))?;
        Ok(SystemdBox {
            state,
            launcher: None,
            boot_time: Duration::ZERO,
            torn_down: false,
        })
    }

    /// Names of the boxes recorded on this host.
    pub fn list() -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(STATE_ROOT)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Leaves the box running when this handle is dropped (`berth-box up`).
    pub fn detach(mut self) -> BoxState {
        self.torn_down = true;
        self.launcher = None;
        self.state.clone()
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }
    /// Host pid of the box's systemd.
    pub fn init_pid(&self) -> i32 {
        self.state.init_pid
    }
    /// The box's cgroup on the host (its systemd's cgroup root).
    pub fn cgroup(&self) -> &Path {
        &self.state.cgroup
    }
    pub fn state_dir(&self) -> &Path {
        &self.state.state_dir
    }
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }
    pub fn console_log(&self) -> PathBuf {
        self.state.state_dir.join("console.log")
    }

    fn init_alive(&self) -> bool {
        self.state.init_pid > 0 && cgroup::contains_pid(&self.state.cgroup, self.state.init_pid)
    }

    /// A command that runs inside the box: all of the box's namespaces, its root,
    /// a clean environment, and a cgroup inside the box's tree. The cgroup move is
    /// needed because the box's systemd cannot move a process that sits outside
    /// its cgroup namespace (so `systemd-run --scope` would fail otherwise).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("/usr/bin/nsenter");
        cmd.arg("--target")
            .arg(self.state.init_pid.to_string())
            .args(["--all", "--root", "--wd", "--"])
            .arg(program)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8");
        let procs = self.state.cgroup.join("box-exec");
        let _ = fs::create_dir(&procs);
        let procs = CString::new(
            procs
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("cgroup path has no NUL");
        // SAFETY: only async-signal-safe syscalls (open/write/close) after fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let rc = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if rc != 1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `argv` inside the box and collects its output.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        self.exec_timeout(argv, Duration::from_secs(120))
    }

    /// Runs a shell script inside the box (`sh -c`).
    pub fn sh(&self, script: &str) -> Result<Output> {
        self.exec(&["/bin/sh", "-c", script])
    }

    /// Like `sh` but panics with the output unless the script succeeds; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script).unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(
            out.status.success(),
            "in box {}: `{script}` failed ({}):\nstdout: {}\nstderr: {}",
            self.name(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `argv` inside the box, killing it (by its pid) after `timeout`.
    pub fn exec_timeout(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        let (program, args) = argv.split_first().expect("argv is not empty");
        let mut child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("running {program} in box {}", self.name()), e))?;
        let pid = Pid::from_raw(child.id() as i32);
        let deadline = Instant::now() + timeout;
        // Poll for exit so a hung command cannot hang the test run.
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = kill(pid, Signal::SIGKILL);
                    break;
                }
                Ok(None) => sleep(Duration::from_millis(2)),
                Err(e) => return Err(Error::io("waiting for a box command", e)),
            }
        }
        child
            .wait_with_output()
            .map_err(|e| Error::io("collecting a box command's output", e))
    }

    /// Tears the box down: SIGKILL its PID 1 (the pid namespace dies with it), wait
    /// for the launcher, remove the cgroup subtree and the state directory.
    pub fn down(mut self) -> Result<Duration> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<Duration> {
        if self.torn_down {
            return Ok(Duration::ZERO);
        }
        self.torn_down = true;
        let started = Instant::now();
        // Kill only pids we started, and only if they still are ours (pid reuse).
        // The box's PID 1 first, held by a pidfd: it becomes readable only once
        // PID 1 has reaped every other process of its pid namespace. An empty
        // cgroup is not enough: a killed task leaves its cgroup early in exit,
        // before it is gone (CI once saw a box process alive after the rmdir).
        let init = self.state.init_pid;
        // Opened before the ownership check, so it names the process checked.
        let pidfd = (init > 0).then(|| pidfd::PidFd::open(init)).flatten();
        if init > 0 && cgroup::contains_pid(&self.state.cgroup, init) {
            let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
            if let Some(fd) = pidfd {
                fd.wait_exit(Duration::from_secs(10));
            }
        }
        let launcher = self.state.launcher_pid;
        if launcher > 0 && cgroup::contains_pid(&self.state.cgroup, launcher) {
            let _ = kill(Pid::from_raw(launcher), Signal::SIGKILL);
        }
        if let Some(mut child) = self.launcher.take() {
            let _ = child.wait();
        }
        cgroup::remove_tree(&self.state.cgroup, Duration::from_secs(10))?;
        match fs::remove_dir_all(&self.state.state_dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io(
                    format!("removing {}", self.state.state_dir.display()),
                    e,
                ))
            }
            _ => {}
        }
        Ok(started.elapsed())
    }
}

impl Drop for SystemdBox {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("berth-box: tearing down {}: {e}", self.state.name);
        }
    }
}
