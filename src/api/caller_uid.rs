//! The uid behind a caller's bus name, asked of the bus once per connection.
//!
//! Every mutating call is authorized by its sender's uid (root passes, the
//! rest go to polkit), and asking dbus-daemon is a round trip through it
//! per call: four of the five calls of `berthctl run --rm` and every call of
//! a client that keeps its connection (berth-cri, the bench) asked again.
//! A unique name (":1.42") belongs to one connection for the bus's whole
//! life and is never handed out again, and a connection's credentials are
//! fixed when it connects, so the answer cannot go stale. Only the uid is
//! kept: polkit's answers can change (a temporary authorization) and are
//! asked every time.

use std::collections::HashMap;
use std::sync::Mutex;

/// Names kept at most; past that the map starts over (a burst of clients
/// each making one call gains nothing from it anyway).
const MAX: usize = 256;

struct Cache {
    /// Our own unique name when the entries were made: another connection
    /// (a bus restart) means another namespace of names.
    bus: String,
    uids: HashMap<String, u32>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// The uid dbus-daemon gave for `sender` on `conn`'s bus, from the cache or
/// asked (and then kept).
pub async fn caller_uid(
    conn: &zbus::Connection,
    sender: &zbus::names::UniqueName<'_>,
) -> zbus::Result<u32> {
    let bus = conn
        .unique_name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    if let Some(uid) = lookup(&bus, sender.as_str()) {
        return Ok(uid);
    }
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let uid = dbus.get_connection_unix_user(sender.clone().into()).await?;
    keep(bus, sender.as_str(), uid);
    Ok(uid)
}

fn lookup(bus: &str, sender: &str) -> Option<u32> {
    let cache = CACHE.lock().ok()?;
    let c = cache.as_ref().filter(|c| c.bus == bus)?;
    c.uids.get(sender).copied()
}

fn keep(bus: String, sender: &str, uid: u32) {
    let Ok(mut cache) = CACHE.lock() else {
        return;
    };
    let c = cache.get_or_insert_with(|| Cache {
        bus: bus.clone(),
        uids: HashMap::new(),
    });
    if c.bus != bus || c.uids.len() >= MAX {
        c.bus = bus;
        c.uids.clear();
    }
    c.uids.insert(sender.to_string(), uid);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_per_bus_and_bounded() {
        keep("bus-a".into(), ":1.1", 0);
        keep("bus-a".into(), ":1.2", 1000);
        assert_eq!(lookup("bus-a", ":1.1"), Some(0));
        assert_eq!(lookup("bus-a", ":1.2"), Some(1000));
        // Another connection of ours: the names meant other callers.
        assert_eq!(lookup("bus-b", ":1.1"), None);
        keep("bus-b".into(), ":1.3", 7);
        assert_eq!(lookup("bus-a", ":1.2"), None);
        for i in 0..MAX + 1 {
            keep("bus-b".into(), &format!(":1.{}", 100 + i), 5);
        }
        assert!(CACHE.lock().unwrap().as_ref().unwrap().uids.len() <= MAX);
    }
}
