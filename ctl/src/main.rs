//! berthctl: podman-like verbs over berthd's D-Bus API (io.berth.Berth1).
//! Every command is one or a few calls on the system bus; berthctl never
//! touches /run/berth or /var/lib/berth itself.

mod autoupdate;
mod cli;
mod copy;
mod error;
mod format;
mod image;
mod lifecycle;
mod logs;
mod network;
mod opts;
mod prune;
mod ps;
mod record;
mod security_opts;
mod session;
mod show;
mod stats;
mod unit;
mod update;
mod volume;
mod when;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use berth_client::ManagerProxyBlocking;
use cli::{Cli, Cmd, ContainerCmd, HealthcheckCmd, SystemCmd};
pub use error::{Failed, Result, EXIT_FAILED};

/// The system bus and the Manager on it: for verbs that also read objects,
/// other interfaces or signals.
pub fn connect() -> Result<(zbus::blocking::Connection, ManagerProxyBlocking<'static>)> {
    let conn = zbus::blocking::Connection::system()?;
    let manager = ManagerProxyBlocking::new(&conn)?;
    Ok((conn, manager))
}

/// The Manager alone, on berthd's private socket as root (each call skips
/// dbus-daemon), else on the bus: for verbs that only call it.
pub fn manager() -> Result<ManagerProxyBlocking<'static>> {
    let conn = berth_client::manager_connection()?;
    Ok(ManagerProxyBlocking::new(&conn)?)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // podman's 125 for a command line it cannot take (clap's own is 2,
        // which a container could return too); --help and --version are 0.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_FAILED } else { 0 });
        }
    };
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

/// `f` on each id, printing the ids it did; the last failure's code.
pub(crate) fn each(ids: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<u8> {
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

/// The ids given, or with -a those whose status `pick` accepts.
fn ids_or_all(
    m: &ManagerProxyBlocking,
    all: bool,
    ids: Vec<String>,
    pick: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    if !all {
        return Ok(ids);
    }
    Ok(m.list_containers()?
        .into_iter()
        .filter(|(_, status, _)| pick(status))
        .map(|(id, _, _)| id)
        .collect())
}

fn live(status: &str) -> bool {
    matches!(status, "running" | "paused")
}

fn run(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Completion { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "berthctl", &mut out);
            Ok(0)
        }
        Cmd::Man { dir } => {
            show::man_pages(&dir).map_err(|e| Failed::new(format!("{}: {e}", dir.display())))?;
            Ok(0)
        }
        Cmd::Run(opts) => session::run(&opts),
        Cmd::Create(opts) => {
            let m = manager()?;
            let id = session::create(&m, &opts)?;
            println!("{id}");
            Ok(0)
        }
        Cmd::Start { attach, ids } => {
            let m = manager()?;
            if attach {
                let [id] = ids.as_slice() else {
                    return Err(Failed::new("--attach takes exactly one container"));
                };
                return session::start_attached(&m, id, false);
            }
            each(&ids, |id| Ok(m.start_container(id)?))
        }
        Cmd::Ps(opts) => ps::ps(&opts),
        Cmd::Inspect { format, ids } => show::inspect(&ids, format.as_deref()),
        Cmd::Kill {
            signal,
            all,
            all_processes,
            ids,
        } => {
            let sig = opts::parse_signal(&signal)?;
            let m = manager()?;
            let who = if all_processes { "all" } else { "init" };
            let ids = ids_or_all(&m, all, ids, |s| s == "running")?;
            each(&ids, |id| Ok(m.kill_container(id, who, sig)?))
        }
        Cmd::Stop { time, all, ids } => {
            let m = manager()?;
            let ids = ids_or_all(&m, all, ids, live)?;
            each(&ids, |id| {
                let secs = time.or(security_opts::stop_defaults(&m, id).1);
                session::stop(&m, id, secs.unwrap_or(10))
            })
        }
        Cmd::Pause { ids } => {
            let m = manager()?;
            each(&ids, |id| Ok(m.pause_container(id)?))
        }
        Cmd::Unpause { ids } => {
            let m = manager()?;
            each(&ids, |id| Ok(m.resume_container(id)?))
        }
        Cmd::Update(opts) => update::update(&opts),
        Cmd::Exec(opts) => session::exec(&opts),
        Cmd::Logs(opts) => logs::logs(&opts),
        Cmd::Stats(opts) => stats::stats(&opts),
        Cmd::Rm { force, all, ids } => {
            let m = manager()?;
            // -a without -f leaves running containers alone (as podman),
            // rather than failing on each of them.
            let ids = ids_or_all(&m, all, ids, |s| force || !live(s))?;
            each(&ids, |id| Ok(m.delete_container(id, force)?))
        }
        Cmd::Wait { ids } => {
            let m = manager()?;
            let mut failed = 0;
            for id in &ids {
                match session::wait(&m, id) {
                    Ok((code, _)) => println!("{code}"),
                    Err(Failed { msg, code }) => {
                        eprintln!("berthctl: {id}: {msg}");
                        failed = code;
                    }
                }
            }
            Ok(failed)
        }
        Cmd::Rename { id, new_name } => prune::rename(&id, &new_name),
        Cmd::Healthcheck(HealthcheckCmd::Run { id }) => lifecycle::run(&id),
        Cmd::Top { id } => lifecycle::top(&id),
        Cmd::Cp { src, dest } => copy::cp(&src, &dest),
        Cmd::Export { output, id } => copy::export(&id, output.as_deref()),
        Cmd::Commit { id, image } => {
            let m = manager()?;
            let (name, image_id) = m.commit_container(&id, &image)?;
            println!("{image_id}");
            eprintln!("committed {id} as {name}");
            Ok(0)
        }
        Cmd::Events { json } => show::events(json),
        Cmd::Version => show::version(),
        Cmd::Info { json } => show::info(json),
        Cmd::Container(ContainerCmd::Prune { force }) => prune::container_prune(force),
        Cmd::System(SystemCmd::Df { format }) => prune::system_df(format.as_deref()),
        Cmd::System(SystemCmd::Prune { force }) => prune::system_prune(force),
        Cmd::Image(cmd) => image::run(cmd),
        Cmd::Network(cmd) => network::run(cmd),
        Cmd::Volume(cmd) => volume::run(cmd),
        Cmd::Port { id } => network::port(&id),
        Cmd::RunUnit { name, config_dir } => unit::run_unit(&name, &config_dir),
        Cmd::AutoUpdate { dry_run } => autoupdate::run(dry_run),
    }
}
