//! One function per verb: parse → call berth-init → print what runc prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use berth_init::container::{self, Record, Status};
use berth_init::create::{create, CreateOptions};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::{Cli, Cmd, CreateArgs, ExecArgs};

pub fn run(cli: Cli) -> Result<ExitCode> {
    let root = cli.root.as_path();
    match cli.cmd {
        Cmd::Create(args) => {
            do_create(root, &args, cli.systemd_cgroup)?;
        }
        Cmd::Start { id } => warn_all(container::start(root, &id)?),
        Cmd::State { id } => print_state(root, &id)?,
        Cmd::Kill { id, signal, all } => {
            let sig = berth_init::signal::parse(&signal).map_err(anyhow::Error::msg)?;
            container::kill(root, &id, sig, all)?;
        }
        Cmd::Delete { id, force } => match container::delete(root, &id, force) {
            Ok(w) => warn_all(w),
            // runc: deleting a container that does not exist with --force is fine.
            Err(berth_init::Error::NotFound(_)) if force => {}
            Err(e) => return Err(e.into()),
        },
        Cmd::Run {
            create: args,
            detach,
            keep,
        } => return do_run(root, &args, cli.systemd_cgroup, detach, keep),
        Cmd::Pause { id } => container::pause(root, &id)?,
        Cmd::Resume { id } => container::resume(root, &id)?,
        Cmd::List { format, quiet } => list(root, &format, quiet)?,
        Cmd::Ps { id, format } => ps(root, &id, &format)?,
        Cmd::Spec { bundle, rootless } => write_spec(&bundle, rootless)?,
        Cmd::Features => println!("{}", serde_json::to_string_pretty(&features())?),
        Cmd::Exec(args) => return do_exec(root, &args),
        Cmd::Update {
            id,
            resources,
            memory,
            pids_limit,
            cpu_shares,
            cpu_quota,
            cpu_period,
        } => {
            let mut json = match resources {
                Some(p) if p.as_os_str() == "-" => serde_json::from_reader(std::io::stdin())?,
                Some(p) => serde_json::from_str(&std::fs::read_to_string(&p)?)?,
                None => serde_json::json!({}),
            };
            if let Some(m) = memory {
                json["memory"]["limit"] = m.into();
            }
            if let Some(p) = pids_limit {
                json["pids"]["limit"] = p.into();
            }
            if let Some(v) = cpu_shares {
                json["cpu"]["shares"] = v.into();
            }
            if let Some(v) = cpu_quota {
                json["cpu"]["quota"] = v.into();
            }
            if let Some(v) = cpu_period {
                json["cpu"]["period"] = v.into();
            }
            let res: oci_spec::runtime::LinuxResources =
                serde_json::from_value(json).context("invalid resources")?;
            let rec = Record::load(root, &id)?;
            if rec.status(root) == Status::Stopped {
                bail!("cannot update container {id}: it is stopped");
            }
            let mut mgr = rec
                .cgroup_manager()?
                .with_context(|| format!("container {id} has no cgroup"))?;
            mgr.update(&res)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn warn_all(warnings: Vec<String>) {
    for w in warnings {
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        eprintln!("time=\"{time}\" level=warning msg={w:?}");
    }
}

fn do_create(root: &Path, args: &CreateArgs, systemd: bool) -> Result<Record> {
    // The id first, as create checks it (a bad id is named before the bundle).
    berth_init::error::validate_id(&args.id)?;
    // Loaded (and validated) once, here: create takes it as it is.
    let dir = if args.bundle.is_absolute() {
        args.bundle.clone()
    } else {
        std::env::current_dir()?.join(&args.bundle)
    };
    let bundle = berth_init::spec::load(&dir).map_err(berth_init::Error::from)?;
    // Settings runc ignores (with a warning) are ignored here too.
    let res = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    let ignored =
        berth_init::cgroups::resources::ignored(res, berth_init::cgroups::tree::unified_host());
    let opts = CreateOptions {
        id: args.id.clone(),
        bundle: dir,
        root: root.to_path_buf(),
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        systemd_cgroup: systemd,
        no_cgroup: false,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        stdio: None,
        loaded: Some(bundle),
        placer: None,
        pooled_netns: None,
    };
    let rec = create(&opts)?;
    warn_all(ignored);
    Ok(rec)
}

fn do_run(
    root: &Path,
    args: &CreateArgs,
    systemd: bool,
    detach: bool,
    keep: bool,
) -> Result<ExitCode> {
    let rec = do_create(root, args, systemd)?;
    if let Err(e) = container::start(root, &rec.id).map(warn_all) {
        let _ = container::delete(root, &rec.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(ExitCode::SUCCESS);
    }
    // We are the init's parent: reap it and report its status like a shell.
    let code = wait_exit(rec.pid)?;
    if !keep {
        warn_all(container::delete(root, &rec.id, true)?);
    }
    Ok(exit_code(code))
}

fn exec_process(root: &Path, a: &ExecArgs) -> Result<oci_spec::runtime::Process> {
    if let Some(path) = &a.process {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("invalid process JSON in {}", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec: no command given (arguments after the id, or --process)");
    }
    let rec = Record::load(root, &a.id)?;
    let spec = oci_spec::runtime::Spec::load(rec.bundle.join("config.json"))?;
    let mut p = spec
        .process()
        .clone()
        .context("config.json has no process")?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &a.env {
        let name = e.split('=').next().unwrap_or_default();
        env.retain(|old| old.split('=').next() != Some(name));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let mut user = p.user().clone();
        user.set_uid(
            uid.parse()
                .with_context(|| format!("invalid uid in --user {u}"))?,
        );
        user.set_gid(
            gid.parse()
                .with_context(|| format!("invalid gid in --user {u}"))?,
        );
        p.set_user(user);
    }
    if !a.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.caps {
            let c: oci_spec::runtime::Capability = serde_json::from_value(serde_json::json!(name))
                .with_context(|| format!("unknown capability {name}"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(c);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

fn do_exec(root: &Path, a: &ExecArgs) -> Result<ExitCode> {
    let opts = berth_init::exec::ExecOptions {
        root: root.to_path_buf(),
        id: a.id.clone(),
        process: exec_process(root, a)?,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        stdio: None,
        ignore_paused: a.ignore_paused,
    };
    let pid = berth_init::exec::exec(&opts)?;
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    wait_exit(pid).map(exit_code)
}

fn state_json(root: &Path, rec: &Record) -> serde_json::Value {
    let status = rec.status(root);
    let mut v = serde_json::json!({
        "ociVersion": rec.oci_version,
        "id": rec.id,
        // runc reports pid 0 once the container has stopped.
        "pid": if status == Status::Stopped { 0 } else { rec.pid },
        "status": status.to_string(),
        "bundle": rec.bundle,
        "rootfs": rec.rootfs,
        "created": rec.created,
        "owner": "",
    });
    if !rec.annotations.is_empty() {
        v["annotations"] = serde_json::json!(rec.annotations);
    }
    v
}

fn print_state(root: &Path, id: &str) -> Result<()> {
    let rec = Record::load(root, id)?;
    println!("{}", serde_json::to_string_pretty(&state_json(root, &rec))?);
    Ok(())
}

fn list(root: &Path, format: &str, quiet: bool) -> Result<()> {
    let recs: Vec<Record> = container::list(root)
        .iter()
        .filter_map(|id| Record::load(root, id).ok())
        .collect();
    if quiet {
        for r in &recs {
            println!("{}", r.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let all: Vec<_> = recs.iter().map(|r| state_json(root, r)).collect();
            println!("{}", serde_json::to_string(&all)?);
        }
        "table" => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for r in &recs {
                let s = r.status(root);
                let pid = if s == Status::Stopped { 0 } else { r.pid };
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<32} root",
                    r.id,
                    pid,
                    s,
                    r.bundle.display(),
                    r.created
                );
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}

fn ps(root: &Path, id: &str, format: &str) -> Result<()> {
    let rec = Record::load(root, id)?;
    let mut pids = match rec.cgroup_manager()? {
        Some(m) => m.pids()?,
        None if rec.alive() => vec![rec.pid],
        None => vec![],
    };
    pids.sort_unstable();
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            println!("{:<8} CMD", "PID");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .replace('\0', " ")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_default();
                println!("{pid:<8} {cmd}");
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}

fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let spec = berth_init::spec::default_spec(rootless);
    let json = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The OCI runtime "features" document (features.md).
fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
            "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
            "rslave", "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync",
            "unbindable", "tmpcopyup", "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev",
            "rnoexec", "rexec", "rnodiratime", "rdiratime", "rrelatime", "rnorelatime",
            "ratime", "rnoatime", "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capability_names(),
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
                            "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
            },
            "apparmor": {"enabled": berth_init::lsm::apparmor_enabled()},
            "selinux": {"enabled": berth_init::lsm::selinux_enabled()},
        },
        "annotations": {"io.berth.runtime.version": env!("CARGO_PKG_VERSION")},
    })
}

fn capability_names() -> Vec<String> {
    let mut names: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    names.sort();
    names
}

/// Reaps our child `pid`, forwarding the signals a terminal or supervisor
/// sends us (as runc does), and returns its status as a shell would: the exit
/// code, or 128 + the signal that killed it.
fn wait_exit(pid: i32) -> Result<i32> {
    use nix::sys::signal::{kill, SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    // Blocked, the signals wait for sigwait below: none is lost between the
    // waitpid and the wait.
    set.thread_block()?;
    loop {
        match waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => bail!("waiting for process {pid}: {e}"),
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}
