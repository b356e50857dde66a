//! `berthctl run-unit NAME`: the main process of `berth@NAME.service`. Runs
//! the container described in /etc/berth/containers/NAME.toml in the
//! foreground: READY=1 once it is started (or passed through from the
//! container, `notify = true`), SIGTERM → stop (TERM, then KILL after
//! `stop_timeout`), its exit code as ours — so systemd's Restart= works.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};
use zbus::zvariant::Value;

use berthctl::unit_config::UnitConfig;

use crate::opts::{parse_size, CreateOpts};
use crate::{manager, session, Failed, Result};

pub fn load(path: &Path) -> Result<UnitConfig> {
    berthctl::unit_config::load(path).map_err(|e| Failed::new(e.to_string()))
}

/// Our own unit, from /proc/self/cgroup (`…/berth@web.service`).
fn own_unit(name: &str) -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .and_then(|p| p.rsplit('/').find(|c| c.ends_with(".service")))
                .map(String::from)
        })
        .unwrap_or_else(|| format!("berth@{name}.service"))
}

/// Sends one message to systemd's NOTIFY_SOCKET (path or @abstract), if set.
fn sd_notify(msg: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let _ = match target.strip_prefix('@') {
        Some(abs) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes())
                .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
        }
        None => sock.send_to(msg.as_bytes(), &target),
    };
}

/// A socket for the container's sd_notify messages, relayed to systemd
/// (MAINPID= dropped: the container cannot name our main process).
fn notify_relay(name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from("/run/berth-notify").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Failed::new(format!("{}: {e}", dir.display())))?;
    let path = dir.join("notify.sock");
    let sock =
        UnixDatagram::bind(&path).map_err(|e| Failed::new(format!("{}: {e}", path.display())))?;
    // The container's user may not be root.
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("MAINPID="))
                .collect();
            if !kept.is_empty() {
                sd_notify(&kept.join("\n"));
            }
        }
    });
    Ok(path)
}

/// Socket activation: the fds systemd passed this process (sd_listen_fds:
/// LISTEN_PID is ours, LISTEN_FDS of them from fd 3, LISTEN_FDNAMES
/// `:`-separated), now close-on-exec and owned; the variables are removed,
/// as sd_listen_fds(unset_environment=1) does.
fn listen_fds() -> (Vec<OwnedFd>, Vec<String>) {
    let var = |k: &str| std::env::var(k).ok();
    let ours = var("LISTEN_PID").and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let n = var("LISTEN_FDS")
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    let names: Vec<String> = var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(String::from).collect())
        .unwrap_or_default();
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(k);
    }
    if !ours || n <= 0 {
        return (Vec::new(), Vec::new());
    }
    let fds = (3..3 + n)
        .filter(|fd| {
            use nix::fcntl::{fcntl, FcntlArg, FdFlag};
            fcntl(*fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_ok()
        })
        // SAFETY: systemd passed these fds to this process for it to own
        // (sd_listen_fds); nothing else in berthctl knows of them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect::<Vec<_>>();
    let names = match names.len() == fds.len() {
        true => names,
        false => Vec::new(),
    };
    (fds, names)
}

/// A TOML table as the KEY=VALUE words the flags take.
fn key_value_lines(map: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    map.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

pub fn run_unit(name: &str, config_dir: &Path) -> Result<u8> {
    // Taken first: before anything else could open an fd among them.
    let (fds, fd_names) = listen_fds();
    let config = load(&config_dir.join(format!("{name}.toml")))?;
    let image = match (&config.bundle, &config.image) {
        (Some(_), None) => None,
        (None, Some(image)) => Some(image.clone()),
        _ => {
            return Err(Failed::new(format!(
                "{name}.toml: give bundle or image (one of them)"
            )))
        }
    };
    let opts = CreateOpts {
        bundle: config.bundle.clone(),
        user: config.user.clone(),
        name: Some(name.to_string()),
        process: crate::opts::ProcessOpts {
            env: config.env.clone(),
            workdir: config.workdir.clone(),
            ..Default::default()
        },
        memory: config
            .memory
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(Failed::new)?,
        cpus: config.cpus,
        pids_limit: config.pids_limit,
        // A berth@ unit's container stays in berth.slice.
        slice: None,
        // The unit that runs it, for `berthctl auto-update` to restart.
        labels: config
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != crate::autoupdate::UNIT_LABEL)
            .map(|(k, v)| format!("{k}={v}"))
            .chain([format!(
                "{}={}",
                crate::autoupdate::UNIT_LABEL,
                own_unit(name)
            )])
            .collect(),
        image,
        command: config.command.clone(),
        net: crate::opts::NetOpts {
            publish: config.ports.clone(),
            network: config.network.clone(),
            hostname: config.hostname.clone(),
            dns: config.dns.clone(),
            dns_search: config.dns_search.clone(),
            add_hosts: config.add_hosts.clone(),
            pid: config.pid.clone(),
            ipc: config.ipc.clone(),
            uts: config.uts.clone(),
        },
        security: crate::security_opts::SecurityOpts {
            cap_add: config.cap_add.clone(),
            cap_drop: config.cap_drop.clone(),
            privileged: config.privileged,
            security_opt: config.security_opt.clone(),
            group_add: config.group_add.clone(),
            ulimits: config.ulimits.clone(),
            sysctls: key_value_lines(&config.sysctls),
            annotations: key_value_lines(&config.annotations),
            // The list as written: no JSON reading for a TOML array.
            entrypoint: None,
            stop_signal: config.stop_signal.clone(),
            stop_timeout: config.stop_timeout.map(|t| t.min(u32::MAX as u64) as u32),
            env_files: config.env_file.clone(),
            init: config.init,
        },
        lifecycle: crate::lifecycle::LifecycleOpts {
            restart: None,
            health: crate::lifecycle::HealthKeys {
                health_cmd: config.health_cmd.clone(),
                health_interval: config.health_interval.clone(),
                health_retries: config.health_retries,
                health_start_period: config.health_start_period.clone(),
                health_timeout: config.health_timeout.clone(),
                health_on_failure: config.health_on_failure.clone(),
            },
        },
        storage: crate::opts::StorageOpts {
            volumes: config.volumes.clone(),
            mounts: config.mounts.clone(),
            tmpfs: config.tmpfs.clone(),
            devices: config.devices.clone(),
            read_only: config.read_only,
            shm_size: config
                .shm_size
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(Failed::new)?,
        },
    };
    let m = manager()?;
    // A leftover of an earlier run of this unit (crash, kill -9): replace it.
    if m.get_container(name).is_ok() {
        let _ = m.delete_container(name, true);
    }
    let mut options: HashMap<&'static str, Value<'static>> = HashMap::new();
    options.insert("log_unit", Value::from(own_unit(name)));
    if let Some(e) = &config.entrypoint {
        options.insert("entrypoint", Value::from(e.clone()));
    }
    if !fds.is_empty() {
        // Sent as the message's fds (SCM_RIGHTS); berthd keeps copies.
        let list: Vec<zbus::zvariant::Fd<'static>> =
            fds.into_iter().map(zbus::zvariant::Fd::from).collect();
        options.insert("listen_fds", Value::from(list));
        if !fd_names.is_empty() {
            options.insert("listen_fdnames", Value::from(fd_names));
        }
    }
    if config.notify {
        let sock = notify_relay(name)?;
        options.insert(
            "notify_socket",
            Value::from(sock.to_string_lossy().into_owned()),
        );
    }
    // Blocked since main (before any thread): a stop request while
    // creating still stops.
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);

    session::create_with(&m, &opts, options)?;
    if let Err(e) = m.start_container(name) {
        let _ = m.delete_container(name, true);
        return Err(e.into());
    }
    if !config.notify {
        sd_notify("READY=1");
    }
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let (m, name, stopping) = (m.clone(), name.to_string(), stopping.clone());
        let timeout = config.stop_timeout.unwrap_or(10);
        std::thread::spawn(move || {
            if set.wait().is_ok() {
                stopping.store(true, Ordering::SeqCst);
                sd_notify("STOPPING=1");
                let _ = session::stop(&m, &name, timeout);
            }
        });
    }
    let result = session::wait(&m, name);
    let _ = m.delete_container(name, true);
    let _ = std::fs::remove_dir_all(PathBuf::from("/run/berth-notify").join(name));
    let (code, _) = result?;
    // Stopped on request: a clean end for systemd, whatever SIGTERM did.
    if stopping.load(Ordering::SeqCst) {
        return Ok(0);
    }
    Ok(code.clamp(0, 255) as u8)
}
