//! Processes exec'd into a running container: each under a shim of its own
//! (forked by the exec server, exec_server.rs, as berth-shim --exec-id
//! would run), its files `exec-ID.process.json`, `exec-ID.shim.json` and
//! `exec-ID.exit.json` in the container's state dir, and an ExecRecord in
//! the store's execs database (store_execs.rs); the last 97–128 are kept, and
//! an exec whose record goes takes its files along.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use berth_proto::{ExitRecord, RecordError, ShimRecord};

use crate::daemon::{now_us, Daemon};
use crate::error::{Error, Result};
use crate::exec_server::QuickExit;
use crate::exits::Exit;
use crate::lifecycle::Verb;
use crate::store::ExecRecord;

/// ExecContainer's options.
#[derive(Debug, Default)]
pub struct ExecRequest {
    /// The exec id to use (default: generated).
    pub id: Option<String>,
    /// Hold the output for a client of exec-ID.attach.sock (AttachExec).
    pub attach: bool,
    /// Give the process a stdin fed by attach clients.
    pub stdin: bool,
    /// The caller's own stdin, stdout, stderr for the process (options
    /// `stdin_fd`, `stdout_fd`, `stderr_fd`): given to it as they are, no
    /// relay through the monitor. One not given is /dev/null (stdin) or the
    /// monitor's pipe to the journal (stdout, stderr).
    pub stdio: [Option<OwnedFd>; 3],
}

/// An exec's process object in its container's state dir (its shim reads it).
fn process_file(exec_id: &str) -> String {
    format!("exec-{exec_id}.process.json")
}

/// Running execs (no exit seen) are capped like the records.
fn max_execs_reached(execs: &BTreeMap<String, ExecRecord>) -> bool {
    execs.values().filter(|e| e.exited_at == 0).count() >= crate::store::MAX_EXEC_RECORDS
}

impl ExecRequest {
    fn has_caller_stdio(&self) -> bool {
        self.stdio.iter().any(Option::is_some)
    }

    /// The caller's fds go to the process itself: nothing for an attach
    /// client to read or feed, and a terminal is its own stdio.
    fn check_stdio(&self, terminal: bool) -> Result<()> {
        if !self.has_caller_stdio() {
            return Ok(());
        }
        if self.attach || self.stdin {
            return Err(Error::InvalidArgument(
                "options stdin_fd/stdout_fd/stderr_fd go not with attach or stdin".into(),
            ));
        }
        if terminal {
            return Err(Error::InvalidArgument(
                "options stdin_fd/stdout_fd/stderr_fd go not with a terminal process \
                 (use attach with AttachExec and ResizeTerminal)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The shim's flags for the fds given, and the fds in the order the
    /// shim finds them (3, 4, … — sockets.rs's pass_to).
    fn shim_stdio(&self) -> Result<(Vec<&'static str>, crate::sockets::ListenFds)> {
        const FLAGS: [&str; 3] = ["--caller-stdin", "--caller-stdout", "--caller-stderr"];
        let mut flags = Vec::new();
        let mut fds = Vec::new();
        for (flag, fd) in FLAGS.into_iter().zip(&self.stdio) {
            if let Some(fd) = fd {
                flags.push(flag);
                fds.push(
                    fd.try_clone()
                        .map_err(|e| Error::Internal(format!("dup of a stdio fd: {e}")))?,
                );
            }
        }
        Ok((flags, crate::sockets::ListenFds::passing(fds)))
    }
}

impl Daemon {
    /// Starts `process_json` (an OCI process object) in the running container
    /// under its own shim; returns the exec id.
    pub async fn exec(&self, id: &str, process_json: &str, req: &ExecRequest) -> Result<String> {
        Ok(self.start_exec(id, process_json, req).await?.0)
    }

    /// [`Self::exec`], and where the exec server's shim started it, where
    /// its exit comes if it ends at once (its report socket, read on).
    pub(crate) async fn start_exec(
        &self,
        id: &str,
        process_json: &str,
        req: &ExecRequest,
    ) -> Result<(String, Option<QuickExit>)> {
        let rec = self.get(id)?;
        Self::step(&rec, Verb::Exec)?;
        // Under the limit (the usual case) nothing is decoded to know it.
        // At it: execs nobody waited for (`berthctl exec -d`) are still
        // running in the store, settled from their exit records before
        // refusing.
        let full = self.store.exec_count(id)? >= crate::store::MAX_EXEC_RECORDS
            && max_execs_reached(&self.settle_exits(id).await?);
        if full {
            return Err(Error::FailedPrecondition(format!(
                "container {id} has {} execs running: wait for some first",
                crate::store::MAX_EXEC_RECORDS
            )));
        }
        // The spec the container was made from: the rewritten copy if any.
        let base = self.exec_bases.get(id, rec.created_at, || {
            let derived = self.bundles_dir.join(id);
            let config_dir = match derived.join("config.json").exists() {
                true => derived,
                false => PathBuf::from(&rec.bundle),
            };
            crate::exec_defaults::container_process(&config_dir)
        });
        let process = crate::exec_defaults::exec_process(process_json, &base)?;
        req.check_stdio(process.terminal().unwrap_or(false))?;
        let json = serde_json::to_vec(&process).map_err(|e| Error::Internal(e.to_string()))?;
        let (exec_id, path) = self.claim_exec_id(id, req.id.as_deref(), &json)?;
        let path_str = path.to_string_lossy().into_owned();
        let args = [
            "--exec-id",
            exec_id.as_str(),
            "--process",
            path_str.as_str(),
        ];
        let mut args = args.to_vec();
        if req.attach {
            args.push("--attach");
        }
        if req.stdin {
            args.push("--stdin");
        }
        let (flags, fds) = req.shim_stdio()?;
        args.extend(flags);
        let given: Vec<_> = req.stdio.iter().flatten().map(|f| f.as_fd()).collect();
        // The record is committed while the shim starts the process (its
        // fsync beside the forks, not after them): KillExec finds the shim
        // by its exec-ID.shim.json, so the record needs nothing of the report.
        let started = ExecRecord {
            started_at: now_us(),
            ..Default::default()
        };
        let record = self.store.add_exec(id, &exec_id, started);
        let shim = self.run_forked_shim(id, &args, &given, &fds);
        // The shim first: its request goes out before the store's write
        // takes a thread (and on a busy host, the CPU) from the pool.
        let started = tokio::join!(shim, record);
        // The files of execs whose records made room go with them: a probe
        // every few seconds would otherwise pile them up for the
        // container's whole life.
        if let Ok(dropped) = &started.1 {
            for old in dropped {
                self.remove_exec_files(id, old);
            }
        }
        match started {
            (Ok((_, quick)), Ok(_)) => Ok((exec_id, quick)),
            (Err(e), _) => {
                self.forget_exec(id, &exec_id).await;
                Err(self.exited_meanwhile(id, e))
            }
            // Not recorded (the store full, the container deleted meanwhile):
            // no process is left running that nothing knows of.
            (Ok(_), Err(e)) => {
                let _ = crate::exec_kill::signal_exec(self, id, &exec_id, libc::SIGKILL);
                Err(e.into())
            }
        }
    }

    /// ExecContainerAndWait: the exec and then its exit, in one call — what
    /// `runc exec` and CRI's ExecSync do, without a second round trip
    /// through the bus for WaitExec. Returns the exec id with the exit.
    pub async fn exec_and_wait(
        &self,
        id: &str,
        process_json: &str,
        req: &ExecRequest,
    ) -> Result<(String, Exit)> {
        // Nobody could attach while the caller waits on this call: the
        // output would be held (and the exit kept) for nobody.
        if req.attach || req.stdin {
            return Err(Error::InvalidArgument(
                "options attach and stdin go not with ExecContainerAndWait \
                 (use ExecContainer, AttachExec and WaitExec)"
                    .into(),
            ));
        }
        let (exec_id, quick) = self.start_exec(id, process_json, req).await?;
        let exit = self.exec_exit(id, &exec_id, quick).await?;
        Ok((exec_id, exit))
    }

    /// The exit of an exec just started: from its shim's report socket when
    /// it came there (a quick exec), else as WaitExec finds it.
    pub(crate) async fn exec_exit(
        &self,
        id: &str,
        exec_id: &str,
        quick: Option<QuickExit>,
    ) -> Result<Exit> {
        let said = match quick {
            Some(q) => q.exit().await,
            None => None,
        };
        match said {
            Some(r) => Ok(self.exec_ended(id, exec_id, r.exit_code, r.exit_signal)),
            None => self.wait_exec(id, exec_id).await,
        }
    }

    /// Records the end of every exec of `id` that has one in its exit
    /// record but not yet in the store (only WaitExec puts it there), so
    /// they count as finished and their records can make room.
    async fn settle_exits(&self, id: &str) -> Result<BTreeMap<String, ExecRecord>> {
        let dir = self.run_dir.join(id);
        Ok(self
            .store
            .update_execs(id, move |exec_id, e| settle(exec_id, e, &dir))
            .await?)
    }

    /// Drops the record and the files of an exec that did not start.
    async fn forget_exec(&self, id: &str, exec_id: &str) {
        let _ = self.store.remove_exec(id, exec_id).await;
        self.remove_exec_files(id, exec_id);
    }

    /// Removes what an exec left in the container's state dir: its process
    /// file, its shim's records and its attach sockets.
    fn remove_exec_files(&self, id: &str, exec_id: &str) {
        let dir = self.run_dir.join(id);
        let (shim, exit) = berth_proto::record_names(Some(exec_id));
        // The attach sockets as berth-monitor's Attach::bind names them.
        let sockets = ["attach.sock", "ctl"].map(|s| format!("exec-{exec_id}.{s}"));
        for name in [process_file(exec_id), shim, exit].iter().chain(&sockets) {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }

    /// Takes exec id `wanted` (or a fresh one) in container `id` by creating
    /// its process file: exclusively, so of two execs asking for one id at
    /// once exactly one gets it. Returns the id and the file.
    pub(crate) fn claim_exec_id(
        &self,
        id: &str,
        wanted: Option<&str>,
        process_json: &[u8],
    ) -> Result<(String, PathBuf)> {
        use std::io::Write;
        // A generated id taken already (a caller chose one like it) is
        // passed over, a few times at most.
        for _ in 0..8 {
            let exec_id = match wanted {
                Some(e) => e.to_string(),
                None => crate::ids::new_exec_id(),
            };
            crate::ids::check_exec(&exec_id)?;
            let path = self.run_dir.join(id).join(process_file(&exec_id));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path);
            match file {
                Ok(mut f) => {
                    f.write_all(process_json)
                        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
                    return Ok((exec_id, path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && wanted.is_none() => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists(format!(
                        "exec {exec_id} exists in {id}"
                    )))
                }
                Err(e) => return Err(Error::Internal(format!("{}: {e}", path.display()))),
            }
        }
        Err(Error::Internal(format!(
            "no free exec id in {id} after 8 tries"
        )))
    }

    /// Waits for an exec'd process: (exit code, signal), from its exit record.
    pub async fn wait_exec(&self, id: &str, exec_id: &str) -> Result<Exit> {
        // Before the id becomes part of a path (AttachExec's check).
        crate::ids::check_exec(exec_id)?;
        self.get(id)?;
        let (shim_json, exit_json) = berth_proto::record_names(Some(exec_id));
        let dir = self.run_dir.join(id);
        // The record is the shim's last act before it exits (written whole,
        // by a rename): once it is there, there is nothing to wait for — a
        // short exec has usually ended before its caller asks.
        let read_exit = || match berth_proto::read::<ExitRecord>(&dir.join(&exit_json)) {
            Ok(r) => Ok(Some(r)),
            Err(RecordError::Missing { .. }) => Ok(None),
            Err(e) => Err(Error::Internal(e.to_string())),
        };
        let record = match read_exit()? {
            Some(r) => r,
            None => {
                let shim: ShimRecord = match berth_proto::read(&dir.join(shim_json)) {
                    Ok(s) => s,
                    Err(RecordError::Missing { .. }) => {
                        return Err(Error::NotFound(format!(
                            "no exec {exec_id} in container {id}"
                        )))
                    }
                    Err(e) => return Err(Error::Internal(e.to_string())),
                };
                // The exec's shim writes the record, then exits: wait for the exit.
                crate::shims::gone(shim.pid, shim.start_time).await;
                read_exit()?.ok_or_else(|| {
                    Error::Internal(format!(
                        "the shim of exec {exec_id} died without an exit record"
                    ))
                })?
            }
        };
        Ok(self.exec_ended(id, exec_id, record.exit_code, record.exit_signal))
    }

    /// An exec's exit, seen: into the store, after the reply.
    fn exec_ended(&self, id: &str, exec_id: &str, code: i32, signal: i32) -> Exit {
        // The store's copy of the exit is bookkeeping (the shim's record is
        // what WaitExec answers from): committed after the reply, not before.
        let (store, id, exec_id) = (self.store.clone(), id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            let _ = store
                .update_exec(&id, &exec_id, move |e| {
                    if e.exited_at == 0 {
                        e.exited_at = now_us();
                        e.exit_code = code;
                        e.exit_signal = signal;
                    }
                })
                .await;
        });
        (code, signal)
    }
}

/// [`Daemon::settle_exits`]' edit of one exec's record: with no exit in
/// the store and an exit record in `dir`, it gets that exit (true: changed).
fn settle(exec_id: &str, e: &mut ExecRecord, dir: &std::path::Path) -> bool {
    if e.exited_at != 0 {
        return false;
    }
    let (_, exit_json) = berth_proto::record_names(Some(exec_id));
    let Ok(x) = berth_proto::read::<ExitRecord>(&dir.join(exit_json)) else {
        return false;
    };
    // 0 would still read as running.
    e.exited_at = match x.exited_at_us {
        0 => now_us(),
        t => t,
    };
    (e.exit_code, e.exit_signal) = (x.exit_code, x.exit_signal);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_execs_take_their_exit_from_the_exit_record() {
        let dir = std::env::temp_dir().join(format!("berthd-settle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ended = ExitRecord {
            pid: 7,
            exit_code: 137,
            exit_signal: 9,
            exited_at_us: 42,
            oom_killed: false,
        };
        let (_, name) = berth_proto::record_names(Some("done"));
        std::fs::write(dir.join(name), serde_json::to_vec(&ended).unwrap()).unwrap();
        let (mut done, mut running) = (ExecRecord::default(), ExecRecord::default());
        assert!(settle("done", &mut done, &dir));
        assert_eq!(
            (done.exited_at, done.exit_code, done.exit_signal),
            (42, 137, 9)
        );
        assert!(!settle("running", &mut running, &dir));
        assert_eq!(running.exited_at, 0, "no exit record: still running");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
