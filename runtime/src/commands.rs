//! One function per verb: parse → call berth-init → print what runc prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use berth_init::container::{self, Record, Status};
use berth_init::create::{create, CreateOptions};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::{Cli, Cmd, CreateArgs};

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
    let opts = CreateOptions {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        root: root.to_path_buf(),
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        systemd_cgroup: systemd,
        no_cgroup: false,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
    };
    Ok(create(&opts)?)
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
    let code = loop {
        match waitpid(Pid::from_raw(rec.pid), None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => bail!("waiting for container {}: {e}", rec.id),
        }
    };
    if !keep {
        warn_all(container::delete(root, &rec.id, true)?);
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
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
            println!("{:<20} {:<8} {:<10} {:<40} {:<32} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
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
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
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
    let mut spec = if rootless {
        oci_spec::runtime::Spec::rootless(nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    } else {
        oci_spec::runtime::Spec::default()
    };
    // What `runc spec` writes: an interactive sh in a container named after us.
    spec.set_version("1.2.0".into());
    spec.set_hostname(Some("berth".into()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
        p.set_args(Some(vec!["sh".into()]));
    }
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
            "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capability_names(),
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": {"io.berth.runtime.version": env!("CARGO_PKG_VERSION")},
    })
}

fn capability_names() -> Vec<String> {
    let mut names: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    names.sort();
    names
}
