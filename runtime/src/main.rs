//! `berth-runtime`: the OCI runtime command line (runc's verbs, flags, state
//! JSON and exit codes) over the berth-init library. Thin: each verb parses
//! its arguments and calls the library; see commands.rs.

mod commands;
mod log;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    version,
    about = "berth's OCI runtime (runc-compatible command line)"
)]
pub struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    pub root: PathBuf,
    /// Write errors to this file (as well as stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    /// Place containers in systemd transient scopes instead of cgroupfs.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    pub id: String,
    /// Path to the bundle (the directory holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container init's pid here.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (roots on initramfs).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (berth never creates a session keyring).
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container: set up, then wait on the exec FIFO for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init, or --all processes.
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container (--force kills a running one first).
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// Create and start; without --detach, wait for it and exit with its status.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits (no delete).
        #[arg(long)]
        keep: bool,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the containers under --root.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the processes of a container (pids, or JSON with --format json).
    Ps {
        id: String,
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Write a default config.json into the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for unprivileged use (user namespace, mapped to the caller).
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports (OCI features JSON).
    Features,
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// Change the resource limits of a running container.
    Update {
        id: String,
        /// linux.resources JSON ("-" for stdin).
        #[arg(short, long)]
        resources: Option<PathBuf>,
        /// Memory limit in bytes (-1 for unlimited).
        #[arg(long, allow_negative_numbers = true)]
        memory: Option<i64>,
        /// Maximum number of tasks (-1 for unlimited).
        #[arg(long = "pids-limit", allow_negative_numbers = true)]
        pids_limit: Option<i64>,
        /// CPU shares (relative weight).
        #[arg(long = "cpu-shares")]
        cpu_shares: Option<u64>,
        /// CPU CFS quota in microseconds per period.
        #[arg(long = "cpu-quota", allow_negative_numbers = true)]
        cpu_quota: Option<i64>,
        /// CPU CFS period in microseconds.
        #[arg(long = "cpu-period")]
        cpu_period: Option<u64>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    pub id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
    /// A process.json (OCI process object) describing what to run.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a terminal (needs --console-socket).
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short, long)]
    pub detach: bool,
    /// Extra environment (NAME=value), repeatable.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Extra capability, repeatable.
    #[arg(long = "cap")]
    pub caps: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec even if the container is paused (the process starts frozen).
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logger = log::Logger::new(cli.log.clone(), &cli.log_format);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            logger.error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
