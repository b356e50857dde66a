//! berthctl: podman-like verbs over berthd's D-Bus API (io.berth.Berth1).
//! Every command is one or a few calls on the system bus; berthctl never
//! touches /run/berth or /var/lib/berth itself.

mod autoupdate;
mod cli;
mod image;
use berth_client as proxy;
mod session;
mod show;
mod unit;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Cmd};
use proxy::ManagerProxyBlocking;

/// podman's convention: 125 when berthctl (or berthd) itself failed, so a
/// container's own exit codes stay distinguishable.
pub const EXIT_FAILED: u8 = 125;

/// podman's: the container's program is not there (or not executable).
pub const EXIT_NOT_EXECUTABLE: u8 = 127;

/// A command's failure: one line for a person, and berthctl's exit code.
#[derive(Debug)]
pub struct Failed {
    pub msg: String,
    pub code: u8,
}

impl Failed {
    pub fn new(msg: impl Into<String>) -> Failed {
        Failed {
            msg: msg.into(),
            code: EXIT_FAILED,
        }
    }
}

impl From<zbus::Error> for Failed {
    fn from(e: zbus::Error) -> Self {
        let code = match &e {
            zbus::Error::MethodError(name, _, _)
                if name.as_str() == "io.berth.Berth1.Error.NotExecutable" =>
            {
                EXIT_NOT_EXECUTABLE
            }
            _ => EXIT_FAILED,
        };
        Failed {
            msg: proxy::describe(&e),
            code,
        }
    }
}

pub type Result<T> = std::result::Result<T, Failed>;

pub fn connect() -> Result<(zbus::blocking::Connection, ManagerProxyBlocking<'static>)> {
    let conn = zbus::blocking::Connection::system()?;
    let manager = ManagerProxyBlocking::new(&conn)?;
    Ok((conn, manager))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Verbs that relay signals must block them before the first thread
    // exists (zbus starts some): a thread that has them unblocked would take
    // the default action and end berthctl with the container left running.
    if matches!(
        cli.cmd,
        Cmd::Run(_) | Cmd::Start { .. } | Cmd::Exec(_) | Cmd::RunUnit { .. }
    ) {
        let _ = session::relayed_signals().thread_block();
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failed { msg, code }) => {
            eprintln!("berthctl: {msg}");
            ExitCode::from(code)
        }
    }
}

fn each(ids: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut failed = None;
    for id in ids {
        match f(id) {
            Ok(()) => println!("{id}"),
            Err(Failed { msg, code }) => {
                eprintln!("berthctl: {id}: {msg}");
                failed = Some(code);
            }
        }
    }
    Ok(failed.unwrap_or(0))
}

fn run(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "berthctl",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Cmd::Man { dir } => {
            show::man_pages(&dir).map_err(|e| Failed::new(format!("{}: {e}", dir.display())))?;
            Ok(0)
        }
        Cmd::Run(opts) => session::run(&opts),
        Cmd::Create(opts) => {
            let (_, m) = connect()?;
            let id = session::create(&m, &opts)?;
            println!("{id}");
            Ok(0)
        }
        Cmd::Start { attach, ids } => {
            let (_, m) = connect()?;
            if attach {
                let [id] = ids.as_slice() else {
                    return Err(Failed::new("--attach takes exactly one container"));
                };
                return session::start_attached(&m, id, false);
            }
            each(&ids, |id| Ok(m.start_container(id)?))
        }
        Cmd::Ps { all, json } => show::ps(all, json),
        Cmd::Inspect { ids } => show::inspect(&ids),
        Cmd::Kill { signal, all, ids } => {
            let sig = cli::parse_signal(&signal)?;
            let (_, m) = connect()?;
            let who = if all { "all" } else { "init" };
            each(&ids, |id| Ok(m.kill_container(id, who, sig)?))
        }
        Cmd::Stop { time, ids } => {
            let (_, m) = connect()?;
            each(&ids, |id| session::stop(&m, id, time))
        }
        Cmd::Pause { ids } => {
            let (_, m) = connect()?;
            each(&ids, |id| Ok(m.pause_container(id)?))
        }
        Cmd::Unpause { ids } => {
            let (_, m) = connect()?;
            each(&ids, |id| Ok(m.resume_container(id)?))
        }
        Cmd::Exec(opts) => session::exec(&opts),
        Cmd::Logs { follow, tail, id } => show::logs(&id, follow, tail),
        Cmd::Stats { json, ids } => show::stats(&ids, json),
        Cmd::Rm { force, ids } => {
            let (_, m) = connect()?;
            each(&ids, |id| Ok(m.delete_container(id, force)?))
        }
        Cmd::Wait { ids } => {
            let (_, m) = connect()?;
            for id in &ids {
                let (code, _) = session::wait(&m, id)?;
                println!("{code}");
            }
            Ok(0)
        }
        Cmd::Events { json } => show::events(json),
        Cmd::Version => show::version(),
        Cmd::Info { json } => show::info(json),
        Cmd::Image(cmd) => image::run(cmd),
        Cmd::RunUnit { name, config_dir } => unit::run_unit(&name, &config_dir),
        Cmd::AutoUpdate { dry_run } => autoupdate::run(dry_run),
    }
}
