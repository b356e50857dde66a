//! berthd: the D-Bus service io.berth.Berth1 that runs OCI containers as
//! transient systemd scopes, each watched by its own berth-shim.

mod api;
mod bundle;
mod commit;
mod config;
mod copy;
mod daemon;
mod daemon_network;
mod daemon_storage;
mod deleting;
mod error;
mod exec_defaults;
mod exec_kill;
mod exec_server;
mod execs;
mod exits;
mod gates;
mod health;
mod health_timer;
mod ids;
mod images;
mod init_calls;
mod lifecycle;
mod machined;
mod monitors;
mod namespaces;
mod network;
mod options;
mod private_socket;
mod recovery;
mod reopen_log;
mod resources;
mod restart;
mod rollback;
mod seccomp_profile;
mod shims;
mod sockets;
mod stats;
mod store;
mod store_execs;
mod store_networks;
mod store_volumes;
mod streams;
mod top;
mod volumes;

use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::prelude::*;

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "berth's container manager (D-Bus service io.berth.Berth1)"
)]
struct Args {
    /// Persistent metadata (LMDB).
    #[arg(long, default_value = "/var/lib/berth")]
    state_dir: PathBuf,
    /// Runtime state of the shims and containers.
    #[arg(long, default_value = "/run/berth")]
    run_dir: PathBuf,
    /// The shim binary (default: berth-shim beside berthd, else the
    /// packaged /usr/libexec/berth/berth-shim).
    #[arg(long)]
    shim: Option<PathBuf>,
    /// Where the networks' CNI conflists are written (generated from
    /// berthd's store, for inspection and CNI tools).
    #[arg(long, default_value = "/etc/berth/networks")]
    network_config_dir: PathBuf,
    /// LMDB map size in MiB.
    #[arg(long, default_value_t = 256)]
    map_size_mib: usize,
    /// berthd's settings (a missing file: the defaults).
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
}

fn init_logging() {
    // Under systemd, stderr is the journal: log natively (structured fields).
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    // Our own events at info and up; zbus traces every message otherwise.
    let ours = tracing_subscriber::filter::Targets::new()
        .with_target("berthd", tracing::Level::INFO)
        .with_default(tracing::Level::WARN);
    match journald {
        Some(layer) => tracing_subscriber::registry()
            .with(layer.with_filter(ours))
            .init(),
        None => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(ours),
            )
            .init(),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging();
    raise_fd_limit();
    // Before tokio starts its threads: see reserve_fd_table.
    reserve_fd_table(FD_TABLE_RESERVE);
    // glibc: buffers over 256 KiB (a D-Bus message of megabytes) come from
    // mmap and go back whole when freed. Fixed, so glibc does not raise the
    // threshold after the first big free and keep later ones in its arenas.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt sets an allocator parameter; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(serve(args)),
        Err(e) => Err(format!("starting the async runtime: {e}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("berthd: {e}");
            eprintln!("berthd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let config = config::load(&args.config).map_err(|e| e.to_string())?;
    let shim = match args.shim {
        Some(p) => p,
        None => {
            let beside = std::env::current_exe()
                .map_err(|e| format!("locating berthd: {e}"))?
                .with_file_name("berth-shim");
            // The .deb puts berthd in /usr/sbin and the shim (with berth-monitor
            // beside it) in /usr/libexec/berth.
            if beside.exists() {
                beside
            } else {
                PathBuf::from("/usr/libexec/berth/berth-shim")
            }
        }
    };
    let store =
        store::Store::open(&args.state_dir, args.map_size_mib << 20).map_err(|e| e.to_string())?;
    // Root only, like the store: the containers' state dirs (exec FIFOs,
    // attach sockets, exec process objects with their environment) are
    // nobody else's business. A looser mode left from before is tightened.
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let run_err = |e: std::io::Error| format!("creating {}: {e}", args.run_dir.display());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.run_dir)
            .map_err(run_err)?;
        std::fs::set_permissions(&args.run_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(run_err)?;
    }
    let bundles = args.state_dir.join("bundles");
    // Images are an addition: without their store, bundles still work.
    let images = match berth_image::ImageStore::open(&args.state_dir.join("images")) {
        Ok(s) => Some(std::sync::Arc::new(s)),
        Err(e) => {
            tracing::error!("the image store is unavailable: {e}");
            None
        }
    };
    // LMDB opens its files without O_CLOEXEC. Everything open now is ours
    // and none may reach a shim (let alone a container): marking them all
    // close-on-exec once lets shims be spawned without a pre_exec hook, i.e.
    // with posix_spawn instead of a fork of berthd.
    init_calls::close_range_cloexec(3).map_err(|e| format!("close_range: {e}"))?;
    let nets = network::Networks::new(network::NetPaths::new(
        &args.network_config_dir,
        &args.state_dir,
        &args.run_dir,
    ));
    let daemon = daemon::Daemon::new(store, args.run_dir, shim, bundles, images, nets);
    daemon.machines.set_enabled(config.register_machines);
    daemon.exec_server.set_netns_pool(config.netns_pool);
    // The connections berth-init's systemd driver shares (placements,
    // deletes, kills, pauses), made now rather than at the first use: one
    // of each for berthd's life, there from the start.
    init_calls::connect_systemd(config.systemd_private_socket);
    let registries = config.registries().map_err(|e| e.to_string())?;
    if !registries.is_empty() {
        tracing::info!("image pulls ask the mirrors of {:?} first", config.registry);
    }
    let _ = daemon.registries.set(registries);

    // Objects are served before the name is owned, so the first calls (bus
    // activation) find them.
    let conn = zbus::connection::Builder::system()
        .and_then(|b| {
            b.serve_at(
                api::MANAGER_PATH,
                api::manager::Manager {
                    daemon: daemon.clone(),
                    bus: None,
                },
            )?
            .serve_at(
                api::MANAGER_PATH,
                api::images::Images {
                    daemon: daemon.clone(),
                },
            )?
            .serve_at(
                api::MANAGER_PATH,
                api::networks::Networks {
                    daemon: daemon.clone(),
                },
            )?
            .serve_at(
                api::MANAGER_PATH,
                api::volumes::Volumes {
                    daemon: daemon.clone(),
                },
            )
        })
        .map_err(|e| format!("system bus: {e}"))?
        // zbus's own executor thread would run our method handlers outside
        // tokio (no reactor for processes, timers, spawn_blocking): drive its
        // executor from a tokio task instead.
        .internal_executor(false)
        .build()
        .await
        .map_err(|e| format!("connecting to the system bus: {e}"))?;
    tokio::spawn({
        let conn = conn.clone();
        async move {
            loop {
                conn.executor().tick().await;
            }
        }
    });
    let report = recovery::recover(&conn, &daemon).await;
    // Before the name: a client that finds berthd on the bus finds this too.
    if let Err(e) = private_socket::serve(&daemon.run_dir, conn.clone(), daemon.clone()).await {
        tracing::warn!("no private socket (clients use the bus): {e}");
    }
    conn.request_name(api::BUS_NAME)
        .await
        .map_err(|e| format!("owning {}: {e}", api::BUS_NAME))?;
    tracing::info!(
        recovered = report.reattached,
        repaired = report.repaired,
        "berthd ready"
    );
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status_line(&daemon)),
        ],
    );

    // STATUS= for `systemctl status`, and WATCHDOG=1 at half the interval when
    // the unit sets WatchdogSec= (a hung berthd is then restarted; containers
    // are unaffected).
    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
    let period = if watchdog {
        std::time::Duration::from_micros(usec / 2)
    } else {
        std::time::Duration::from_secs(5)
    };
    tokio::spawn({
        let daemon = daemon.clone();
        async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let status = status_line(&daemon);
                let mut states = vec![sd_notify::NotifyState::Status(&status)];
                if watchdog {
                    states.push(sd_notify::NotifyState::Watchdog);
                }
                let _ = sd_notify::notify(false, &states);
                // glibc keeps what a burst freed (a 30 MB message, 100,000
                // labels deserialized) in its arenas: give it back.
                #[cfg(target_env = "gnu")]
                // SAFETY: malloc_trim only walks the allocator's free lists.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        }
    });

    // SIGTERM/SIGINT: a clean exit that leaves every container running; the
    // shims own them, the next berthd re-attaches.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        // dbus-daemon restarted or died: our name and objects went with it.
        // Exit non-zero: systemd (Restart=on-failure) starts a new berthd,
        // which connects to the new bus and re-attaches every container
        // (they and their shims never depended on this process).
        _ = conn.closed() => {
            return Err("lost the system bus connection (dbus-daemon restarted or died): \
                        exiting so that systemd restarts berthd; containers keep running"
                .into());
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // Root's clients go to the bus (and its activation) until the next berthd.
    private_socket::remove(&daemon.run_dir);
    tracing::info!("berthd stopping; containers keep running");
    Ok(())
}

/// berthd holds a pidfd per running container (shims.rs) and the attach
/// and log fds it hands out: under the usual soft limit of 1024 (berthd
/// started outside berthd.service, whose LimitNOFILE= is far higher) the
/// watch of about the 1000th container would fail. The soft limit goes up
/// to the hard one, as systemd does for itself.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("raising the open files limit: {e}");
            }
        }
    }
}

/// File descriptors berthd's fd table has room for from the start: a pidfd
/// per running container's shim and a few dozen more, for 2000 containers.
const FD_TABLE_RESERVE: i32 = 4096;

/// Grows the fd table to `n` slots while berthd has one thread. The kernel
/// grows a table shared by threads only after a full RCU grace period, in
/// the thread whose open did not fit: at 1000 containers started, that was
/// seven stalls of 4–9 ms of a tokio worker (an off-CPU trace), each
/// holding up the calls queued on it. A table never shrinks, so growing it
/// once costs its ~33 KiB and nothing later. Best effort: a lower limit
/// reserves less.
fn reserve_fd_table(n: i32) {
    use nix::sys::resource::{getrlimit, Resource};
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    let top = i32::try_from(limit).unwrap_or(i32::MAX).min(n) - 1;
    // Any of stdin/out/err that is open will do to copy.
    for fd in 0..=2 {
        // SAFETY: fcntl on an fd number; F_DUPFD_CLOEXEC takes the lowest
        // free fd at or above `top` (at start: `top` itself), and the copy
        // is closed right away.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top.max(0)) };
        if copy >= 0 {
            // SAFETY: our own copy, used by nothing else.
            unsafe { libc::close(copy) };
            return;
        }
    }
}

/// "3 containers, 2 running" for `systemctl status`.
fn status_line(daemon: &daemon::Daemon) -> String {
    let all = daemon.store.list().unwrap_or_default();
    let running = all
        .iter()
        .filter(|r| r.status == lifecycle::Status::Running)
        .count();
    format!("{} containers, {running} running", all.len())
}
