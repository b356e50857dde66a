//! Drives berth_init::cgroups from the command line, one step per run, so an
//! integration test can run each step inside a systemd box and check the
//! result with systemctl and the cgroup tree in between.
//!
//! ```text
//! cgroup_probe create <id> [--fs] [--cgroups-path P] [--resources JSON] [--cycle]
//! cgroup_probe freeze|thaw|state|pids|destroy|update <path> [--fs] [--resources JSON]
//! ```
//! `create` starts a child shell that waits on stdin (like a container init
//! blocked before exec), places it, then lets it try two devices and exec
//! `sleep 1000`; `--cycle` then updates, freezes and destroys it in-process. Output is `key=value` lines; exit 2 on a cgroup error.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use berth_init::cgroups::{self, fs::FsManager, systemd::SystemdManager, CgroupError};
use oci_spec::runtime::LinuxResources;

/// Runs in the child once it is in its cgroup: tries an allowed device and
/// one no default allowlist has, then becomes the long-running "container".
const CHILD: &str = r#"read go
if (echo x > /dev/null) 2>/dev/null; then echo dev-null=allowed; else echo dev-null=denied; fi
if [ ! -e /dev/kmsg ]; then echo dev-kmsg=missing
elif (exec 3</dev/kmsg) 2>/dev/null; then echo dev-kmsg=allowed; else echo dev-kmsg=denied; fi
echo child-ready
exec sleep 1000"#;

struct Args {
    verb: String,
    target: String,
    fs: bool,
    cgroups_path: Option<String>,
    resources: Option<String>,
    cycle: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let usage = "usage: cgroup_probe create <id> | freeze|thaw|state|pids|destroy|update <path> \
                 [--fs] [--cgroups-path P] [--resources JSON] [--cycle]";
    let verb = it.next().ok_or(usage)?;
    let target = it.next().ok_or(usage)?;
    let mut a = Args {
        verb,
        target,
        fs: false,
        cgroups_path: None,
        resources: None,
        cycle: false,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--fs" => a.fs = true,
            "--cycle" => a.cycle = true,
            "--cgroups-path" => a.cgroups_path = Some(it.next().ok_or(usage)?),
            "--resources" => a.resources = Some(it.next().ok_or(usage)?),
            _ => return Err(usage.into()),
        }
    }
    Ok(a)
}

fn ms(since: Instant) -> String {
    format!("{:.1}", since.elapsed().as_secs_f64() * 1000.0)
}

/// What a test greps for: the variant and its fields, then the message.
fn report(e: &CgroupError) {
    if let CgroupError::ControllerUnavailable {
        controller,
        setting,
        ..
    } = e
    {
        println!("error_kind=ControllerUnavailable controller={controller} setting={setting}");
    }
    println!("error={e}");
}

fn create(a: &Args) -> Result<(), CgroupError> {
    let resources: Option<LinuxResources> = match &a.resources {
        Some(json) => Some(
            serde_json::from_str(json).map_err(|e| CgroupError::InvalidValue {
                setting: "(probe --resources)".into(),
                value: json.clone(),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    let mut child = Command::new("/bin/sh")
        .args(["-c", CHILD])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Not our stderr: the child outlives us, and whoever reads our
        // output to EOF would wait for it.
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CgroupError::Io {
            path: "/bin/sh".into(),
            source: e,
        })?;
    let pid = child.id() as i32;
    println!("pid={pid}");
    let t = Instant::now();
    let path = a.cgroups_path.as_deref().map(Path::new);
    let placed = cgroups::manager(!a.fs, &a.target, path).and_then(|mut m| {
        m.apply(pid, resources.as_ref())?;
        Ok(m)
    });
    let m = match placed {
        Ok(m) => m,
        Err(e) => {
            // Our own child, by pid.
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    println!("apply_ms={}", ms(t));
    println!("path={}", m.path());
    if a.fs {
        let dirs = FsManager::reopen(&m.path())?.dirs();
        for d in dirs {
            println!("cgroup={}", d.display());
        }
    } else {
        if let Some(dir) = SystemdManager::reopen(&m.path())?.cgroup_dir()? {
            println!("cgroup={}", dir.display());
        }
    }
    // Release the child and relay its device checks.
    if let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) {
        let _ = writeln!(stdin, "go");
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "child-ready" {
                break;
            }
            println!("{line}");
        }
    }
    println!("pids={}", join(&m.pids()?));
    if a.cycle {
        // Same manager, same bus connection: update, freeze and destroy
        // right after apply, as a failed create's rollback would.
        let mut m = m;
        m.update(&resources.unwrap_or_default())?;
        m.freeze()?;
        let t = Instant::now();
        m.destroy()?;
        println!("destroy_ms={}", ms(t));
        let _ = child.wait();
    }
    Ok(())
}

fn join(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn step(a: &Args) -> Result<(), CgroupError> {
    let mut m = cgroups::reopen(!a.fs, &a.target)?;
    let t = Instant::now();
    match a.verb.as_str() {
        "freeze" => m.freeze()?,
        "thaw" => m.thaw()?,
        "destroy" => m.destroy()?,
        "update" => {
            let json = a.resources.as_deref().unwrap_or("{}");
            let res: LinuxResources =
                serde_json::from_str(json).map_err(|e| CgroupError::InvalidValue {
                    setting: "(probe --resources)".into(),
                    value: json.into(),
                    reason: e.to_string(),
                })?;
            m.update(&res)?
        }
        "state" | "pids" => {}
        other => {
            return Err(CgroupError::InvalidValue {
                setting: "(probe verb)".into(),
                value: other.into(),
                reason: "unknown".into(),
            })
        }
    }
    println!("{}_ms={}", a.verb, ms(t));
    if a.verb != "destroy" {
        println!("frozen={}", m.is_frozen()?);
    }
    println!("pids={}", join(&m.pids()?));
    Ok(())
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(1);
        }
    };
    let result = if a.verb == "create" {
        create(&a)
    } else {
        step(&a)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(2)
        }
    }
}
