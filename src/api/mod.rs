//! The D-Bus face of berthd: io.berth.Berth1 — a Manager at /io/berth/Berth1
//! and one object per container, machined-style.

pub mod container;
pub mod error;
pub mod manager;

use zbus::zvariant::OwnedObjectPath;

pub const BUS_NAME: &str = "io.berth.Berth1";
pub const MANAGER_PATH: &str = "/io/berth/Berth1";

/// A container's object path. Ids may hold `.`, `-`, `+`, which object paths
/// may not: every byte outside [A-Za-z0-9] becomes `_xx` (hex), as systemd
/// escapes unit names in its paths.
pub fn container_path(id: &str) -> OwnedObjectPath {
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
    OwnedObjectPath::try_from(format!("{MANAGER_PATH}/container/{label}"))
        .unwrap_or_else(|_| OwnedObjectPath::try_from(MANAGER_PATH).expect("static path is valid"))
}

/// Mutating calls are for root (polkit for others arrives with the packaging
/// of the policy). Read-only calls are open to everyone.
pub async fn require_root(
    conn: &zbus::Connection,
    hdr: &zbus::message::Header<'_>,
) -> error::Result<()> {
    let sender = hdr
        .sender()
        .ok_or_else(|| error::Error::PermissionDenied("no sender on the call".into()))?;
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(error::Error::ZBus)?;
    let uid = dbus
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|e| error::Error::Internal(e.to_string()))?;
    if uid == 0 {
        Ok(())
    } else {
        Err(error::Error::PermissionDenied(format!(
            "uid {uid} may not change containers (root only)"
        )))
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
