//! berthctl's command line (clap), with podman's names and habits. Every
//! verb rejects options it does not know (clap's error, exit 125 in main):
//! only what follows the image (or `--`) belongs to the container's command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::opts::{CreateOpts, ExecOpts, RunOpts};

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

/// Which containers `ps` lists and how.
#[derive(Args, Debug, Clone, Default)]
pub struct PsOpts {
    /// Show all containers, not only created, running and paused ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print the ids only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// status=, name=, label=KEY[=VALUE], ancestor=IMAGE, id= (repeatable:
    /// the same key ORs, different keys AND).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// json, table, or a Go-style template ('{{.Names}} {{.Status}}').
    #[arg(long)]
    pub format: Option<String>,
    /// Same as --format json (berthctl's older spelling).
    #[arg(long, hide = true)]
    pub json: bool,
    /// Do not truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// podman stats' options.
#[derive(Args, Debug, Clone, Default)]
pub struct StatsOpts {
    /// All containers (default: the running ones).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// One table, then exit.
    #[arg(long)]
    pub no_stream: bool,
    /// json, table, or a template ('{{.Name}} {{.MemUsage}}').
    #[arg(long)]
    pub format: Option<String>,
    /// Same as --no-stream --format json (berthctl's older spelling).
    #[arg(long, hide = true)]
    pub json: bool,
    /// Seconds between refreshes.
    #[arg(short = 'i', long, default_value_t = 5)]
    pub interval: u64,
    pub ids: Vec<String>,
}

/// podman logs' options.
#[derive(Args, Debug, Clone)]
pub struct LogsOpts {
    /// Keep printing new output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<u32>,
    /// Output since a time: RFC 3339, Unix seconds, or a duration (10m, 1h30m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Output before a time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Begin each line with its time (from the journal).
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub id: String,
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
    Ps(PsOpts),
    /// Show containers as JSON, or through a template (--format).
    Inspect {
        /// A template ('{{.State.Pid}}'), or json.
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal (default KILL).
    Kill {
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        /// Every running container.
        #[arg(short = 'a', long, conflicts_with = "ids")]
        all: bool,
        /// Signal every process of the container, not only its init.
        #[arg(long)]
        all_processes: bool,
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
    },
    /// Stop: SIGTERM (or the container's --stop-signal), then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's
        /// --stop-timeout, else 10).
        #[arg(short = 't', long)]
        time: Option<u64>,
        /// Every running or paused container.
        #[arg(short = 'a', long, conflicts_with = "ids")]
        all: bool,
        #[arg(required_unless_present = "all")]
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
    /// Change the resource limits of created, running or paused containers.
    Update(crate::update::UpdateOpts),
    /// Run a command in a running container.
    Exec(ExecOpts),
    /// Print a container's output (from the journal).
    Logs(LogsOpts),
    /// Resource usage, as one table refreshed until ^C.
    Stats(StatsOpts),
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Every container (running ones only with --force).
        #[arg(short = 'a', long, conflicts_with = "ids")]
        all: bool,
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
    },
    /// Wait for containers to stop; print their exit codes.
    Wait {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Rename a container: refused, berth's id is its unit and object path.
    Rename { id: String, new_name: String },
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
    /// Manage containers (prune).
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Copy files between a container and the host: SRC and DEST are a host
    /// path (or - for a tar on stdin/stdout) and CONTAINER:PATH.
    Cp { src: String, dest: String },
    /// Save what a container changed in its image as a new image.
    Commit { id: String, image: String },
    /// Write a tar of a container's filesystem (stdout unless --output).
    Export {
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        id: String,
    },
    /// A container's processes (UID, PID and PPID as the container sees them).
    Top { id: String },
    /// Run a container's health check (as its timer does).
    #[command(subcommand)]
    Healthcheck(HealthcheckCmd),
    /// Manage images (import, pull, ls, inspect, tag, rm, prune, save).
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage networks (create, ls, inspect, rm, prune).
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage named volumes (create, ls, inspect, rm, prune).
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// A container's published ports (podman's `port`).
    Port { id: String },
    /// Disk use and clean-up (df, prune).
    #[command(subcommand)]
    System(SystemCmd),
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
pub enum ContainerCmd {
    /// Remove every stopped container.
    Prune {
        /// Do not ask.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum HealthcheckCmd {
    /// Run the check once: prints healthy/unhealthy/starting; exit 1 if it failed.
    Run { id: String },
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Disk used by images and containers.
    Df {
        /// json, or the table (default).
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove stopped containers, then unused image data.
    Prune {
        /// Do not ask.
        #[arg(short = 'f', long)]
        force: bool,
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

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a bridge network (a free /24 of 10.91.0.0/16 unless --subnet).
    Create {
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        /// An IPv6 subnet too (dual stack).
        #[arg(long)]
        ipv6_subnet: Option<String>,
        /// No route out: containers reach only each other.
        #[arg(long)]
        internal: bool,
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Names only.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show networks as JSON, with their containers.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (-f: their containers first).
    #[command(alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network no container uses.
    Prune {
        /// Do not ask.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a named volume (driver local).
    Create {
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        name: String,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Names only.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show volumes as JSON, with their containers.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their content (-f: their containers first).
    #[command(alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no container uses, with its content.
    Prune {
        /// Do not ask.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    fn run_opts(args: &[&str]) -> RunOpts {
        let all = [&["berthctl", "run"], args].concat();
        match Cli::try_parse_from(all).unwrap().cmd {
            Cmd::Run(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_what_follows_the_image_is_the_command() {
        let o = run_opts(&["--rm", "busybox", "ls", "-l", "--rm"]);
        assert!(o.rm);
        assert_eq!(o.create.image.as_deref(), Some("busybox"));
        assert_eq!(o.create.command, ["ls", "-l", "--rm"]);
        let o = run_opts(&["--bundle", "/b", "sh", "-c", "exit 3"]);
        assert_eq!(o.create.image.as_deref(), Some("sh"));
        assert_eq!(o.create.command, ["-c", "exit 3"]);
        let o = run_opts(&["--bundle", "/b", "--", "-weird"]);
        assert_eq!(o.create.image.as_deref(), Some("-weird"));
    }

    #[test]
    fn an_unknown_option_before_the_image_is_an_error_naming_it() {
        let e = Cli::try_parse_from(["berthctl", "run", "--rm", "-Q", "img", "true"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("'-Q'"), "{e}");
        let e = Cli::try_parse_from(["berthctl", "run", "--detahc", "img"]).unwrap_err();
        assert!(e.to_string().contains("--detach"), "no did-you-mean: {e}");
    }
}
