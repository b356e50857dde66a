//! berthd's core: the verbs on containers, independent of D-Bus plumbing.
//! The interfaces in api/ call these; they keep LMDB (the source of truth),
//! the shims and the bus objects in step.
//!
//! Every create is intent first: the record is written as `Creating` before
//! the shim runs, then completed — so a crash in between is found at the next
//! start and repaired (recovery.rs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exits::{Exit, Exits};
use crate::gates::{GateGuard, Gates};
use crate::init_calls;
use crate::lifecycle::{transition, Status, Step, Verb};
use crate::options::CreateOptions;
use crate::rollback::{undo_create, Made};
use crate::store::{ContainerRecord, Store};

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
    /// Networks and the containers' attachments to them.
    pub nets: crate::network::Networks,
    /// Exit notifications, per container someone waits on.
    exits: Exits,
    /// Per container, held while a change of state is made and announced on
    /// the bus, so the signals go out in the order the changes happened.
    gates: Gates,
    /// systemd-machined registration of running containers.
    pub machines: crate::machined::Machines,
    /// Held while volumes are made or removed (daemon_storage.rs).
    pub volume_lock: tokio::sync::Mutex<()>,
    /// Registry mirrors for pulls (berthd.toml's `[[registry]]`), set once
    /// at start.
    pub registries: std::sync::OnceLock<berth_image::Registries>,
    /// Forks execs' shims (exec_server.rs), started at the first exec.
    pub(crate) exec_server: crate::exec_server::ExecServer,
    /// The containers' own processes, which execs inherit from.
    pub(crate) exec_bases: crate::exec_defaults::Bases,
}

/// Shims creating (a container or an exec) at once; see run_shim. 2 cores
/// are busy with far fewer: the rest only queue.
const MAX_SHIMS_AT_WORK: usize = 32;
static SHIMS_AT_WORK: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

/// The shims' turns: MAX_SHIMS_AT_WORK, or BERTH_SHIMS_AT_WORK from the
/// environment (for measuring; 0 = no limit), read once.
fn shims_at_work() -> &'static tokio::sync::Semaphore {
    SHIMS_AT_WORK.get_or_init(|| {
        let limit = std::env::var("BERTH_SHIMS_AT_WORK")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map(|n| match n {
                0 => tokio::sync::Semaphore::MAX_PERMITS,
                n => n.min(tokio::sync::Semaphore::MAX_PERMITS),
            })
            .unwrap_or(MAX_SHIMS_AT_WORK);
        tokio::sync::Semaphore::new(limit)
    })
}

/// Sub-slices of berth.slice that containers naming no slice are spread
/// over, `berth-<k>.slice` (berth-init's `naming::default_slice`, told
/// through the shim's environment): systemd walks every sibling of a unit's
/// slice at each start and stop, and 1000 containers went in at 42–50/s in
/// 8–64 sub-slices against 31–35/s all in berth.slice (docs/performance.md
/// "1000 running"). BERTH_SLICES in berthd's environment overrides it (1:
/// all in berth.slice).
const CONTAINER_SLICES: u32 = 16;

pub(crate) fn container_slices() -> String {
    std::env::var("BERTH_SLICES")
        .ok()
        .filter(|v| v.parse::<u32>().is_ok())
        .unwrap_or_else(|| CONTAINER_SLICES.to_string())
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
        nets: crate::network::Networks,
    ) -> Arc<Self> {
        Arc::new(Daemon {
            store,
            run_dir,
            shim,
            bundles_dir,
            images,
            nets,
            exits: Exits::default(),
            gates: Gates::default(),
            machines: Default::default(),
            volume_lock: Default::default(),
            registries: Default::default(),
            exec_server: Default::default(),
            exec_bases: Default::default(),
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

    /// The lifecycle's step for `verb` on `rec`; a refusal is the caller's
    /// FailedPrecondition, naming the container.
    pub fn step(rec: &ContainerRecord, verb: Verb) -> Result<Step> {
        transition(rec.status, verb)
            .map_err(|e| Error::FailedPrecondition(format!("container {}: {e}", rec.id)))
    }

    /// Records an exit and wakes the waiters.
    pub async fn record_exit(
        &self,
        id: &str,
        code: i32,
        signal: i32,
        reason: &str,
    ) -> Result<ContainerRecord> {
        let reason = reason.to_string();
        let rec = self
            .store
            .update(id, move |r| {
                r.status = crate::lifecycle::after(r.status, Verb::Exit);
                r.exit_code = code;
                r.exit_signal = signal;
                r.exited_at = now_us();
                r.exit_reason = reason;
            })
            .await?;
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
        // Whether a caller's config.json asks for the default seccomp
        // profile by annotation (then it is rewritten like one with options).
        let wants_default_seccomp = match &req.image {
            Some(_) if !bundle.is_empty() => {
                return Err(Error::InvalidArgument(
                    "give a bundle or the image option, not both".into(),
                ))
            }
            Some(image) => {
                crate::images::check_name(image)?;
                false
            }
            None if !bundle_path.is_absolute() => {
                return Err(Error::InvalidArgument(format!(
                    "bundle {:?} must be an absolute path",
                    brief(bundle)
                )))
            }
            // Validate the bundle here so a bad one changes nothing at all.
            None => init_calls::check_bundle(&bundle_path).await?,
        };
        let derived = self.bundles_dir.join(id);
        let mut rec = ContainerRecord {
            id: id.into(),
            // From an image: the generated bundle is the container's bundle.
            bundle: match &req.image {
                Some(_) => derived.to_string_lossy().into_owned(),
                None => bundle.into(),
            },
            image: req.image.clone().unwrap_or_default(),
            status: Status::Creating,
            labels: req.labels.clone(),
            unit: format!("berth-{id}.scope"),
            created_at: now_us(),
            volumes: req.storage.volume_names(),
            ..Default::default()
        };
        crate::restart::remember(&mut rec, &req);
        let mut req = req;
        req.cgroups_path = req.cri.cgroups_path(id);
        // Read-only, before anything is recorded: a refusal leaves nothing.
        req.ns_spec = crate::namespaces::resolve(&req.ns, &self.store)?;
        // Recorded as creating, with its network attached (if it has one).
        self.record_and_attach(&mut rec, &mut req).await?;
        if let Err(e) = self.plan_storage(&mut req).await {
            undo_create(self, id, req.image.is_some(), Made::NoContainer).await;
            return Err(e);
        }
        let result = match (&req.image, req.changes_spec()) {
            (Some(image), _) => {
                let (image, id, derived) = (image.clone(), id.to_string(), derived.clone());
                let req = req.clone();
                crate::images::with_store(&self.images, move |store| {
                    crate::images::prepare(store, &id, &image, &req, &derived)
                })
                .await
            }
            (None, false) if !wants_default_seccomp => Ok(bundle_path.clone()),
            // Options, or an annotation asking for the default seccomp
            // profile: a rewritten copy. It fsyncs: off the executor threads.
            (None, _) => {
                let (req, from, to) = (req.clone(), bundle_path.clone(), derived.clone());
                tokio::task::spawn_blocking(move || crate::bundle::write_from(&req, &from, &to))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))
                    .and_then(|written| written.map_err(Error::from))
            }
        };
        let result = match result {
            Ok(b) => {
                let b = b.to_string_lossy().into_owned();
                let mut shim_args = vec!["--bundle", &b, "--systemd-cgroup"];
                if req.stdin {
                    shim_args.push("--stdin");
                }
                if let Some(unit) = &req.log_unit {
                    shim_args.extend(["--log-unit", unit]);
                }
                let log_path = req.cri.log_path.as_ref().map(|p| p.to_string_lossy());
                if let Some(p) = &log_path {
                    shim_args.extend(["--log-path", p]);
                }
                let preserve = req.listen.len().to_string();
                if !req.listen.is_empty() {
                    shim_args.extend(["--preserve-fds", &preserve]);
                }
                self.run_shim(id, &shim_args, &req.listen).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(made) => {
                rec.status = crate::lifecycle::after(rec.status, Verb::Made);
                (rec.pid, rec.pid_start) = (made.pid, made.pid_start);
                (rec.shim_pid, rec.shim_start) = (made.shim_pid, made.shim_start);
                if let Err(e) = self.store.put(&rec).await {
                    // Made but not recorded (the store full, say): undo it
                    // all, as recovery would undo the "creating" record.
                    undo_create(self, id, req.image.is_some(), Made::MaybeContainer).await;
                    self.undo_storage(&req).await;
                    return Err(e.into());
                }
                Ok(rec)
            }
            Err(e) => {
                // Nothing half-made stays: the shim undid its own work.
                undo_create(self, id, req.image.is_some(), Made::NoContainer).await;
                self.undo_storage(&req).await;
                Err(e)
            }
        }
    }

    /// Unmounts and removes the image rootfs of container `id` (if any).
    pub async fn release_rootfs(&self, id: &str) {
        let (images, id) = (self.images.clone(), id.to_string());
        let _ = tokio::task::spawn_blocking(move || crate::images::release(&images, &id)).await;
    }

    /// Runs `berth-shim` with `args`, its fds 3, 4, … being `fds` (socket
    /// activation; none for most), and returns (process pid, shim pid) from
    /// its report.
    pub(crate) async fn run_shim(
        &self,
        id: &str,
        args: &[&str],
        fds: &crate::sockets::ListenFds,
    ) -> Result<crate::shims::Processes> {
        // Past SHIMS_AT_WORK, a shim waits for its turn: more at once only
        // contend for the cores and systemd's one thread (measured slower,
        // docs/operations.md "Limits at scale"). A shim run as a binary
        // also holds a system-bus connection meanwhile (dbus-daemon allows
        // 256 per uid: 200 creates at once once failed with LimitsExceeded);
        // a forked one holds none (berthd starts its scope).
        let _turn = shims_at_work()
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        // Forked by the exec server (src/exec_server.rs): no 7.5 MB binary
        // started per create (ld.so, relocation: ~1 ms of CPU). Socket
        // activation's fds go the old way (the server takes stdio only).
        if fds.is_empty() {
            let (processes, _) = self.run_forked_shim(id, args, &[], fds).await?;
            return Ok(processes);
        }
        self.spawn_shim(id, args, fds).await
    }

    /// Runs `berth-shim` itself with `args` (see run_shim).
    pub(crate) async fn spawn_shim(
        &self,
        id: &str,
        args: &[&str],
        fds: &crate::sockets::ListenFds,
    ) -> Result<crate::shims::Processes> {
        // No pre_exec: every fd of berthd is close-on-exec (LMDB's are made so
        // at start, main.rs), so std can posix_spawn the shim — unless fds
        // are passed, which takes a dup2 in the child (sockets.rs).
        let monitors = crate::monitors::ensure(&self.monitor()).await?;
        let mut cmd = tokio::process::Command::new(&self.shim);
        cmd.arg("--monitor-cgroup")
            .arg(monitors)
            .arg("--root")
            .arg(&self.run_dir)
            .args(["--id", id, "--name", id])
            .args(args)
            .env("BERTH_SLICES", container_slices())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let spawn_err = |e| Error::Internal(format!("running {}: {e}", self.shim.display()));
        let _copies = fds.pass_to(&mut cmd).map_err(spawn_err)?;
        let out = cmd.output().await.map_err(spawn_err)?;
        let line = String::from_utf8_lossy(&out.stdout);
        crate::shims::Processes::from_report(&line)
    }

    /// berth-monitor, installed beside berth-shim (which execs into it).
    pub(crate) fn monitor(&self) -> PathBuf {
        self.shim.with_file_name("berth-monitor")
    }

    /// A call on container `id` that failed because its process ended in
    /// the meantime (killed, say, its exit not recorded yet) met a container
    /// in the wrong state: FailedPrecondition, not an internal error.
    pub(crate) fn exited_meanwhile(&self, id: &str, e: Error) -> Error {
        let Error::Internal(msg) = e else {
            return e;
        };
        let gone = self.get(id).map_or(true, |r| {
            r.status == Status::Stopped
                || init_calls::process_start_time(r.pid) != Some(r.pid_start)
        });
        match gone {
            true => Error::FailedPrecondition(format!("container {id} has exited ({msg})")),
            false => Error::Internal(msg),
        }
    }

    pub async fn start(&self, id: &str) -> Result<ContainerRecord> {
        Self::step(&self.get(id)?, Verb::Start)?;
        // Taken before the exec FIFO opens: an instant exit may be recorded
        // before this call gets back, and must not predate the start.
        let started_at = now_us();
        init_calls::start(&self.run_dir, id)
            .await
            .map_err(|e| self.exited_meanwhile(id, e))?;
        // The exit may already have been recorded (a container that exits at once).
        Ok(self
            .store
            .update(id, move |r| {
                r.started_at = started_at;
                r.status = crate::lifecycle::after(r.status, Verb::Start);
            })
            .await?)
    }

    pub async fn kill(&self, id: &str, who: &str, signal: i32) -> Result<()> {
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
        Self::step(&self.get(id)?, Verb::Kill)?;
        init_calls::kill(&self.run_dir, id, sig, all)
            .await
            .map_err(|e| self.exited_meanwhile(id, e))
    }

    /// Freezes (`pause`) or thaws the container's scope.
    pub async fn set_paused(&self, id: &str, pause: bool) -> Result<ContainerRecord> {
        let verb = if pause { Verb::Pause } else { Verb::Resume };
        Self::step(&self.get(id)?, verb)?;
        init_calls::set_paused(&self.run_dir, id, pause)
            .await
            .map_err(|e| self.exited_meanwhile(id, e))?;
        // An exit recorded meanwhile stays: the table refuses to leave Stopped.
        Ok(self
            .store
            .update(id, move |r| {
                r.status = crate::lifecycle::after(r.status, verb)
            })
            .await?)
    }

    /// Waits for the container to stop; at once if it has.
    pub async fn wait(&self, id: &str) -> Result<Exit> {
        // Unknown ids get no channel at all (anyone may call this).
        self.get(id)?;
        let mut waiter = self.exits.subscribe(id);
        // Read after subscribing: an exit recorded in between is in the
        // record, one recorded later reaches the waiter.
        let rec = self.get(id)?;
        if rec.status == Status::Stopped {
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
        if let Step::Remove { kill_first: true } = Self::step(&rec, Verb::Delete { force })? {
            let _ = self.kill(id, "all", libc::SIGKILL).await;
            // The shim records the exit; give it a moment so Wait callers and
            // ContainerExited see the real status before the object goes.
            let _ = tokio::time::timeout(Duration::from_secs(10), self.wait(id)).await;
        }
        // An exit being announced goes out first (ContainerExited before
        // ContainerRemoved, with the record still there to read).
        let _announced = self.gate(id).await;
        // Read again under the gate: a delete running at the same time may
        // have removed this container already, and a create may have made
        // a new one under the same id since — that one is not ours to undo.
        let rec = match self.get(id) {
            Ok(now) if now.created_at == rec.created_at => now,
            Ok(_) => {
                return Err(Error::NotFound(format!(
                    "container {id}: deleted meanwhile"
                )))
            }
            Err(e) => return Err(e),
        };
        Self::step(&rec, Verb::Delete { force })?;
        // Killed from here on, the next berthd finishes it (deleting.rs).
        crate::deleting::mark(&self.run_dir, id);
        let done = self.tear_down(id, &rec).await;
        crate::deleting::unmark(&self.run_dir, id);
        done
    }

    /// Delete's work once it may go ahead: the scope and state, the
    /// monitors' sub-cgroup, the rootfs, the network, the bundle, and the
    /// record last.
    async fn tear_down(&self, id: &str, rec: &ContainerRecord) -> Result<()> {
        // The monitors' sub-cgroup goes with the container's scope (and
        // the shims' own scopes of a container made before there was one
        // for all monitors: monitors.rs).
        let execs = self.store.execs(id)?;
        let shim_scopes = crate::monitors::legacy_scopes(id, execs.keys());
        init_calls::delete(&self.run_dir, id, shim_scopes).await?;
        // An exec's spare shim (berth-shim's spares.rs) goes as the init
        // does, a moment behind it: worth a short wait, so the delete's
        // return finds nothing left.
        crate::monitors::release_within(id, std::time::Duration::from_millis(20)).await;
        if !rec.image.is_empty() {
            self.release_rootfs(id).await;
        }
        self.release_network(id).await;
        crate::rollback::remove_bundle(&self.bundles_dir, id).await;
        self.exec_bases.forget(id);
        self.store.remove(id).await?;
        // The gate stays while anyone holds or awaits it (gates.rs).
        self.exits.forget(id);
        Ok(())
    }
}

#[cfg(test)]
#[path = "daemon_tests.rs"]
mod tests;
