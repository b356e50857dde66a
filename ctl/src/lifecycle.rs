//! --restart and --health-* (podman's flags) for run and create, the berth@
//! TOML's `health_*` keys (unit.rs builds HealthKeys from them: one
//! conversion into CreateContainer's options), and `berthctl healthcheck run`.

use std::collections::HashMap;

use clap::Args;
use zbus::zvariant::Value;

use crate::{manager, Failed, Result};

/// What berthd does over the container's life: shared by run and create.
#[derive(Args, Debug, Clone, Default)]
pub struct LifecycleOpts {
    /// Restart policy: no, on-failure[:N], always, unless-stopped (kept by
    /// berthd; berth@ units use systemd's Restart= instead).
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    #[command(flatten)]
    pub health: HealthKeys,
}

/// The health check: `--health-cmd` and friends, and the TOML's
/// `health_cmd`, `health_interval`… (durations as podman writes them:
/// 30s, 1m30s, 500ms).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct HealthKeys {
    /// The check, run in the container: a shell command line (run by
    /// /bin/sh -c), or a JSON array (run as is).
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between checks (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Consecutive failures that make it unhealthy (default 3).
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Failures this long after the start do not count (default 0s).
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// A check running longer fails (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// What an unhealthy container gets: none, kill, restart, stop.
    #[arg(long, value_name = "ACTION")]
    pub health_on_failure: Option<String>,
}

/// `30s` → µs, for berthd's `t` options.
fn micros(key: &str, s: &str) -> Result<u64> {
    let d = humantime::parse_duration(s)
        .map_err(|e| Failed::new(format!("--{key} {s:?}: {e} (like 30s, 1m30s, 500ms)")))?;
    u64::try_from(d.as_micros()).map_err(|_| Failed::new(format!("--{key} {s:?}: too long")))
}

/// podman's two forms: `["CMD", "arg"]` / `["cmd", "arg"]` as is (a
/// leading "CMD" dropped), anything else through the shell.
pub fn health_argv(cmd: &str) -> Result<Vec<String>> {
    if cmd.trim_start().starts_with('[') {
        let mut argv: Vec<String> = serde_json::from_str(cmd)
            .map_err(|e| Failed::new(format!("--health-cmd {cmd:?}: not a JSON array: {e}")))?;
        if argv.first().is_some_and(|a| a == "CMD") {
            argv.remove(0);
        }
        if argv.first().is_some_and(|a| a == "CMD-SHELL") {
            argv[0] = "/bin/sh".into();
            argv.insert(1, "-c".into());
        }
        return Ok(argv);
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), cmd.into()])
}

impl HealthKeys {
    /// Into CreateContainer's options (health_*): berthd checks the rest.
    pub fn insert_into(&self, o: &mut HashMap<&'static str, Value<'static>>) -> Result<()> {
        if let Some(cmd) = &self.health_cmd {
            o.insert("health_cmd", Value::from(health_argv(cmd)?));
        }
        let durations = [
            ("health_interval", &self.health_interval),
            ("health_start_period", &self.health_start_period),
            ("health_timeout", &self.health_timeout),
        ];
        for (key, value) in durations {
            if let Some(s) = value {
                o.insert(key, Value::from(micros(&key.replace('_', "-"), s)?));
            }
        }
        if let Some(n) = self.health_retries {
            o.insert("health_retries", Value::from(n));
        }
        if let Some(a) = &self.health_on_failure {
            o.insert("health_on_failure", Value::from(a.clone()));
        }
        Ok(())
    }
}

impl LifecycleOpts {
    pub fn insert_into(&self, o: &mut HashMap<&'static str, Value<'static>>) -> Result<()> {
        if let Some(r) = &self.restart {
            o.insert("restart", Value::from(r.clone()));
        }
        self.health.insert_into(o)
    }
}

/// `berthctl healthcheck run ID`: prints the Health after the check; exit
/// 0 if the check passed, 1 if not (podman's codes).
pub fn run(id: &str) -> Result<u8> {
    let m = manager()?;
    let (health, exit) = m.run_healthcheck(id)?;
    println!("{health}");
    Ok(if exit == 0 { 0 } else { 1 })
}

/// `berthctl top ID`: podman's columns that /proc gives (UID, PID, PPID,
/// COMMAND), and the host's pid.
pub fn top(id: &str) -> Result<u8> {
    let m = manager()?;
    let rows = m.top_container(id)?;
    println!(
        "{:<8} {:>8} {:>8} {:>10}  COMMAND",
        "UID", "PID", "PPID", "HOST PID"
    );
    for (pid, ppid, uid, host, cmd) in rows {
        println!("{uid:<8} {pid:>8} {ppid:>8} {host:>10}  {cmd}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_durations_as_podman() {
        assert_eq!(health_argv("true").unwrap(), ["/bin/sh", "-c", "true"]);
        assert_eq!(
            health_argv("[\"CMD\", \"test\", \"-f\", \"/ok\"]").unwrap(),
            ["test", "-f", "/ok"]
        );
        assert_eq!(
            health_argv("[\"CMD-SHELL\", \"exit 1\"]").unwrap(),
            ["/bin/sh", "-c", "exit 1"]
        );
        assert!(health_argv("[oops").is_err());
        assert_eq!(micros("health-interval", "1s").unwrap(), 1_000_000);
        assert_eq!(micros("health-interval", "1m30s").unwrap(), 90_000_000);
        assert!(micros("health-interval", "soon").is_err());
        let mut o = HashMap::new();
        let keys = HealthKeys {
            health_cmd: Some("true".into()),
            health_interval: Some("2s".into()),
            health_retries: Some(1),
            ..Default::default()
        };
        keys.insert_into(&mut o).unwrap();
        assert_eq!(o["health_interval"], Value::from(2_000_000u64));
        assert_eq!(o["health_retries"], Value::from(1u32));
    }
}
