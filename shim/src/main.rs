//! berth-shim: one small, synchronous process per container. It detaches from
//! whoever started it (berthd, a test), becomes the container's subreaper,
//! creates the container through berth-init as its own child, holds the
//! container's stdio (→ journald), and when the init exits writes the exit
//! record atomically and exits.
//!
//! Protocol with the starter: one line on stdout, then stdout is closed: a
//! `berth_proto::ShimReport` — `{"init_pid":N,"shim_pid":M}` once the
//! container is created (blocked on its exec FIFO), or
//! `{"error":"…","kind":"…"}`. `berth-shim` itself exits 0 (created) or 1.

use std::fs::File;
use std::io::{BufRead, Write};

use berth_proto::{FailureKind, ShimReport};
use clap::Parser;
use nix::unistd::{fork, ForkResult};

mod args;
mod cgroup;
mod exec_server;
mod netns_pool;
mod setup;
mod spares;
mod warmer;

use args::Args;
use setup::fail;

fn main() {
    // berthd's exec server (exec_server.rs): a long-lived shim that forks
    // one per exec instead of berthd starting this binary each time.
    if std::env::args().nth(1).as_deref() == Some(exec_server::FLAG) {
        exec_server::serve();
    }
    let args = Args::parse();
    // Only 0-2 and the fds passed on purpose (3..3+N) are the shim's: an fd
    // its starter let slip (zbus receives D-Bus fds without close-on-exec,
    // so berthd holds a listening socket open-on-exec while it handles the
    // CreateContainer that carried it) would otherwise stay open in the
    // monitor for the container's whole life.
    // SAFETY: close_range with integer arguments, before anything is open.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3 + args.passed_fds(),
            u32::MAX,
            0u32,
        )
    };
    // Detach: the real shim is a child that carries on as an orphan, adopted
    // by PID 1 or the nearest subreaper. This process waits for its report on
    // a pipe, prints it, and exits 0 (created) or 1 — so for the starter,
    // `berth-shim` returning means the container exists, as with `runc create`.
    let (report_r, report_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(&mut std::io::stdout(), &format!("pipe2: {e}")),
    };
    // The shim's cgroup (with --monitor-cgroup): made now, so the shim is
    // born in it (clone3 CLONE_INTO_CGROUP) instead of moving there later,
    // a migration that waits for an RCU grace period (2–17 ms: an exec's
    // shim has no migration of systemd's to ride on).
    let cgroup = match &args.monitor_cgroup {
        Some(parent) => match cgroup::monitor_cgroup_dir(parent, &args.id) {
            Ok(dir) => Some(dir),
            Err(e) => fail(&mut std::io::stdout(), &e),
        },
        None => None,
    };
    // SAFETY: single-threaded here (nothing has started a thread yet); the
    // child runs on with no fork handler of glibc's having run, as after a
    // raw clone: it holds no lock (there was no other thread to hold one).
    let (forked, born_in_cgroup) = match cgroup
        .as_ref()
        .and_then(|(_, d)| unsafe { berth_init::clone_into::fork_into(d) })
    {
        Some(0) => (Ok(ForkResult::Child), true),
        Some(pid) => {
            let child = nix::unistd::Pid::from_raw(pid);
            (Ok(ForkResult::Parent { child }), true)
        }
        // SAFETY: as above.
        None => (unsafe { fork() }, false),
    };
    match forked {
        Ok(ForkResult::Parent { child }) => {
            drop(report_w);
            // One line, not to EOF: the container's init (forked during setup)
            // holds a copy of the pipe until it execs.
            let mut line = String::new();
            let _ = std::io::BufReader::new(File::from(report_r)).read_line(&mut line);
            let created = match ShimReport::parse(&line) {
                Ok(ShimReport::Created { .. }) => true,
                Ok(ShimReport::Failed { .. }) => false,
                Err(e) => {
                    // Died before reporting (nothing to parse), or said what
                    // no report is: the starter hears why, as a failure.
                    let error = match line.is_empty() {
                        true => "the shim died during setup".to_string(),
                        false => e.to_string(),
                    };
                    let kind = FailureKind::Internal;
                    line = ShimReport::Failed { error, kind }.to_line();
                    false
                }
            };
            if !created {
                // Nothing stays of a failed create: the shim (it exits
                // right after its report) and then its cgroup, if it was
                // made for this container (an exec's is its container's).
                let _ = nix::sys::wait::waitpid(child, None);
                if let (Some((dir, _)), None) = (&cgroup, &args.exec_id) {
                    let _ = std::fs::remove_dir(dir);
                }
            }
            let _ = std::io::stdout().write_all(line.as_bytes());
            std::process::exit(if created { 0 } else { 1 });
        }
        Ok(ForkResult::Child) => {}
        Err(e) => fail(&mut std::io::stdout(), &format!("fork: {e}")),
    }
    drop(report_r);
    let monitor_cgroup = match (&args.monitor_cgroup, born_in_cgroup) {
        // Not born there (clone3 refused): moved there once the container
        // exists, riding on its scope's migration (see run).
        (Some(parent), false) => Some(parent.as_path()),
        _ => None,
    };
    drop(cgroup);
    setup::become_shim(
        &args,
        File::from(report_w),
        setup::Reader::Parent,
        monitor_cgroup,
        None,
        None,
    )
}
