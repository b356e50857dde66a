//! `berth-box`: boot, use and tear down systemd boxes from the shell.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use berth_box::launch::{self, LaunchSpec};
use berth_box::{BoxOptions, SystemdBox};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-box",
    version,
    about = "A real systemd in fresh namespaces, for berth's tests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct BootArgs {
    /// Box name (hostname inside; cgroup berth-box-NAME).
    #[arg(long)]
    name: Option<String>,
    /// Extra host directory to bind at the same path inside (repeatable).
    #[arg(long = "bind")]
    binds: Vec<PathBuf>,
    /// Extra directory to give a fresh tmpfs inside (repeatable).
    #[arg(long = "tmpfs")]
    tmpfs: Vec<PathBuf>,
    /// Seconds to wait for the box's systemd to be running.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Share the host's network namespace (default: the box gets its own,
    /// with only lo, so nothing inside can touch the host's network).
    #[arg(long)]
    host_network: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot a box that keeps running after this command returns.
    Up(BootArgs),
    /// Run a command inside a box; exits with its status.
    Exec {
        name: String,
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Interactive shell inside a box.
    Shell { name: String },
    /// Tear a box down: kill its PID 1 by pid, remove its cgroups and state.
    Down { name: String },
    /// List the boxes recorded on this host.
    List,
    /// Boot a box, run one command inside, tear the box down; exits with its status.
    Run {
        #[command(flatten)]
        boot: BootArgs,
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Internal: the launcher started by the harness.
    #[command(hide = true)]
    Boot {
        #[arg(long)]
        name: String,
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        cgroup: PathBuf,
        #[arg(long = "bind")]
        binds: Vec<PathBuf>,
        #[arg(long = "tmpfs")]
        tmpfs: Vec<PathBuf>,
        #[arg(long)]
        detach: bool,
        #[arg(long)]
        host_network: bool,
    },
}

fn options(args: &BootArgs, die_with_parent: bool) -> BoxOptions {
    let mut opts = BoxOptions {
        name: args.name.clone(),
        die_with_parent,
        boot_timeout: Duration::from_secs(args.timeout),
        host_network: args.host_network,
        ..BoxOptions::default()
    };
    opts.binds.extend(args.binds.iter().cloned());
    opts.tmpfs.extend(args.tmpfs.iter().cloned());
    opts
}

fn run_inside(b: &SystemdBox, argv: &[String]) -> anyhow::Result<ExitCode> {
    let status = b
        .command(&argv[0])
        .args(&argv[1..])
        .env(
            "TERM",
            std::env::var("TERM").unwrap_or_else(|_| "dumb".into()),
        )
        .status()?;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-box: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Boot {
            name,
            state_dir,
            cgroup,
            binds,
            tmpfs,
            detach,
            host_network,
        } => launch::run(&LaunchSpec {
            name,
            state_dir,
            cgroup,
            binds,
            tmpfs,
            die_with_parent: !detach,
            own_netns: !host_network,
            systemd: PathBuf::from(berth_box::SYSTEMD),
        }),
        Cmd::Up(args) => {
            let b = SystemdBox::up(options(&args, false))?;
            println!(
                "box {} up: systemd pid {} (host), cgroup {}, booted in {} ms",
                b.name(),
                b.init_pid(),
                b.cgroup().display(),
                b.boot_time().as_millis()
            );
            b.detach();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { name, argv } => {
            let b = SystemdBox::attach(&name)?;
            let code = run_inside(&b, &argv);
            b.detach();
            code
        }
        Cmd::Shell { name } => {
            let b = SystemdBox::attach(&name)?;
            let code = run_inside(&b, &["/bin/bash".into(), "-l".into()]);
            b.detach();
            code
        }
        Cmd::Down { name } => {
            let took = SystemdBox::attach(&name)?.down()?;
            println!("box {name} down in {} ms", took.as_millis());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List => {
            for name in SystemdBox::list() {
                println!("{name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { boot, argv } => {
            let b = SystemdBox::up(options(&boot, true))?;
            eprintln!(
                "berth-box: box {} booted in {} ms",
                b.name(),
                b.boot_time().as_millis()
            );
            let code = run_inside(&b, &argv);
            b.down()?;
            code
        }
    }
}
