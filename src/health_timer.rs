//! The timer that runs a container's health check: a transient
//! `berth-health-<id>.timer` with its oneshot `berth-health-<id>.service`
//! (podman's way: `systemd-run --on-unit-inactive=<interval>` running
//! `podman healthcheck run <id>`). The service calls RunHealthcheck with
//! busctl, which every systemd host has, so no berthctl path is baked into
//! units. Started when the container starts, stopped at its exit and at
//! delete; recovery starts it again for running containers (a timer that
//! is still there is kept).

use zbus::zvariant::{OwnedObjectPath, Value};

use crate::health::HealthConfig;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const SYSTEMD_MANAGER: &str = "org.freedesktop.systemd1.Manager";

pub fn timer_unit(id: &str) -> String {
    format!("berth-health-{id}.timer")
}

pub fn service_unit(id: &str) -> String {
    format!("berth-health-{id}.service")
}

fn busctl() -> &'static str {
    ["/usr/bin/busctl", "/bin/busctl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/usr/bin/busctl")
}

/// Starts the timer of container `id` (first check one interval after the
/// start, then one interval after each check ends). A timer already there
/// (berthd restarted, the timer did not) is fine.
pub async fn start(conn: &zbus::Connection, id: &str, cfg: &HealthConfig) -> zbus::Result<()> {
    let interval = cfg.interval_us;
    // systemd's default accuracy is a minute: far too coarse for a 1 s check.
    let accuracy = (interval / 10).clamp(1_000, 1_000_000);
    // busctl's own timeout (25 s by default) must outlast the check's.
    let call_timeout = format!("--timeout={}s", cfg.timeout_us / 1_000_000 + 10);
    let argv: Vec<String> = [
        "busctl",
        call_timeout.as_str(),
        "call",
        crate::api::BUS_NAME,
        crate::api::MANAGER_PATH,
        "io.berth.Berth1.Manager",
        "RunHealthcheck",
        "s",
        id,
    ]
    .map(String::from)
    .to_vec();
    let exec_start = vec![(busctl().to_string(), argv, false)];
    let service: Vec<(&str, Value<'_>)> = vec![
        (
            "Description",
            Value::from(format!("berth health check of {id}")),
        ),
        ("Type", Value::from("oneshot")),
        ("ExecStart", Value::from(exec_start)),
        ("CollectMode", Value::from("inactive-or-failed")),
    ];
    let timers = vec![
        ("OnActiveSec".to_string(), interval),
        ("OnUnitInactiveSec".to_string(), interval),
    ];
    let timer: Vec<(&str, Value<'_>)> = vec![
        (
            "Description",
            Value::from(format!("berth health checks of {id}")),
        ),
        ("TimersMonotonic", Value::from(timers)),
        ("AccuracyUSec", Value::from(accuracy)),
    ];
    let service_name = service_unit(id);
    let aux = vec![(service_name.as_str(), service)];
    let reply = conn
        .call_method(
            Some(SYSTEMD),
            SYSTEMD_PATH,
            Some(SYSTEMD_MANAGER),
            "StartTransientUnit",
            &(timer_unit(id).as_str(), "fail", timer, aux),
        )
        .await;
    match reply {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.systemd1.UnitExists" =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Stops the timer and a check it may be running; both are transient, so
/// systemd forgets them once stopped. Units that are not there are fine.
pub async fn stop(conn: &zbus::Connection, id: &str) {
    for unit in [timer_unit(id), service_unit(id)] {
        let reply = conn
            .call_method(
                Some(SYSTEMD),
                SYSTEMD_PATH,
                Some(SYSTEMD_MANAGER),
                "StopUnit",
                &(unit.as_str(), "replace"),
            )
            .await;
        if let Ok(msg) = reply {
            let _: Option<OwnedObjectPath> = msg.body().deserialize().ok();
        }
    }
}
