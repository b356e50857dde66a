//! The launcher: runs as `berth-box boot …` in a fresh, single-threaded process
//! (so fork/unshare are safe), moves itself into the box cgroup, unshares the
//! namespaces and forks the process that becomes the box's PID 1 (systemd).
//!
//! Protocol with the harness: the launcher prints one line on stdout, either
//! `ok <host pid of the box's systemd>` or `err <message>`, then stays as the
//! parent of that PID 1 until it dies, and exits with its status.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, execve, fork, pivot_root, sethostname, setsid, ForkResult};

/// The default target the box boots: only the bus and the journal (plus what
/// their sockets pull in), so a boot takes about a second.
pub const BOX_TARGET: &str = "berth-box.target";
const BOX_TARGET_UNIT: &str = "[Unit]\n\
Description=berth test box\n\
Wants=dbus.socket systemd-journald.socket\n\
AllowIsolate=yes\n";

/// Everything the launcher needs, passed on its command line by the harness.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub name: String,
    pub state_dir: PathBuf,
    pub cgroup: PathBuf,
    /// Host directories bound at the same path inside the box (project, target dir).
    pub binds: Vec<PathBuf>,
    /// Directories that get a fresh tmpfs inside the box (writable layers, see
    /// environment.md: overlay upper dirs cannot sit on the box's overlay root).
    pub tmpfs: Vec<PathBuf>,
    /// Kill the box when the launcher's parent dies (tests), or not (`berth-box up`).
    pub die_with_parent: bool,
    /// A network namespace of the box's own (its /proc/sys/net writable).
    pub own_netns: bool,
    pub systemd: PathBuf,
}

/// Entry point of `berth-box boot`. Never returns.
pub fn run(spec: &LaunchSpec) -> ! {
    let mut stdout = std::io::stdout();
    match launch(spec) {
        Ok(pid) => {
            let _ = writeln!(stdout, "ok {pid}");
            let _ = stdout.flush();
            // Close our end so a harness reading to EOF is not kept waiting on us.
            let _ = nix::unistd::close(1);
            std::process::exit(wait_for(pid));
        }
        Err(msg) => {
            let _ = writeln!(stdout, "err {msg}");
            std::process::exit(1);
        }
    }
}

fn wait_for(pid: nix::unistd::Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

fn launch(spec: &LaunchSpec) -> Result<nix::unistd::Pid, String> {
    if spec.die_with_parent {
        set_pdeathsig()?;
    } else {
        // Detached boxes (`berth-box up`) must not die with the terminal.
        let _ = setsid();
    }
    fs::write(spec.cgroup.join("cgroup.procs"), "0")
        .map_err(|e| format!("joining cgroup {}: {e}", spec.cgroup.display()))?;
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if spec.own_netns {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}"))?;

    // The child reports a setup failure on this pipe; a successful execve closes
    // it (O_CLOEXEC), so EOF with nothing read means systemd is running.
    let (err_read, err_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    // SAFETY: the launcher is single-threaded (a fresh process running only this).
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(err_read);
            let err = boot_pid1(spec).unwrap_err();
            let mut w = File::from(err_write);
            let _ = w.write_all(err.as_bytes());
            std::process::exit(1);
        }
        ForkResult::Parent { child } => {
            drop(err_write);
            // Leave the box's root cgroup to its systemd: a process there would
            // block enabling controllers below it (no internal processes in v2).
            let leaf = spec.cgroup.join("box-launcher");
            let _ = fs::create_dir(&leaf);
            let _ = fs::write(leaf.join("cgroup.procs"), "0");
            let mut msg = String::new();
            let _ = File::from(err_read).read_to_string(&mut msg);
            if msg.is_empty() {
                Ok(child)
            } else {
                let _ = wait_for(child);
                Err(msg)
            }
        }
    }
}

fn set_pdeathsig() -> Result<(), String> {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if rc != 0 {
        return Err(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Runs as PID 1 of the new pid namespace: builds the root and execs systemd.
/// Returns only on failure.
fn boot_pid1(spec: &LaunchSpec) -> Result<std::convert::Infallible, String> {
    if spec.die_with_parent {
        set_pdeathsig()?;
    }
    let _ = setsid();
    sethostname(&spec.name).map_err(|e| format!("sethostname: {e}"))?;
    redirect_stdio(&spec.state_dir.join("console.log"))?;

    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("making / rprivate: {e}"))?;

    let stage = spec.state_dir.join("stage");
    mkdir_p(&stage)?;
    mount_fs("tmpfs", &stage, MsFlags::empty(), "mode=0755")?;
    for dir in ["upper", "work", "root"] {
        mkdir_p(&stage.join(dir))?;
    }
    let root = stage.join("root");
    // Copy-on-write view of the host's root: the box's boot (tmpfiles, sysctl,
    // writes to /etc and /var) lands in a tmpfs and never on the host.
    let opts = format!(
        "lowerdir=/,upperdir={},workdir={}",
        stage.join("upper").display(),
        stage.join("work").display()
    );
    mount_fs("overlay", &root, MsFlags::empty(), &opts)?;

    bind(Path::new("/dev"), &root.join("dev"), true)?;
    mount_fs("proc", &root.join("proc"), nosuid_nodev_noexec(), "")?;
    // The box shares the host kernel: /proc/sys read-only keeps systemd-sysctl
    // and binfmt from changing the host's settings.
    bind(&root.join("proc/sys"), &root.join("proc/sys"), false)?;
    remount_ro(&root.join("proc/sys"))?;
    if spec.own_netns {
        // Its own network namespace's settings are the box's alone: writable,
        // as CNI's bridge and portmap plugins need (ip_forward, route_localnet).
        // (A bind copies its source's flags: read-only here, until remounted.)
        let net = root.join("proc/sys/net");
        bind(&net, &net, false)?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        mount(None::<&str>, &net, None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("remounting {} read-write: {e}", net.display()))?;
    }
    mount_fs(
        "sysfs",
        &root.join("sys"),
        nosuid_nodev_noexec() | MsFlags::MS_RDONLY,
        "",
    )?;
    mount_fs(
        "cgroup2",
        &root.join("sys/fs/cgroup"),
        nosuid_nodev_noexec(),
        "",
    )?;
    mount_fs(
        "tmpfs",
        &root.join("run"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755",
    )?;
    mount_fs(
        "tmpfs",
        &root.join("tmp"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    )?;
    for dir in &spec.tmpfs {
        let target = inside(&root, dir);
        mkdir_p(&target)?;
        mount_fs("tmpfs", &target, MsFlags::empty(), "mode=0755")?;
    }
    for dir in &spec.binds {
        let target = inside(&root, dir);
        mkdir_p(&target)?;
        bind(dir, &target, true)?;
    }
    let units = root.join("run/systemd/system");
    mkdir_p(&units)?;
    fs::write(units.join(BOX_TARGET), BOX_TARGET_UNIT)
        .map_err(|e| format!("writing {BOX_TARGET}: {e}"))?;

    chdir(&root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))?;

    let prog = cstr(&spec.systemd.to_string_lossy())?;
    let args = [
        prog.clone(),
        cstr("--system")?,
        cstr(&format!("--unit={BOX_TARGET}"))?,
        cstr("--show-status=no")?,
    ];
    let env = [
        cstr(&format!("container=berth-box-{}", spec.name))?,
        cstr("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")?,
    ];
    execve(&prog, &args, &env).map_err(|e| format!("execve {}: {e}", spec.systemd.display()))
}

fn nosuid_nodev_noexec() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

fn inside(root: &Path, host_path: &Path) -> PathBuf {
    root.join(host_path.strip_prefix("/").unwrap_or(host_path))
}

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("NUL byte in {s:?}"))
}

fn mkdir_p(path: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| format!("mkdir {}: {e}", path.display()))
}

fn mount_fs(fstype: &str, target: &Path, flags: MsFlags, data: &str) -> Result<(), String> {
    let data = (!data.is_empty()).then_some(data);
    mount(Some(fstype), target, Some(fstype), flags, data)
        .map_err(|e| format!("mounting {fstype} on {}: {e}", target.display()))
}

fn bind(source: &Path, target: &Path, recursive: bool) -> Result<(), String> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("binding {} on {}: {e}", source.display(), target.display()))
}

fn remount_ro(target: &Path) -> Result<(), String> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remounting {} read-only: {e}", target.display()))
}

fn redirect_stdio(log: &Path) -> Result<(), String> {
    let file: OwnedFd = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?
        .into();
    let null: OwnedFd = File::open("/dev/null")
        .map_err(|e| format!("opening /dev/null: {e}"))?
        .into();
    for (src, dst) in [
        (null.as_raw_fd(), 0),
        (file.as_raw_fd(), 1),
        (file.as_raw_fd(), 2),
    ] {
        nix::unistd::dup2(src, dst).map_err(|e| format!("dup2: {e}"))?;
    }
    Ok(())
}
