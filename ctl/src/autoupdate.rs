//! `berthctl auto-update [--dry-run]`, podman auto-update's model: every
//! running container labelled `io.berth.autoupdate=registry` and run by a
//! unit (berth@NAME or the generated berth-NAME.service, which label it
//! `io.berth.unit`) is checked against its registry; when the image's
//! manifest digest changed, the image is pulled and the unit restarted. A
//! unit that does not come back active is rolled back: the image name points
//! at the previous image again and the unit is restarted once more.
//! berth-auto-update.timer runs it daily.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::Duration;

use berth_client::{ContainerProxyBlocking, ImagesProxyBlocking};
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::{connect, Failed, Result};

/// The label naming the unit that runs a container (set by run-unit).
pub const UNIT_LABEL: &str = "io.berth.unit";
/// The label that opts a container in; `registry` is the one policy.
pub const POLICY_LABEL: &str = "io.berth.autoupdate";

/// How long a unit's restart job may take (the container's stop timeout,
/// its create and start).
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Systemd {
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// Sent to the client that asked for the job, no Subscribe needed.
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String);
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait SystemdUnit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

/// One unit to look at.
struct Task {
    container: String,
    image: String,
}

/// Restarts `unit` and waits for its job: Ok once it is active again, else
/// why not.
fn restart(conn: &zbus::blocking::Connection, unit: &str) -> std::result::Result<(), String> {
    let sd = SystemdProxyBlocking::new(conn).map_err(|e| e.to_string())?;
    // Listening before the job exists: a fast job is not missed.
    let removed = sd.receive_job_removed().map_err(|e| e.to_string())?;
    let job = sd
        .restart_unit(unit, "replace")
        .map_err(|e| format!("restarting {unit}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in removed {
            if let Ok(a) = s.args() {
                if a.job == job {
                    let _ = tx.send(a.result);
                    return;
                }
            }
        }
    });
    let result = rx
        .recv_timeout(RESTART_TIMEOUT)
        .map_err(|_| format!("{unit}: no job result in {RESTART_TIMEOUT:?}"))?;
    let path = sd.get_unit(unit).map_err(|e| e.to_string())?;
    let state = SystemdUnitProxyBlocking::builder(conn)
        .path(path)
        .and_then(|b| b.cache_properties(zbus::proxy::CacheProperties::No).build())
        .and_then(|u| u.active_state())
        .map_err(|e| e.to_string())?;
    match (result.as_str(), state.as_str()) {
        ("done", "active") => Ok(()),
        _ => Err(format!("{unit}: job {result}, unit {state}")),
    }
}

/// A second name for the image a unit runs now, so a rollback can find it
/// once the pull has moved the name on (FNV-1a of the name: stable, short).
fn rollback_name(image: &str) -> String {
    let h = image.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("localhost/berth-auto-update:{h:016x}")
}

fn manifest(images: &ImagesProxyBlocking, image: &str) -> zbus::Result<String> {
    let json = images.inspect_image(image)?;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    Ok(v["Manifest"].as_str().unwrap_or_default().to_string())
}

/// Pulls and restarts; rolls back when the unit does not come back. The
/// UPDATED column's text.
fn update(
    conn: &zbus::blocking::Connection,
    images: &ImagesProxyBlocking,
    unit: &str,
    image: &str,
) -> String {
    let no_options = || HashMap::<&str, Value>::new();
    let backup = rollback_name(image);
    if let Err(e) = images.tag_image(image, &backup) {
        return format!(
            "failed: keeping the current image: {}",
            berth_client::describe(&e)
        );
    }
    if let Err(e) = images.pull_image(image, no_options()) {
        let _ = images.remove_image(&backup);
        return format!("failed: pull: {}", berth_client::describe(&e));
    }
    let outcome = match restart(conn, unit) {
        Ok(()) => "true".to_string(),
        Err(why) => match images.tag_image(&backup, image) {
            Err(e) => format!("failed: {why}; rollback: {}", berth_client::describe(&e)),
            Ok(_) => match restart(conn, unit) {
                Ok(()) => format!("rolled back ({why})"),
                Err(again) => format!("failed: {why}; after rollback: {again}"),
            },
        },
    };
    let _ = images.remove_image(&backup);
    outcome
}

pub fn run(dry_run: bool) -> Result<u8> {
    let (conn, m) = connect()?;
    let images = ImagesProxyBlocking::new(&conn)?;
    // One entry per unit: a unit runs one container.
    let mut tasks: BTreeMap<String, Task> = BTreeMap::new();
    let mut rows: Vec<[String; 5]> = Vec::new();
    for (id, status, path) in m.list_containers()? {
        if !matches!(status.as_str(), "running" | "paused") {
            continue;
        }
        let c = ContainerProxyBlocking::builder(&conn)
            .path(path)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()?;
        let labels = c.labels()?;
        let Some(policy) = labels.get(POLICY_LABEL) else {
            continue;
        };
        let image = c.image()?;
        let unit = labels.get(UNIT_LABEL).cloned().unwrap_or_default();
        let problem = match (policy.as_str(), image.is_empty(), unit.is_empty()) {
            ("registry", false, false) => None,
            ("registry", true, _) => Some("failed: not created from an image"),
            ("registry", _, true) => Some("failed: not run by a unit (berth@NAME, berth-NAME)"),
            _ => Some("failed: unknown policy (known: registry)"),
        };
        match problem {
            Some(p) => rows.push([unit, id, image, policy.clone(), p.into()]),
            None => {
                tasks.insert(
                    unit,
                    Task {
                        container: id,
                        image,
                    },
                );
            }
        }
    }
    for (unit, t) in tasks {
        let check = manifest(&images, &t.image)
            .and_then(|local| Ok((local, images.get_remote_digest(&t.image, HashMap::new())?)));
        let updated = match check {
            Err(e) => format!("failed: {}", berth_client::describe(&e)),
            Ok((local, remote)) if local == remote => "false".into(),
            Ok(_) if dry_run => "pending".into(),
            Ok(_) => update(&conn, &images, &unit, &t.image),
        };
        rows.push([unit, t.container, t.image, "registry".into(), updated]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(9))
        .collect();
    println!(
        "{:w0$}  {:w1$}  {:w2$}  {:w3$}  UPDATED",
        "UNIT",
        "CONTAINER",
        "IMAGE",
        "POLICY",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2],
        w3 = widths[3]
    );
    let mut failed = false;
    for r in &rows {
        failed |= r[4].starts_with("failed") || r[4].starts_with("rolled back");
        println!(
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    // Non-zero: the timer's service shows the failure (and its journal why).
    match failed {
        true => Err(Failed {
            msg: "auto-update: some units were not updated (see above)".into(),
            code: 1,
        }),
        false => Ok(0),
    }
}
