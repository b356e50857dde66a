//! berth-shim's command line.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "berth-shim", version, about = "berth's per-container shim")]
pub struct Args {
    /// Container id.
    #[arg(long)]
    pub id: String,
    /// Bundle directory (config.json + rootfs). Required unless --exec-id.
    #[arg(long, required_unless_present = "exec_id")]
    pub bundle: Option<PathBuf>,
    /// Run a new process in the (running) container ID instead of creating
    /// it: one shim per exec'd process, records named after this id.
    #[arg(long, requires = "process")]
    pub exec_id: Option<String>,
    /// The exec'd process: an OCI process object (process.json).
    #[arg(long)]
    pub process: Option<PathBuf>,
    /// State root: the container's state dir is ROOT/ID.
    #[arg(long, default_value = "/run/berth")]
    pub root: PathBuf,
    /// Name for the logs (CONTAINER_NAME); defaults to the id.
    #[arg(long)]
    pub name: Option<String>,
    /// Put the container in a systemd scope (berth-ID.scope in berth.slice).
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Put the shim itself in its own scope (berth-shim-ID.scope), out of its
    /// starter's cgroup (so `systemctl restart berthd` cannot kill it).
    #[arg(long)]
    pub shim_scope: bool,
    /// Put the shim in sub-cgroup ID of this delegated cgroup (berthd's
    /// berthd-monitors.scope), made by mkdir: born there (clone3
    /// CLONE_INTO_CGROUP), else moved by writing cgroup.procs — no systemd
    /// call, no unit of its own.
    #[arg(long, conflicts_with = "shim_scope")]
    pub monitor_cgroup: Option<PathBuf>,
    /// Give the container a stdin pipe fed by attach.sock clients (else
    /// /dev/null, so a process reading stdin sees EOF at once).
    #[arg(long)]
    pub stdin: bool,
    /// For an exec: bind exec-ID.attach.sock (and exec-ID.ctl), keep the
    /// first 64 KiB of output for the first client and wait up to 30 s after
    /// the exit for it — the process runs before anyone can attach.
    #[arg(long, requires = "exec_id")]
    pub attach: bool,
    /// For an exec: fd 3 (then 4, 5 — in this order, for the flags given)
    /// is the caller's stdin for the process, no pipe from attach clients
    /// (berthd's ExecContainer option stdin_fd).
    #[arg(long, requires = "exec_id", conflicts_with_all = ["attach", "stdin"])]
    pub caller_stdin: bool,
    /// The caller's stdout for the process, not the monitor's pipe.
    #[arg(long, requires = "exec_id", conflicts_with = "attach")]
    pub caller_stdout: bool,
    /// The caller's stderr for the process, not the monitor's pipe.
    #[arg(long, requires = "exec_id", conflicts_with = "attach")]
    pub caller_stderr: bool,
    /// Also file the logs under this systemd unit (`journalctl -u UNIT`).
    #[arg(long)]
    pub log_unit: Option<String>,
    /// Also write the output to this CRI-format log file (berth-cri).
    #[arg(long, conflicts_with = "exec_id")]
    pub log_path: Option<PathBuf>,
    /// Fds 3..3+N (socket activation's listening sockets, from berthd) go
    /// to the container's process, as runc's --preserve-fds; the shim itself
    /// closes them once the container holds them.
    #[arg(long, default_value_t = 0, conflicts_with = "exec_id")]
    pub preserve_fds: u32,
    /// With --systemd-cgroup: the starter (berthd, through its exec
    /// server) starts the container's scope when asked on the report
    /// socket, instead of this shim opening a bus connection for it.
    #[arg(long, requires = "systemd_cgroup", conflicts_with = "exec_id")]
    pub place_via_starter: bool,
    /// journald's native socket.
    #[arg(long, default_value = "/run/systemd/journal/socket")]
    pub journal_socket: PathBuf,
}

impl Args {
    /// The fds berthd passed from 3 on: socket activation's or an exec's
    /// caller stdio (never both: --preserve-fds conflicts with --exec-id).
    pub fn passed_fds(&self) -> u32 {
        let caller = [self.caller_stdin, self.caller_stdout, self.caller_stderr];
        self.preserve_fds + caller.iter().filter(|b| **b).count() as u32
    }

    /// The caller's stdio fds, [stdin, stdout, stderr], at 3, 4, … in order.
    pub fn caller_stdio(&self) -> [Option<OwnedFd>; 3] {
        let mut next = 3;
        [self.caller_stdin, self.caller_stdout, self.caller_stderr].map(|given| {
            given.then(|| {
                // SAFETY: berthd passed these fds (3..3+N, kept open by
                // main's close_range); each is taken once, here.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(next) };
                next += 1;
                fd
            })
        })
    }
}
