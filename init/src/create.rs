//! The creator side of `create`: validate, make the state dir and FIFO, clone
//! the init into its namespaces, map ids, place it in its cgroup, run the
//! createRuntime hooks when the init asks, and record it once it is Ready.
//!
//! Any failure undoes everything done so far (init killed by pid, cgroup
//! destroyed, state dir removed): a failed create leaves nothing behind.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::cgroups::{self, CgroupManager};
use crate::child::{self, InitContext};
use crate::container::{self, process_start_time, Record, FIFO};
use crate::error::{validate_id, Error, Result};
use crate::hooks::{self, OciState, Phase};
use crate::namespaces::{clone_fork, Namespaces};
use crate::sync::{self, ToCreator, ToInit};
use crate::{seccomp, spec};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    /// Runtime state root (`--root`): the container's dir is `<root>/<id>`.
    pub root: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    /// Place the container in a systemd transient scope instead of cgroupfs.
    pub systemd_cgroup: bool,
    /// Do not create or join any cgroup (the caller places the process).
    pub no_cgroup: bool,
    pub no_pivot: bool,
    /// Extra fds (3..3+N) the caller passes to the container, as runc's --preserve-fds.
    pub preserve_fds: u32,
    /// stdin, stdout, stderr for the container (the shim's pipes); None: the
    /// caller's own, as runc does. The caller keeps ownership.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// The bundle as the caller already loaded it with [`spec::load`] (the
    /// shim reads process.terminal first): used instead of reading and
    /// validating config.json again. Its dir must be `bundle`'s.
    pub loaded: Option<spec::Bundle>,
    /// With `systemd_cgroup`: the scope is started by our starter (berthd)
    /// on its bus connection instead of one of ours (cgroups::placed).
    pub placer: Option<cgroups::placed::Placer>,
    /// A network namespace made ahead (an fd, which the caller keeps and
    /// closes after create returns), joined in place of a new one where the
    /// spec's plan allows ([`Namespaces::use_pooled_net`]).
    pub pooled_netns: Option<std::os::fd::RawFd>,
}

/// Creates a container and leaves its init blocked on the exec FIFO.
///
/// Must be called from a single-threaded process: the init is forked from it.
pub fn create(opts: &CreateOptions) -> Result<Record> {
    validate_id(&opts.id)?;
    let bundle_dir = if opts.bundle.is_absolute() {
        opts.bundle.clone()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("current directory", e))?
            .join(&opts.bundle)
    };
    let bundle = match &opts.loaded {
        Some(b) if b.dir == bundle_dir => b.clone(),
        _ => spec::load(&bundle_dir)?,
    };
    let process = bundle
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("process: missing".into()))?;
    let terminal = process.terminal().unwrap_or(false);
    match (terminal, &opts.console_socket) {
        (true, None) => {
            return Err(Error::InvalidArgument(
                "process.terminal is true: a --console-socket is required".into(),
            ))
        }
        (false, Some(_)) => {
            return Err(Error::InvalidArgument(
                "--console-socket given but process.terminal is false".into(),
            ))
        }
        _ => {}
    }
    let mut ns = Namespaces::from_spec(&bundle.spec);
    if let Some(fd) = opts.pooled_netns {
        ns.use_pooled_net(fd);
    }
    if ns.new.contains(CloneFlags::CLONE_NEWUSER) {
        let linux = bundle.spec.linux().as_ref();
        let mapped = linux.is_some_and(|l| {
            l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                && l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        });
        if !mapped {
            return Err(Error::InvalidArgument(
                "linux.uidMappings/gidMappings: a new user namespace needs both".into(),
            ));
        }
    }

    // 0700: others may neither list the containers nor reach their FIFOs
    // and records. (A root that already exists keeps its mode: the caller's.)
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&opts.root)
        .map_err(|e| Error::io(format!("creating {}", opts.root.display()), e))?;
    let dir = container::dir(&opts.root, &opts.id);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists(opts.id.clone()))
        }
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    // State dirs hold the FIFO that starts the container: root only (the
    // init opens the FIFO before it changes credentials, see child.rs).
    let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));

    let mut undo = Undo {
        dir: dir.clone(),
        pid: None,
        cgroup: None,
    };
    match create_in(opts, bundle, ns, &mut undo) {
        Ok(rec) => Ok(rec),
        Err(e) => match undo.run() {
            Ok(()) => Err(e),
            Err(cleanup) => Err(Error::WithCleanup {
                message: e.to_string(),
                cleanup,
            }),
        },
    }
}

/// What a failed create must take back.
struct Undo {
    dir: PathBuf,
    pid: Option<i32>,
    cgroup: Option<Box<dyn CgroupManager>>,
}

impl Undo {
    fn run(&mut self) -> std::result::Result<(), String> {
        let mut problems = Vec::new();
        if let Some(pid) = self.pid.take() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(mut cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                problems.push(e.to_string());
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            problems.push(format!("removing {}: {e}", self.dir.display()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn create_in(
    opts: &CreateOptions,
    bundle: spec::Bundle,
    ns: Namespaces,
    undo: &mut Undo,
) -> Result<Record> {
    let fifo = undo.dir.join(FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::io(format!("mkfifo {}", fifo.display()), e))?;
    // Write for all (runc's 0622): the init may have switched to an unprivileged
    // user (or a user namespace) by the time it re-opens the FIFO. Reading it,
    // which is what starts the container, stays root's.
    fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io(format!("chmod {}", fifo.display()), e))?;
    let console_socket: Option<OwnedFd> = match &opts.console_socket {
        Some(path) => Some(
            UnixStream::connect(path)
                .map_err(|e| {
                    Error::io(
                        format!("connecting to console socket {}", path.display()),
                        e,
                    )
                })?
                .into(),
        ),
        None => None,
    };
    let linux = bundle.spec.linux().clone();

    let (creator_end, init_end) = sync::pair().map_err(|e| Error::io("socketpair", e))?;
    // The cgroup namespace is unshared by the init itself once it sits in its
    // cgroup (see child.rs), so that the container's cgroup is its root.
    let flags = ns.new & !CloneFlags::CLONE_NEWCGROUP;
    let pid_join = ns.pid_join().cloned();
    // Before the fork, on the host: the cache lives in the state root.
    let compiled_seccomp = seccomp::compiled_ahead(
        linux.as_ref().and_then(|l| l.seccomp().as_ref()),
        &opts.root,
    );
    let ctx = InitContext {
        id: opts.id.clone(),
        bundle: bundle.clone(),
        namespaces: ns,
        channel: init_end,
        fifo: fifo.clone(),
        console_socket,
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
        stdio: opts.stdio,
        compiled_seccomp,
    };
    let pid = fork_init(flags, pid_join.as_deref(), ctx)?;
    undo.pid = Some(pid);

    if flags.contains(CloneFlags::CLONE_NEWUSER) {
        write_id_maps(pid, linux.as_ref())?;
    }
    let send = |m: &ToInit| {
        creator_end
            .send(m)
            .map_err(|e| Error::io("sync channel", e))
    };
    // The init sets up its mounts while we place it (sync::PlacedGate).
    send(&ToInit::Proceed { pid })?;
    // Only now, after the fork: the systemd driver's bus connection starts
    // threads, and forking a multi-threaded process can leave the child
    // blocked forever on a lock another thread held.
    let placer = opts.placer.as_ref().filter(|_| opts.systemd_cgroup);
    let cgroups_path = linux.as_ref().and_then(|l| l.cgroups_path().clone());
    let mut cgroup = if opts.no_cgroup || placer.is_some() {
        None
    } else {
        Some(cgroups::manager(
            opts.systemd_cgroup,
            &opts.id,
            cgroups_path.as_deref(),
        )?)
    };
    // A placed scope's name is the starter's answer (recorded below).
    let cgroup_path = cgroup.as_ref().map(|c| c.path());
    let pid_start = process_start_time(pid).ok_or_else(|| Error::Init(describe_exit(pid)))?;
    let mut rec = Record {
        id: opts.id.clone(),
        oci_version: bundle.spec.version().clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid,
        pid_start,
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        systemd_cgroup: opts.systemd_cgroup,
        cgroup: cgroup_path,
        annotations: bundle
            .spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        creating: true,
    };
    let resources = linux.as_ref().and_then(|l| l.resources().as_ref());
    if let Some(cg) = cgroup.as_mut() {
        cg.apply(pid, resources)
            .map_err(|e| init_failure(&creator_end, e.into()))?;
    }
    if let Some(placer) = placer {
        let req = cgroups::placed::PlaceRequest {
            id: opts.id.clone(),
            cgroups_path,
            pid,
            resources: resources.cloned(),
        };
        let unit = placer.place(&req).map_err(|(message, kind)| {
            init_failure(&creator_end, Error::Placement { message, kind })
        })?;
        rec.cgroup = Some(unit.clone());
        cgroup = Some(Box::new(cgroups::placed::PlacedScope::new(unit)));
    }
    // Only a cgroup that apply made is ours to remove: a scope name taken by
    // someone else's unit (UnitExists) must survive our failure.
    undo.cgroup = cgroup;
    // Recorded as soon as the cgroup exists, before the hooks run: a creator
    // killed from here on leaves a record that `delete` finds, so the
    // cgroup (and scope) it made are removed with the container.
    rec.save(&opts.root)?;

    let state = OciState {
        oci_version: bundle.spec.version().clone(),
        id: opts.id.clone(),
        status: "creating".into(),
        pid: Some(pid),
        bundle: bundle.dir.display().to_string(),
        annotations: rec.annotations.clone(),
    };
    // An init that failed meanwhile cannot read this: its error is read below.
    let _ = send(&ToInit::Placed);
    loop {
        match creator_end.recv_with_fd::<ToCreator>() {
            Ok(Some((ToCreator::SeccompListener, fd))) => {
                // The init goes on meanwhile: a notified syscall just waits
                // until the agent has the fd.
                let filter = linux.as_ref().and_then(|l| l.seccomp().as_ref());
                let (Some(filter), Some(fd)) = (filter, fd) else {
                    return Err(seccomp::agent::AgentError::NoFd.into());
                };
                seccomp::agent::send(filter, pid, state.clone(), fd)?;
            }
            Ok(Some((ToCreator::Ready, _))) => break,
            Ok(Some((ToCreator::RunHooks, _))) => {
                let hs = bundle.spec.hooks().as_ref();
                for phase in [Phase::Prestart, Phase::CreateRuntime] {
                    if let Err(e) = hooks::run(&hooks::hooks_for(hs, phase), phase, &state) {
                        let _ = send(&ToInit::Abort);
                        return Err(e.into());
                    }
                }
                send(&ToInit::Proceed { pid })?;
            }
            Ok(Some((ToCreator::Error(failure), _))) => return Err(Error::of_child(failure, "")),
            Ok(None) => return Err(Error::Init(describe_exit(pid))),
            Err(e) => return Err(Error::io("sync channel", e)),
        }
    }

    if process_start_time(pid) != Some(pid_start) {
        return Err(Error::Init(
            "the container init exited right after setup".into(),
        ));
    }
    rec.creating = false;
    rec.save(&opts.root)?;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    Ok(rec)
}

/// What to report when placing the init failed: the init's own error if
/// it failed first (its mount setup runs during the placement, and a dead
/// init fails the placement too), else the placement's.
fn init_failure(channel: &sync::Channel, placing: Error) -> Error {
    match channel.try_recv::<ToCreator>() {
        Ok(Some(ToCreator::Error(failure))) => Error::of_child(failure, ""),
        _ => placing,
    }
}

/// Forks the init into its new namespaces. A pid namespace given by path is
/// entered around the clone (it only applies to children), then left again.
fn fork_init(flags: CloneFlags, pid_join: Option<&Path>, ctx: InitContext) -> Result<i32> {
    let restore = match pid_join {
        Some(path) => {
            let own = fs::File::open("/proc/self/ns/pid")
                .map_err(|e| Error::io("opening /proc/self/ns/pid", e))?;
            let target = fs::File::open(path)
                .map_err(|e| Error::io(format!("opening pid namespace {}", path.display()), e))?;
            nix::sched::setns(&target, CloneFlags::CLONE_NEWPID)
                .map_err(|e| Error::io(format!("joining pid namespace {}", path.display()), e))?;
            Some(own)
        }
        None => None,
    };
    // SAFETY: create() is documented to run in a single-threaded process.
    let forked = unsafe { clone_fork(flags) };
    if let Ok(0) = forked {
        child::run(ctx);
    }
    if let Some(own) = restore {
        nix::sched::setns(&own, CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::io("returning to our pid namespace", e))?;
    }
    drop(ctx);
    forked.map_err(|e| Error::io(format!("clone({flags:?})"), e))
}

fn write_id_maps(pid: i32, linux: Option<&oci_spec::runtime::Linux>) -> Result<()> {
    let Some(linux) = linux else { return Ok(()) };
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [
        ("uid_map", linux.uid_mappings()),
        ("gid_map", linux.gid_mappings()),
    ] {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, fmt(maps)).map_err(|e| Error::io(format!("writing {path}"), e))?;
    }
    Ok(())
}

fn describe_exit(pid: i32) -> String {
    match waitpid(Pid::from_raw(pid), None) {
        Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code} during setup"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig} during setup"),
        _ => "went away during setup".into(),
    }
}

/// Written atomically (runc's tools poll for it).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    fs::write(&tmp, pid.to_string())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
