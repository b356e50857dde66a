//! Health checks, the systemd way (as podman does): a transient timer
//! `berth-health-<id>.timer` per running container fires a oneshot service
//! that calls berthd's RunHealthcheck (health_timer.rs); berthd runs the
//! check as an exec in the container, keeps the result in the record
//! (Health: starting → healthy / unhealthy) and, once unhealthy, does the
//! `on_failure` action: none, kill, restart or stop.

use std::sync::Arc;
use std::time::Duration;

use crate::daemon::{now_us, Daemon};
use crate::error::{Error, Result};
use crate::execs::ExecRequest;
use crate::lifecycle::Status;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    None,
    Kill,
    Restart,
    Stop,
}

impl OnFailure {
    pub fn parse(s: &str) -> Option<OnFailure> {
        Some(match s {
            "none" => OnFailure::None,
            "kill" => OnFailure::Kill,
            "restart" => OnFailure::Restart,
            "stop" => OnFailure::Stop,
            _ => return None,
        })
    }
}

/// What the check is and how often it runs (durations in µs).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HealthConfig {
    pub cmd: Vec<String>,
    pub interval_us: u64,
    pub timeout_us: u64,
    /// Failures this long after a start do not count (the service warms up).
    pub start_period_us: u64,
    /// Consecutive failures that make it unhealthy.
    pub retries: u32,
    pub on_failure: OnFailure,
}

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HealthRecord {
    pub config: HealthConfig,
    /// starting, healthy or unhealthy.
    pub status: String,
    pub failing_streak: u32,
    /// The last check's exit code (-1: it could not run or timed out).
    pub last_exit: i32,
    /// When it ran (µs since the epoch; 0: never).
    pub last_at: u64,
}

impl HealthRecord {
    pub fn new(config: HealthConfig) -> HealthRecord {
        HealthRecord {
            config,
            status: STARTING.into(),
            ..Default::default()
        }
    }

    /// A new run of the container starts over.
    pub fn reset(&mut self) {
        *self = HealthRecord::new(std::mem::take(&mut self.config));
    }

    /// Takes one check's result (`exit` 0: it passed) at `now`, for a
    /// container started at `started_at`.
    pub fn record(&mut self, exit: i32, now: u64, started_at: u64) {
        self.last_exit = exit;
        self.last_at = now;
        if exit == 0 {
            self.failing_streak = 0;
            self.status = HEALTHY.into();
            return;
        }
        let warming_up = now.saturating_sub(started_at) < self.config.start_period_us;
        if warming_up && self.status == STARTING {
            return;
        }
        self.failing_streak += 1;
        if self.failing_streak >= self.config.retries {
            self.status = UNHEALTHY.into();
        }
    }
}

/// The Health property: "" without a health check.
pub fn status(rec: &crate::store::ContainerRecord) -> String {
    rec.health
        .as_ref()
        .map(|h| h.status.clone())
        .unwrap_or_default()
}

/// Runs the check of container `id` once: (Health after it, the check's
/// exit code). `changed` tells whether Health changed, for the signals.
pub async fn run(daemon: &Daemon, id: &str) -> Result<(String, i32, bool)> {
    let rec = daemon.get(id)?;
    let Some(health) = rec.health.clone() else {
        return Err(Error::FailedPrecondition(format!(
            "container {id} has no health check (create it with health_cmd)"
        )));
    };
    if rec.status != Status::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is {}: health checks run in running containers",
            rec.status
        )));
    }
    let process = serde_json::json!({ "args": health.config.cmd }).to_string();
    let timeout = Duration::from_micros(health.config.timeout_us);
    let started = daemon
        .start_exec(id, &process, &ExecRequest::default())
        .await;
    let exit = match started {
        Ok((exec_id, quick)) => {
            match tokio::time::timeout(timeout, daemon.exec_exit(id, &exec_id, quick)).await {
                Ok(Ok((code, 0))) => code,
                Ok(Ok((_, signal))) => 128 + signal,
                Ok(Err(_)) => -1,
                Err(_) => {
                    kill_timed_out(daemon, id, &exec_id);
                    -1
                }
            }
        }
        // Its command missing in the container, say: a failed check, as
        // podman counts it, not an error of the call.
        Err(e) => {
            tracing::info!(container = %id, "health check could not run: {e}");
            -1
        }
    };
    let before = health.status;
    let rec = daemon
        .store
        .update(id, move |r| {
            let started_at = r.started_at;
            if let Some(h) = r.health.as_mut() {
                h.record(exit, now_us(), started_at);
            }
        })
        .await?;
    let after = status(&rec);
    let changed = after != before;
    Ok((after, exit, changed))
}

/// SIGKILLs a check that outlived its timeout (its shim then records the
/// exit as for any exec): exec_kill.rs's guarded signal.
fn kill_timed_out(daemon: &Daemon, id: &str, exec_id: &str) {
    let sent = crate::exec_kill::signal_exec(daemon, id, exec_id, libc::SIGKILL);
    if sent.is_ok() {
        tracing::info!(container = %id, exec = %exec_id, "health check timed out: killed");
    }
}

/// What an unhealthy container's `on_failure` asks for, done in the
/// background (the RunHealthcheck call returns at once).
pub fn act(conn: &zbus::Connection, daemon: &Arc<Daemon>, id: &str) {
    let Ok(rec) = daemon.get(id) else { return };
    let Some(h) = rec.health else { return };
    if h.status != UNHEALTHY || rec.status != Status::Running {
        return;
    }
    let (conn, daemon, id) = (conn.clone(), daemon.clone(), id.to_string());
    tokio::spawn(async move {
        tracing::warn!(container = %id, action = ?h.config.on_failure, "unhealthy");
        match h.config.on_failure {
            OnFailure::None => {}
            OnFailure::Kill => {
                let _ = daemon.kill(&id, "all", libc::SIGKILL).await;
            }
            OnFailure::Stop => {
                // Stopped on purpose: a restart policy leaves it so.
                let _ = daemon.mark_stopped_by_user(&id).await;
                let _ = daemon.kill(&id, "init", libc::SIGTERM).await;
                let waited = tokio::time::timeout(Duration::from_secs(10), daemon.wait(&id));
                if waited.await.is_err() {
                    let _ = daemon.kill(&id, "all", libc::SIGKILL).await;
                }
            }
            OnFailure::Restart => {
                let _ = daemon.kill(&id, "all", libc::SIGKILL).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), daemon.wait(&id)).await;
                // Not if a Delete or a Stop came meanwhile.
                let stopped = |r: &crate::store::ContainerRecord| {
                    r.status == Status::Stopped
                        && !r.restart.as_ref().is_some_and(|x| x.stopped_by_user)
                };
                if let Err(e) = crate::restart::relaunch(&conn, &daemon, &id, stopped).await {
                    tracing::error!(container = %id, "restart of an unhealthy container: {e}");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_after_the_start_period_and_success_resets() {
        let mut h = HealthRecord::new(HealthConfig {
            retries: 2,
            start_period_us: 1_000,
            ..Default::default()
        });
        h.record(1, 500, 0);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        h.record(1, 2_000, 0);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 1));
        h.record(1, 3_000, 0);
        assert_eq!(h.status, UNHEALTHY);
        h.record(0, 4_000, 0);
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        h.reset();
        assert_eq!((h.status.as_str(), h.config.retries), (STARTING, 2));
    }
}
