//! berthctl's command line (clap), with podman's names and habits.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{Failed, Result};

#[derive(Parser, Debug)]
#[command(
    name = "berthctl",
    version,
    about = "Run and manage berth containers (talks to berthd over D-Bus)",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// How the process runs: shared by run, create and exec.
#[derive(Args, Debug, Clone, Default)]
pub struct ProcessOpts {
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open and feed it to the process.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Set an environment variable (NAME=VALUE), repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
}

/// What a container is made from and how it runs: shared by run and create.
#[derive(Args, Debug, Clone, Default)]
pub struct CreateOpts {
    /// OCI bundle directory (config.json + rootfs).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Container id (default: a random one).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub process: ProcessOpts,
    /// Memory limit (bytes, or with k, m, g suffix).
    #[arg(short = 'm', long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPU limit in CPUs (1.5 = one and a half).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most tasks (processes + threads) the container may have.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Label KEY=VALUE, repeatable.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// User (uid[:gid] or name[:group]) for a container from an image.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Without --bundle: the IMAGE, then the command (replaces its Cmd);
    /// with --bundle: the command (replaces process.args).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE|CMD"
    )]
    pub rest: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunOpts {
    #[command(flatten)]
    pub create: CreateOpts,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Detach: start and print the id.
    #[arg(short = 'd', long)]
    pub detach: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ExecOpts {
    #[command(flatten)]
    pub process: ProcessOpts,
    /// Run detached: print the exec id and return.
    #[arg(short = 'd', long)]
    pub detach: bool,
    pub id: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create and start a container; without -d, wait for it and return its exit code.
    Run(RunOpts),
    /// Create a container (its process waits for start).
    Create(CreateOpts),
    /// Start created containers.
    Start {
        /// Attach to its output and wait for it.
        #[arg(short = 'a', long)]
        attach: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List containers.
    #[command(alias = "list", alias = "ls")]
    Ps {
        /// Show all containers, not only created, running and paused ones.
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show containers as JSON.
    Inspect {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal (default KILL).
    Kill {
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        /// Signal every process of the container, not only its init.
        #[arg(long)]
        all: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long, default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Freeze every process of containers.
    Pause {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(ExecOpts),
    /// Print a container's output (from the journal).
    Logs {
        /// Keep printing new output until the container stops.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
        id: String,
    },
    /// Resource usage from the containers' cgroups.
    Stats {
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Wait for containers to stop; print their exit codes.
    Wait {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Follow berthd's events (created, started, exited, removed…).
    Events {
        #[arg(long)]
        json: bool,
    },
    /// Client and server versions.
    Version,
    /// What berthd runs on.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Manage images (import, pull, ls, inspect, tag, rm, prune, save).
    #[command(subcommand)]
    Image(ImageCmd),
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
    /// Write man pages into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Pull the images of running containers labelled
    /// io.berth.autoupdate=registry and restart their units when the image
    /// changed; roll back a unit that does not come back active.
    AutoUpdate {
        /// Only report which units have an update pending.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the container described in CONFIG_DIR/NAME.toml in the foreground,
    /// for berth@NAME.service (sd_notify passthrough, stop on SIGTERM).
    #[command(hide = true)]
    RunUnit {
        name: String,
        #[arg(long, default_value = "/etc/berth/containers")]
        config_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Import an OCI layout directory or a docker/podman save tar (.tar, .tar.gz).
    Import {
        path: PathBuf,
        /// Name for the image (when the input holds one).
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull from a registry (linux/amd64 of a multi-arch index).
    Pull {
        reference: String,
        /// Credentials as USER:PASSWORD.
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
        /// Plain HTTP (default: only for loopback registries).
        #[arg(long)]
        plain_http: bool,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show images as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Give an image another name.
    Tag { name: String, new_name: String },
    /// Remove image names (blobs go at the next prune).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove blobs and snapshots nothing uses.
    Prune,
    /// Write images as an OCI layout into DIR (new or empty).
    Save {
        #[arg(short = 'o', long, value_name = "DIR")]
        output: PathBuf,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// "64m" → 67108864. Suffixes k, m, g, t (powers of 1024), optional "b".
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 512k, 64m, 1g)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok((n * (1u64 << shift) as f64) as u64)
}

/// "TERM", "SIGTERM", "term" or "15" → 15.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| Failed::new(format!("unknown signal {n}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Failed::new(format!("unknown signal {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert_eq!(parse_signal("sigkill").unwrap(), 9);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
