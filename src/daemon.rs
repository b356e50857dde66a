//! berthd's core: the verbs on containers, independent of D-Bus plumbing.
//! The interfaces in api/ call these; they keep LMDB (the source of truth),
//! the shims and the bus objects in step.
//!
//! Every create is intent first: the record is written as "creating" before
//! the shim runs, then completed — so a crash in between is found at the next
//! start and repaired (recovery.rs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::error::{Error, Result};
use crate::exits::{Exit, Exits};
use crate::gates::{GateGuard, Gates};
use crate::options::CreateOptions;
use crate::rollback::{undo_create, Made};
use crate::store::{ContainerRecord, ExecRecord, Store};

pub struct Daemon {
    pub store: Store,
    /// Shim state root: /run/berth/<id>/ (FIFO, shim and exit records).
    pub run_dir: PathBuf,
    pub shim: PathBuf,
    /// Rewritten bundles (CreateContainer options that change the spec).
    pub bundles_dir: PathBuf,
    /// Images and the rootfs of containers made from them (None: the store
    /// could not be opened; containers from bundles still work).
    pub images: Option<Arc<berth_image::ImageStore>>,
    /// Exit notifications, per container someone waits on.
    exits: Exits,
    /// Per container, held while a change of state is made and announced on
    /// the bus, so the signals go out in the order the changes happened.
    gates: Gates,
}

/// Shims creating (a container or an exec) at once; see run_shim. 2 cores
/// are busy with far fewer: the rest only queue.
const MAX_SHIMS_AT_WORK: usize = 32;
static SHIMS_AT_WORK: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_SHIMS_AT_WORK);

/// ExecContainer's options.
#[derive(Debug, Default)]
pub struct ExecRequest {
    /// The exec id to use (default: generated).
    pub id: Option<String>,
    /// Hold the output for a client of exec-ID.attach.sock (AttachExec).
    pub attach: bool,
    /// Give the process a stdin fed by attach clients.
    pub stdin: bool,
}

impl ExecRequest {
    /// Running execs (no exit seen) are capped like the records.
    fn max_execs_reached(&self, rec: &ContainerRecord) -> bool {
        rec.execs.values().filter(|e| e.exited_at == 0).count() >= crate::store::MAX_EXEC_RECORDS
    }
}

/// `s` for an error message: itself, or its start and its length when long
/// (a caller may send megabytes; the reply need not carry them back).
pub fn brief(s: &str) -> std::borrow::Cow<'_, str> {
    const SHOWN: usize = 64;
    if s.len() <= SHOWN {
        return s.into();
    }
    let mut end = SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len()).into()
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Daemon {
    pub fn new(
        store: Store,
        run_dir: PathBuf,
        shim: PathBuf,
        bundles_dir: PathBuf,
        images: Option<Arc<berth_image::ImageStore>>,
    ) -> Arc<Self> {
        // The system bus connection berth-init's systemd driver shares
        // (deletes, kills, pauses), made now rather than at the first
        // delete: one connection for berthd's life, there from the start.
        // A failure here is retried at the first use.
        let _ = berth_init::cgroups::systemd::system_bus();
        Arc::new(Daemon {
            store,
            run_dir,
            shim,
            bundles_dir,
            images,
            exits: Exits::default(),
            gates: Gates::default(),
        })
    }

    pub fn get(&self, id: &str) -> Result<ContainerRecord> {
        crate::ids::check_lookup(id)?;
        self.store
            .get(id)?
            .ok_or_else(|| Error::NotFound(format!("no container {id}")))
    }

    /// The gate of container `id`: Start holds it until its Status=running
    /// is out, an exit while it records and announces the exit, Delete
    /// before it removes the record — so a subscriber sees running, then
    /// ContainerExited, then ContainerRemoved, however fast the process exits.
    pub async fn gate(&self, id: &str) -> GateGuard<'_> {
        self.gates.lock(id).await
    }

    /// Records an exit and wakes the waiters.
    pub fn record_exit(
        &self,
        id: &str,
        code: i32,
        signal: i32,
        reason: &str,
    ) -> Result<ContainerRecord> {
        let rec = self.store.update(id, |r| {
            r.status = "stopped".into();
            r.exit_code = code;
            r.exit_signal = signal;
            r.exited_at = now_us();
            r.exit_reason = reason.into();
        })?;
        self.exits.announce(id, (code, signal));
        Ok(rec)
    }

    /// Create: validate, record intent, run the shim (which creates the
    /// container in its scope and reports), record the result.
    pub async fn create(
        &self,
        id: &str,
        bundle: &str,
        req: CreateOptions,
    ) -> Result<ContainerRecord> {
        crate::ids::check_new(id)?;
        if bundle.len() > libc::PATH_MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "bundle {:?}: longer than PATH_MAX ({} bytes)",
                brief(bundle),
                libc::PATH_MAX
            )));
        }
        let bundle_path = PathBuf::from(bundle);
        match &req.image {
            Some(_) if !bundle.is_empty() => {
                return Err(Error::InvalidArgument(
                    "give a bundle or the image option, not both".into(),
                ))
            }
            Some(image) => crate::images::check_name(image)?,
            None if !bundle_path.is_absolute() => {
                return Err(Error::InvalidArgument(format!(
                    "bundle {:?} must be an absolute path",
                    brief(bundle)
                )))
            }
            // Validate the bundle here so a bad one changes nothing at all.
            None => {
                berth_init::spec::load(&bundle_path)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            }
        }
        let derived = self.bundles_dir.join(id);
        let mut rec = ContainerRecord {
            id: id.into(),
            // From an image: the generated bundle is the container's bundle.
            bundle: match &req.image {
                Some(_) => derived.to_string_lossy().into_owned(),
                None => bundle.into(),
            },
            image: req.image.clone().unwrap_or_default(),
            status: "creating".into(),
            labels: req.labels.clone(),
            unit: format!("berth-{id}.scope"),
            created_at: now_us(),
            ..Default::default()
        };
        self.store.insert_new(&rec)?;
        let result = match (&req.image, req.changes_spec()) {
            (Some(image), _) => {
                let (image, id, derived) = (image.clone(), id.to_string(), derived.clone());
                let req = req.clone();
                crate::images::with_store(&self.images, move |store| {
                    crate::images::prepare(store, &id, &image, &req, &derived)
                })
                .await
            }
            (None, true) => {
                // It fsyncs: off the executor threads.
                let (req, from, to) = (req.clone(), bundle_path.clone(), derived.clone());
                tokio::task::spawn_blocking(move || crate::bundle::write_from(&req, &from, &to))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))
                    .and_then(|written| written.map_err(Error::from))
            }
            (None, false) => Ok(bundle_path.clone()),
        };
        let result = match result {
            Ok(b) => {
                let b = b.to_string_lossy().into_owned();
                let mut shim_args = vec!["--bundle", &b, "--systemd-cgroup", "--shim-scope"];
                if req.stdin {
                    shim_args.push("--stdin");
                }
                if let Some(unit) = &req.log_unit {
                    shim_args.extend(["--log-unit", unit]);
                }
                self.run_shim(id, &shim_args).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((pid, shim_pid)) => {
                rec.status = "created".into();
                rec.pid = pid;
                rec.pid_start = berth_init::container::process_start_time(pid as i32).unwrap_or(0);
                rec.shim_pid = shim_pid;
                rec.shim_start =
                    berth_init::container::process_start_time(shim_pid as i32).unwrap_or(0);
                if let Err(e) = self.store.put(&rec) {
                    // Made but not recorded (the store full, say): undo it
                    // all, as recovery would undo the "creating" record.
                    undo_create(self, id, req.image.is_some(), Made::MaybeContainer).await;
                    return Err(e.into());
                }
                Ok(rec)
            }
            Err(e) => {
                // Nothing half-made stays: the shim undid its own work.
                undo_create(self, id, req.image.is_some(), Made::NoContainer).await;
                Err(e)
            }
        }
    }

    /// Unmounts and removes the image rootfs of container `id` (if any).
    pub async fn release_rootfs(&self, id: &str) {
        let (images, id) = (self.images.clone(), id.to_string());
        let _ = tokio::task::spawn_blocking(move || crate::images::release(&images, &id)).await;
    }

    /// Runs `berth-shim` with `args` and returns (process pid, shim pid) from
    /// its report.
    async fn run_shim(&self, id: &str, args: &[&str]) -> Result<(u32, u32)> {
        // A shim at work holds a system-bus connection, and dbus-daemon
        // allows 256 per uid (max_connections_per_user), shared with every
        // root client: 200 creates at once failed with LimitsExceeded. Past
        // SHIMS_AT_WORK, a shim waits for its turn instead.
        let _turn = SHIMS_AT_WORK
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        // No pre_exec: every fd of berthd is close-on-exec (LMDB's are made so
        // at start, main.rs), so std can posix_spawn the shim.
        let out = tokio::process::Command::new(&self.shim)
            .arg("--root")
            .arg(&self.run_dir)
            .args(["--id", id, "--name", id])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Internal(format!("running {}: {e}", self.shim.display())))?;
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .map_err(|_| Error::Internal(format!("the shim said {line:?}")))?;
        if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
            let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("Internal");
            return Err(Error::of_kind(kind, err.into()));
        }
        let pid = v["init_pid"].as_u64().unwrap_or(0) as u32;
        let shim = v["shim_pid"].as_u64().unwrap_or(0) as u32;
        Ok((pid, shim))
    }

    /// A call on container `id` that failed because its process ended in
    /// the meantime (killed, say, its exit not recorded yet) met a container
    /// in the wrong state: FailedPrecondition, not an internal error.
    fn exited_meanwhile(&self, id: &str, e: Error) -> Error {
        let Error::Internal(msg) = e else {
            return e;
        };
        let gone = self.get(id).map_or(true, |r| {
            r.status == "stopped"
                || berth_init::container::process_start_time(r.pid as i32) != Some(r.pid_start)
        });
        match gone {
            true => Error::FailedPrecondition(format!("container {id} has exited ({msg})")),
            false => Error::Internal(msg),
        }
    }

    pub async fn start(&self, id: &str) -> Result<ContainerRecord> {
        let rec = self.get(id)?;
        if rec.status != "created" {
            return Err(Error::FailedPrecondition(format!(
                "cannot start container {id}: it is {}",
                rec.status
            )));
        }
        // Taken before the exec FIFO opens: an instant exit may be recorded
        // before this call gets back, and must not predate the start.
        let started_at = now_us();
        let (root, cid) = (self.run_dir.clone(), id.to_string());
        tokio::task::spawn_blocking(move || berth_init::container::start(&root, &cid))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| self.exited_meanwhile(id, e.into()))?;
        // The exit may already have been recorded (a container that exits at once).
        Ok(self.store.update(id, |r| {
            r.started_at = started_at;
            if r.status == "created" {
                r.status = "running".into();
            }
        })?)
    }

    pub fn kill(&self, id: &str, who: &str, signal: i32) -> Result<()> {
        let all = match who {
            "init" | "" => false,
            "all" => true,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "who must be \"init\" or \"all\", not {:?}",
                    brief(other)
                )))
            }
        };
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| Error::InvalidArgument(format!("unknown signal {signal}")))?;
        let rec = self.get(id)?;
        if rec.status == "stopped" || rec.status == "creating" {
            return Err(Error::FailedPrecondition(format!(
                "cannot kill container {id}: it is {}",
                rec.status
            )));
        }
        berth_init::container::kill(&self.run_dir, id, sig, all)
            .map_err(|e| self.exited_meanwhile(id, e.into()))
    }

    /// Freezes (`pause`) or thaws the container's scope.
    pub async fn set_paused(&self, id: &str, pause: bool) -> Result<ContainerRecord> {
        let rec = self.get(id)?;
        let (want, now) = if pause {
            ("running", "paused")
        } else {
            ("paused", "running")
        };
        if rec.status != want {
            let op = if pause { "pause" } else { "resume" };
            return Err(Error::FailedPrecondition(format!(
                "cannot {op} container {id}: it is {}",
                rec.status
            )));
        }
        let (root, cid) = (self.run_dir.clone(), id.to_string());
        tokio::task::spawn_blocking(move || {
            if pause {
                berth_init::container::pause(&root, &cid)
            } else {
                berth_init::container::resume(&root, &cid)
            }
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| self.exited_meanwhile(id, e.into()))?;
        Ok(self.store.update(id, |r| r.status = now.into())?)
    }

    /// Starts `process_json` (an OCI process object) in the running container
    /// under its own shim; returns the exec id and the shim's (pid, start).
    pub async fn exec(
        &self,
        id: &str,
        process_json: &str,
        req: &ExecRequest,
    ) -> Result<(String, u32, u64)> {
        let rec = self.get(id)?;
        if rec.status != "running" {
            return Err(Error::FailedPrecondition(format!(
                "cannot exec in container {id}: it is {}",
                rec.status
            )));
        }
        if req.max_execs_reached(&rec) {
            return Err(Error::FailedPrecondition(format!(
                "container {id} has {} execs running: wait for some first",
                rec.execs.len()
            )));
        }
        // The spec the container was made from: the rewritten copy if any.
        let derived = self.bundles_dir.join(id);
        let config_dir = match derived.join("config.json").exists() {
            true => derived,
            false => PathBuf::from(&rec.bundle),
        };
        let process = crate::exec_defaults::exec_process(process_json, &config_dir)?;
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
        let (_, shim) = self
            .run_shim(id, &args)
            .await
            .map_err(|e| self.exited_meanwhile(id, e))?;
        let start = berth_init::container::process_start_time(shim as i32).unwrap_or(0);
        self.store.update(id, |r| {
            r.add_exec(
                &exec_id,
                ExecRecord {
                    shim_pid: shim,
                    shim_start: start,
                    started_at: now_us(),
                    ..Default::default()
                },
            )
        })?;
        Ok((exec_id, shim, start))
    }

    /// Takes exec id `wanted` (or a fresh one) in container `id` by creating
    /// its process file: exclusively, so of two execs asking for one id at
    /// once exactly one gets it. Returns the id and the file.
    fn claim_exec_id(
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
            let path = self
                .run_dir
                .join(id)
                .join(format!("exec-{exec_id}.process.json"));
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
        let exit = self
            .run_dir
            .join(id)
            .join(format!("exec-{exec_id}.exit.json"));
        let started = self
            .run_dir
            .join(id)
            .join(format!("exec-{exec_id}.shim.json"));
        if !started.exists() {
            return Err(Error::NotFound(format!(
                "no exec {exec_id} in container {id}"
            )));
        }
        let shim: serde_json::Value = std::fs::read_to_string(&started)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let pid = shim["pid"].as_u64().unwrap_or(0) as u32;
        let start = shim["start_time"].as_u64().unwrap_or(0);
        // The exec's shim writes the record, then exits: wait for the exit.
        crate::shims::gone(pid, start).await;
        let (code, signal) = crate::shims::read_exit_file(&exit).ok_or_else(|| {
            Error::Internal(format!(
                "the shim of exec {exec_id} died without an exit record"
            ))
        })?;
        let _ = self.store.update(id, |r| {
            if let Some(e) = r.execs.get_mut(exec_id) {
                if e.exited_at == 0 {
                    e.exited_at = now_us();
                    e.exit_code = code;
                    e.exit_signal = signal;
                }
            }
        });
        Ok((code, signal))
    }

    /// Waits for the container to stop; at once if it has.
    pub async fn wait(&self, id: &str) -> Result<Exit> {
        // Unknown ids get no channel at all (anyone may call this).
        self.get(id)?;
        let mut waiter = self.exits.subscribe(id);
        // Read after subscribing: an exit recorded in between is in the
        // record, one recorded later reaches the waiter.
        let rec = self.get(id)?;
        if rec.status == "stopped" {
            return Ok((rec.exit_code, rec.exit_signal));
        }
        match waiter.exit().await {
            Some(exit) => Ok(exit),
            // Deleted meanwhile: NotFound, or its last record.
            None => {
                let rec = self.get(id)?;
                Ok((rec.exit_code, rec.exit_signal))
            }
        }
    }

    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let rec = self.get(id)?;
        // A created container never ran: deleting it is always fine.
        if !force && !matches!(rec.status.as_str(), "stopped" | "created") {
            return Err(Error::FailedPrecondition(format!(
                "cannot delete container {id}: it is {} (use force)",
                rec.status
            )));
        }
        if rec.status != "stopped" {
            let _ = self.kill(id, "all", libc::SIGKILL);
            // The shim records the exit; give it a moment so Wait callers and
            // ContainerExited see the real status before the object goes.
            let _ = tokio::time::timeout(Duration::from_secs(10), self.wait(id)).await;
        }
        // An exit being announced goes out first (ContainerExited before
        // ContainerRemoved, with the record still there to read).
        let _announced = self.gate(id).await;
        // The shims' scopes go with the container's: empty once the shims
        // exited, systemd would collect them only a little later, and the
        // names must be free for a new container of this id at once.
        let shim_scopes: Vec<String> = std::iter::once(None)
            .chain(rec.execs.keys().map(|e| Some(e.as_str())))
            .filter_map(|e| berth_init::cgroups::naming::shim_scope_unit(id, e).ok())
            .collect();
        let (root, cid) = (self.run_dir.clone(), id.to_string());
        let removed = tokio::task::spawn_blocking(move || {
            berth_init::container::delete_with_scopes(&root, &cid, true, &shim_scopes)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        match removed {
            Ok(_) | Err(berth_init::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if !rec.image.is_empty() {
            self.release_rootfs(id).await;
        }
        let _ = std::fs::remove_dir_all(self.bundles_dir.join(id));
        self.store.remove(id)?;
        // The gate stays while anyone holds or awaits it (gates.rs).
        self.exits.forget(id);
        Ok(())
    }
}

#[cfg(test)]
#[path = "daemon_tests.rs"]
mod tests;
