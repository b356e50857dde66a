//! Restart policies for containers berthd runs itself (berth@ units leave
//! it to systemd's Restart=): `no`, `on-failure[:N]`, `always`,
//! `unless-stopped`, as podman names them. After an exit the policy is asked
//! (`wants_restart`); a yes relaunches the same container — the same id,
//! bundle, rootfs and network — after a backoff (docker's: 100 ms doubling,
//! at most 30 s). The decision is a function of the record alone, so a
//! berthd that was down at the exit (or during the backoff) makes the same
//! one at its next start (recovery.rs).
//!
//! A stop asked for (Kill, Stop, Delete through the API) is recorded
//! (`stopped_by_user`) and never restarted, as podman does for `always`.

use std::sync::Arc;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::error::Result;
use crate::lifecycle::{Status, Verb};
use crate::store::ContainerRecord;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// A non-zero exit (or a signal); `max` attempts, 0 = no limit.
    OnFailure {
        max: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        Some(match s {
            "no" | "" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure { max: 0 },
            other => RestartPolicy::OnFailure {
                max: other.strip_prefix("on-failure:")?.parse().ok()?,
            },
        })
    }

    /// podman's words (inspect's HostConfig.RestartPolicy).
    pub fn name(self) -> String {
        match self {
            RestartPolicy::No => "no".into(),
            RestartPolicy::OnFailure { max: 0 } => "on-failure".into(),
            RestartPolicy::OnFailure { max } => format!("on-failure:{max}"),
            RestartPolicy::Always => "always".into(),
            RestartPolicy::UnlessStopped => "unless-stopped".into(),
        }
    }
}

/// What a relaunch needs besides the bundle (what create gave the shim),
/// and the policy's own state.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RestartRecord {
    pub policy: RestartPolicy,
    /// Relaunches so far (RestartCount).
    pub count: u32,
    /// Stopped through the API: no restart until started again.
    pub stopped_by_user: bool,
    pub stdin: bool,
    pub log_unit: Option<String>,
}

/// The most a backoff grows to.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether the stopped container `rec` is to be relaunched by its policy.
pub fn wants_restart(rec: &ContainerRecord) -> bool {
    let Some(r) = &rec.restart else {
        return false;
    };
    if rec.status != Status::Stopped || r.stopped_by_user {
        return false;
    }
    match r.policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure { max } => {
            let failed = rec.exit_code != 0 || rec.exit_signal != 0;
            failed && (max == 0 || r.count < max)
        }
    }
}

/// 100 ms, 200 ms, 400 ms … after the `count`th restart, at most MAX_BACKOFF.
pub fn backoff(count: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1u32 << count.min(16))
        .min(MAX_BACKOFF)
}

/// Relaunches `id` after its backoff, if its policy still wants it then
/// (a Delete or a Kill meanwhile says no).
pub fn schedule(conn: &zbus::Connection, daemon: &Arc<Daemon>, id: &str) {
    let Ok(rec) = daemon.get(id) else { return };
    if !wants_restart(&rec) {
        return;
    }
    let count = rec.restart.map_or(0, |r| r.count);
    let (conn, daemon, id) = (conn.clone(), daemon.clone(), id.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(backoff(count)).await;
        if let Err(e) = relaunch(&conn, &daemon, &id, wants_restart).await {
            tracing::error!(container = %id, "restart: {e}");
        }
    });
}

/// Runs stopped container `id` again if `still(rec)` holds under its gate:
/// the old state dir and scopes go, a new shim creates it from the same
/// bundle, and it starts. The count is written first: a crash inside makes
/// the next start's recovery relaunch again (cleaning what this one made).
pub async fn relaunch(
    conn: &zbus::Connection,
    daemon: &Arc<Daemon>,
    id: &str,
    still: fn(&ContainerRecord) -> bool,
) -> Result<()> {
    {
        let _gate = daemon.gate(id).await;
        // Deleted meanwhile: nothing to do.
        let Ok(rec) = daemon.get(id) else {
            return Ok(());
        };
        if !still(&rec) {
            return Ok(());
        }
        Daemon::step(&rec, Verb::Relaunch)?;
        let r = rec.restart.clone().unwrap_or_default();
        daemon
            .store
            .update(id, |rec| {
                if let Some(r) = rec.restart.as_mut() {
                    r.count += 1;
                }
            })
            .await?;
        let made = daemon.relaunch_shim(&rec, &r).await;
        let crate::shims::Processes {
            pid,
            pid_start,
            shim_pid,
            shim_start,
        } = match made {
            Ok(p) => p,
            Err(e) => {
                let why = format!("restart failed: {e}");
                let _ = daemon.store.update(id, move |r| r.exit_reason = why).await;
                crate::api::verbs::properties_changed(conn, id).await;
                return Err(e);
            }
        };
        daemon
            .store
            .update(id, move |r| {
                r.status = crate::lifecycle::after(r.status, Verb::Relaunch);
                (r.pid, r.pid_start, r.shim_pid, r.shim_start) =
                    (pid, pid_start, shim_pid, shim_start);
                (r.exit_code, r.exit_signal, r.exited_at) = (0, 0, 0);
                r.exit_reason.clear();
                if let Some(h) = r.health.as_mut() {
                    h.reset();
                }
            })
            .await?;
        // The last run's execs ended with it.
        daemon.store.clear_execs(id).await?;
        crate::api::verbs::watch_shim(conn, daemon, id, shim_pid, shim_start);
    }
    // Start as StartContainer does: its own gate, machined, the signals.
    crate::api::verbs::start(conn, daemon, id)
        .await
        .map_err(|e| crate::error::Error::FailedPrecondition(format!("starting again: {e}")))?;
    tracing::info!(container = %id, "restarted");
    Ok(())
}

impl Daemon {
    /// A new shim for stopped container `rec`, from the bundle it ran from.
    async fn relaunch_shim(
        &self,
        rec: &ContainerRecord,
        r: &RestartRecord,
    ) -> Result<crate::shims::Processes> {
        let id = rec.id.as_str();
        let execs = self.store.execs(id)?;
        let shim_scopes = crate::monitors::legacy_scopes(id, execs.keys());
        crate::init_calls::delete(&self.run_dir, id, shim_scopes).await?;
        if !rec.image.is_empty() {
            // Mounted still, unless the host rebooted: mount is idempotent.
            let id = id.to_string();
            crate::images::with_store::<_, crate::error::Error>(&self.images, move |s| {
                s.mount_rootfs(&id)
                    .map(drop)
                    .map_err(crate::images::image_error)
            })
            .await?;
        }
        let derived = self.bundles_dir.join(id);
        let bundle = match derived.join("config.json").exists() {
            true => derived,
            false => std::path::PathBuf::from(&rec.bundle),
        };
        let b = bundle.to_string_lossy().into_owned();
        let mut args = vec!["--bundle", &b, "--systemd-cgroup"];
        if r.stdin {
            args.push("--stdin");
        }
        if let Some(unit) = &r.log_unit {
            args.extend(["--log-unit", unit]);
        }
        self.run_shim(id, &args, &Default::default()).await
    }

    /// Records that the container is being stopped on purpose: its policy
    /// must not bring it back.
    pub async fn mark_stopped_by_user(&self, id: &str) -> Result<()> {
        match self.get(id)?.restart {
            Some(r) if !r.stopped_by_user => {
                self.store
                    .update(id, |rec| {
                        if let Some(r) = rec.restart.as_mut() {
                            r.stopped_by_user = true;
                        }
                    })
                    .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Fills a new record's restart and health parts from its create options:
/// a restart part whenever it may be relaunched (a policy, or a health
/// check that may restart it).
pub fn remember(rec: &mut ContainerRecord, req: &crate::options::CreateOptions) {
    let health = req.lifecycle.health().ok().flatten();
    let may_relaunch = req.lifecycle.restart != RestartPolicy::No
        || health
            .as_ref()
            .is_some_and(|h| h.on_failure == crate::health::OnFailure::Restart);
    if may_relaunch {
        rec.restart = Some(RestartRecord {
            policy: req.lifecycle.restart,
            stdin: req.stdin,
            log_unit: req.log_unit.clone(),
            ..Default::default()
        });
    }
    rec.health = health.map(crate::health::HealthRecord::new);
}

/// A container a relaunch made (and no stop asked for): a `created` one of
/// these was cut short before its start.
pub fn relaunched(rec: &ContainerRecord) -> bool {
    rec.restart
        .as_ref()
        .is_some_and(|r| r.count > 0 && !r.stopped_by_user)
}

/// The restart count of `rec` (0 without a policy).
pub fn count(rec: &ContainerRecord) -> u32 {
    rec.restart.as_ref().map_or(0, |r| r.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(policy: RestartPolicy, code: i32, count: u32) -> ContainerRecord {
        ContainerRecord {
            status: Status::Stopped,
            exit_code: code,
            restart: Some(RestartRecord {
                policy,
                count,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn policies_decide_as_podman() {
        assert!(!wants_restart(&stopped(RestartPolicy::No, 1, 0)));
        assert!(wants_restart(&stopped(RestartPolicy::Always, 0, 5)));
        assert!(wants_restart(&stopped(RestartPolicy::UnlessStopped, 0, 0)));
        let on_failure = RestartPolicy::OnFailure { max: 2 };
        assert!(!wants_restart(&stopped(on_failure, 0, 0)));
        assert!(wants_restart(&stopped(on_failure, 1, 1)));
        assert!(!wants_restart(&stopped(on_failure, 1, 2)));
        let mut by_user = stopped(RestartPolicy::Always, 137, 0);
        by_user.restart.as_mut().unwrap().stopped_by_user = true;
        assert!(!wants_restart(&by_user));
        let mut running = stopped(RestartPolicy::Always, 0, 0);
        running.status = Status::Running;
        assert!(!wants_restart(&running));
    }

    #[test]
    fn names_round_trip_and_backoff_grows_to_its_cap() {
        for s in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:4",
        ] {
            assert_eq!(RestartPolicy::parse(s).unwrap().name(), s);
        }
        assert_eq!(RestartPolicy::parse("on-failure:-1"), None);
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
