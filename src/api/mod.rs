//! The D-Bus face of berthd: io.berth.Berth1 — a Manager at /io/berth/Berth1
//! and one object per container, machined-style.

mod caller_uid;
pub mod container;
pub mod copy;
pub mod error;
pub mod images;
pub mod lifecycle;
pub mod manager;
pub mod networks;
pub mod verbs;
pub mod volumes;

use std::collections::HashMap;

use zbus::zvariant::OwnedObjectPath;

pub const BUS_NAME: &str = "io.berth.Berth1";
pub const MANAGER_PATH: &str = "/io/berth/Berth1";

/// A container's object path. Ids may hold `.`, `-`, `+`, which object paths
/// may not: every byte outside [A-Za-z0-9] becomes `_xx` (hex), as systemd
/// escapes unit names in its paths.
pub fn container_path(id: &str) -> OwnedObjectPath {
    escaped_path("container", id)
}

/// `/io/berth/Berth1/<kind>/<escaped name>` (see container_path).
pub fn escaped_path(kind: &str, id: &str) -> OwnedObjectPath {
    let mut label = String::with_capacity(id.len() * 3);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() {
            label.push(b as char);
        } else {
            label.push_str(&format!("_{b:02x}"));
        }
    }
    if label.is_empty() {
        label.push('_');
    }
    OwnedObjectPath::try_from(format!("{MANAGER_PATH}/{kind}/{label}"))
        .unwrap_or_else(|_| OwnedObjectPath::try_from(MANAGER_PATH).expect("static path is valid"))
}

/// The polkit action that guards every mutating method (and attaching,
/// which can write to a container's stdin).
pub const MANAGE_ACTION: &str = "io.berth.berth1.manage";
/// The polkit action that guards reading a container's logs.
pub const READ_ACTION: &str = "io.berth.berth1.read";

#[zbus::proxy(
    interface = "org.freedesktop.PolicyKit1.Authority",
    default_service = "org.freedesktop.PolicyKit1",
    default_path = "/org/freedesktop/PolicyKit1/Authority"
)]
trait Authority {
    #[allow(clippy::type_complexity)]
    fn check_authorization(
        &self,
        subject: &(&str, HashMap<&str, zbus::zvariant::Value<'_>>),
        action_id: &str,
        details: HashMap<&str, &str>,
        flags: u32,
        cancellation_id: &str,
    ) -> zbus::Result<(bool, bool, HashMap<String, String>)>;
}

/// Mutating calls: root, or a caller polkit authorizes for
/// `io.berth.berth1.manage` (no interactive authentication: berthd is a
/// service, the caller's agent is not ours to drive). Read-only calls are
/// open to everyone.
pub async fn require_root(
    conn: &zbus::Connection,
    hdr: &zbus::message::Header<'_>,
) -> error::Result<()> {
    authorize(conn, hdr, MANAGE_ACTION).await
}

/// Root, or a caller polkit authorizes for `action`.
pub async fn authorize(
    conn: &zbus::Connection,
    hdr: &zbus::message::Header<'_>,
    action: &str,
) -> error::Result<()> {
    let sender = hdr
        .sender()
        .ok_or_else(|| error::Error::PermissionDenied("no sender on the call".into()))?;
    let uid = caller_uid::caller_uid(conn, sender)
        .await
        .map_err(|e| error::Error::Internal(e.to_string()))?;
    if uid == 0 {
        return Ok(());
    }
    let denied = |why: String| {
        error::Error::PermissionDenied(format!(
            "uid {uid} may not do this: root only, or polkit action {action} ({why})"
        ))
    };
    let authority = AuthorityProxy::new(conn)
        .await
        .map_err(|e| denied(format!("polkit unreachable: {e}")))?;
    let mut who = HashMap::new();
    who.insert("name", zbus::zvariant::Value::from(sender.as_str()));
    let (authorized, _, _) = authority
        .check_authorization(&("system-bus-name", who), action, HashMap::new(), 0, "")
        .await
        .map_err(|e| denied(format!("polkit: {e}")))?;
    if authorized {
        Ok(())
    } else {
        Err(denied("not authorized".into()))
    }
}

/// The Pid property: the init's pid while it may run, 0 once it stopped (the
/// pid may be another process's by then).
pub fn shown_pid(rec: &crate::store::ContainerRecord) -> u32 {
    match rec.status {
        crate::lifecycle::Status::Stopped => 0,
        _ => rec.pid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_every_non_alphanumeric_byte() {
        assert_eq!(
            container_path("web").as_str(),
            "/io/berth/Berth1/container/web"
        );
        assert_eq!(
            container_path("a.b-c_d+1").as_str(),
            "/io/berth/Berth1/container/a_2eb_2dc_5fd_2b1"
        );
    }
}
