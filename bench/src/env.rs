//! The bench's world inside the box: berthd installed as a systemd service
//! the way the package installs it (from this build's binaries), a busybox
//! rootfs and three bundles on it, containerd as a service (its CRI plugin
//! configured for the cri scenario), and which peers this machine has.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the bench keeps its files (a tmpfs the box mounts).
pub const WORK: &str = "/var/lib/berth-bench";
pub const CONTAINERD_SOCKET: &str = "/run/bench-containerd/containerd.sock";

/// One bundle per command, all on the same read-only busybox rootfs, so
/// every engine runs the very same config.json.
#[derive(Clone, Debug)]
pub struct Bundles {
    pub true_: PathBuf,
    pub echo: PathBuf,
    pub sleep: PathBuf,
}

pub struct Env {
    pub rootfs: PathBuf,
    pub bundles: Bundles,
    /// The source tree (units, D-Bus policy) and this build's binaries.
    pub src: PathBuf,
    pub bin: PathBuf,
    /// Peers found on this machine, in the report's order.
    pub peers: Vec<&'static str>,
    /// Peers missing, with why.
    pub missing: Vec<String>,
}

pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

impl Env {
    pub fn setup(src: &Path, bin: &Path) -> Result<Env> {
        let work = Path::new(WORK);
        std::fs::create_dir_all(work)?;
        let rootfs = work.join("rootfs");
        make_rootfs(&rootfs)?;
        let bundles = Bundles {
            true_: bundle(work, &rootfs, "true", &["/bin/true"])?,
            echo: bundle(work, &rootfs, "echo", &["/bin/echo", "hi"])?,
            sleep: bundle(work, &rootfs, "sleep", &["/bin/sleep", "1000000"])?,
        };
        install_berthd(src, bin)?;
        let mut peers = Vec::new();
        let mut missing = Vec::new();
        for (peer, programs) in [
            ("runc", &["runc"][..]),
            ("podman", &["podman", "conmon"][..]),
            (
                "containerd",
                &["containerd", "ctr", "containerd-shim-runc-v2"][..],
            ),
            ("systemd-run", &["systemd-run"][..]),
        ] {
            // BERTH_BENCH_PEERS=a,b (or empty): only those peers, for a
            // focused run (berth alone, or beside the systemd-run floor).
            if let Ok(only) = std::env::var("BERTH_BENCH_PEERS") {
                if !only.split(',').any(|p| p.trim() == peer) {
                    missing.push(format!("{peer}: not in BERTH_BENCH_PEERS={only:?}"));
                    continue;
                }
            }
            match programs.iter().find(|p| !have(p)) {
                None => peers.push(peer),
                Some(p) => missing.push(format!(
                    "{peer}: `{p}` not installed (bench/run installs it from apt)"
                )),
            }
        }
        if peers.contains(&"containerd") {
            if let Err(e) = start_containerd(work) {
                peers.retain(|p| *p != "containerd");
                missing.push(format!("containerd: did not start: {e:#}"));
            }
        }
        Ok(Env {
            rootfs,
            bundles,
            src: src.to_path_buf(),
            bin: bin.to_path_buf(),
            peers,
            missing,
        })
    }

    /// berthd's main pid (0 when not running).
    pub fn berthd_pid(&self) -> Result<u32> {
        let out = sh("systemctl", &["show", "-P", "MainPID", "berthd"])?;
        Ok(out.trim().parse()?)
    }
}

/// A static busybox with the few applets the bundles run.
fn make_rootfs(rootfs: &Path) -> Result<()> {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("busybox-static is not installed")?;
    std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
    for applet in ["true", "echo", "sleep", "sh", "cat"] {
        let link = rootfs.join("bin").join(applet);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("busybox", link)?;
    }
    Ok(())
}

/// berth's default spec (as `berth-runtime spec` writes it), no terminal,
/// running `args`, root = the shared rootfs read-only.
fn bundle(work: &Path, rootfs: &Path, name: &str, args: &[&str]) -> Result<PathBuf> {
    let dir = work.join(format!("bundle-{name}"));
    std::fs::create_dir_all(&dir)?;
    let mut config = serde_json::to_value(berth_init::spec::default_spec(false))?;
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(args);
    config["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(dir)
}

/// berthd as the package runs it: its unit (ExecStart pointing at this
/// build), berth.slice and the D-Bus policy; then started.
fn install_berthd(src: &Path, bin: &Path) -> Result<()> {
    std::fs::copy(
        src.join("dbus/system.d/io.berth.Berth1.conf"),
        "/etc/dbus-1/system.d/io.berth.Berth1.conf",
    )?;
    sh(
        "busctl",
        &[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "ReloadConfig",
        ],
    )?;
    let unit = std::fs::read_to_string(src.join("units/berthd.service"))?;
    let berthd = bin.join("berthd");
    let unit: String = unit
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                format!("ExecStart={}\n", berthd.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write("/run/systemd/system/berthd.service", unit)?;
    std::fs::copy(
        src.join("units/berth.slice"),
        "/run/systemd/system/berth.slice",
    )?;
    sh("systemctl", &["daemon-reload"])?;
    sh("systemctl", &["start", "berthd"])?;
    Ok(())
}

/// containerd as a service of its own (unit bench-containerd), its state
/// on the bench's tmpfs.
fn start_containerd(work: &Path) -> Result<()> {
    let dir = work.join("containerd");
    std::fs::create_dir_all(&dir)?;
    // containerd's CRI runs runc through this (see runc_no_cpu.rs).
    let runc = dir.join(crate::runc_no_cpu::NAME);
    let _ = std::fs::remove_file(&runc);
    std::os::unix::fs::symlink(std::env::current_exe()?, &runc)?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"/run/bench-containerd\"\n\
             [grpc]\n  address = \"{CONTAINERD_SOCKET}\"\n{}",
            dir.join("root").display(),
            crate::cri_env::containerd_cri_config(&runc)
        ),
    )?;
    // The cri scenario's network, there before containerd's CRI plugin
    // loads its CNI config.
    crate::cri_env::write_conflist()?;
    let config = config.to_str().context("path")?;
    sh(
        "systemd-run",
        &[
            "--quiet",
            "--unit",
            "bench-containerd",
            "-p",
            "Delegate=yes",
            // As containerd's packaged unit: a restart (scenario restart)
            // stops containerd only, not its shims in the same cgroup.
            "-p",
            "KillMode=process",
            "containerd",
            "--config",
            config,
        ],
    )?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if sh("ctr", &["--address", CONTAINERD_SOCKET, "version"]).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no answer on {CONTAINERD_SOCKET} within 15 s")
}
