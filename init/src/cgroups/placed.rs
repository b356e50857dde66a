//! A container's scope started by whoever started its creator, on that
//! process's own system bus connection: berthd places the inits of the shims
//! its exec server forks.
//!
//! Why: a shim that starts the scope itself opens a system bus connection
//! for it — authentication, Hello, NameOwnerChanged to every peer watching
//! names, zbus's threads, the match for its job, the teardown — which cost
//! more CPU (dbus-daemon's, systemd's, its own) than the scope's start, and
//! held one of dbus-daemon's 256 connections per uid while it waited.
//! berthd holds one connection for its whole life.
//!
//! The creator sends a [`PlaceRequest`] line on its report socket and reads
//! one [`PlaceReply`] line back; the starter runs [`PlaceRequest::apply`],
//! which is what the creator's systemd driver would have done (same unit,
//! slice and properties, same cleanup when it fails).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_proto::FailureKind;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::systemd::{destroy_scopes, SystemdManager};
use super::{CgroupManager, Result};

/// Longest reply line read back (an error message and its kind).
const MAX_REPLY: usize = 64 * 1024;

/// "Make the scope of container `id` and put `pid` in it."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceRequest {
    pub id: String,
    /// The spec's linux.cgroupsPath.
    pub cgroups_path: Option<PathBuf>,
    pub pid: i32,
    pub resources: Option<LinuxResources>,
}

/// The line a creator sends: `{"place":{…}}`.
#[derive(Deserialize)]
struct Line {
    place: PlaceRequest,
}

impl PlaceRequest {
    pub fn to_line(&self) -> String {
        // Serialized by reference: no copy of the resources per request.
        #[derive(Serialize)]
        struct LineOf<'a> {
            place: &'a PlaceRequest,
        }
        let line = serde_json::to_string(&LineOf { place: self }).unwrap_or_default();
        format!("{line}\n")
    }

    /// The request in `line`, if it is one (else it is the creator's report).
    pub fn parse(line: &str) -> Option<PlaceRequest> {
        serde_json::from_str::<Line>(line.trim())
            .ok()
            .map(|l| l.place)
    }

    /// Starts the scope with the pid in it, as the systemd driver does in
    /// the creator; on error nothing is left (no unit). Returns the unit.
    pub fn apply(&self) -> Result<String> {
        let path = self.cgroups_path.as_deref();
        let mut m = super::manager(true, &self.id, path)?;
        m.apply(self.pid, self.resources.as_ref())?;
        Ok(m.path())
    }
}

/// The starter's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlaceReply {
    Placed { placed: String },
    Failed { error: String, kind: FailureKind },
}

impl PlaceReply {
    pub fn to_line(&self) -> String {
        let line = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"error":"encoding the placement's reply: {e}","kind":"Internal"}}"#)
        });
        format!("{line}\n")
    }
}

/// The creator's side: asks over `channel` (the report socket) and waits.
#[derive(Clone)]
pub struct Placer {
    channel: Arc<Mutex<std::fs::File>>,
}

impl std::fmt::Debug for Placer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Placer")
    }
}

impl Placer {
    pub fn over(channel: OwnedFd) -> Placer {
        Placer {
            channel: Arc::new(Mutex::new(std::fs::File::from(channel))),
        }
    }

    /// Sends `req` and reads the reply: the unit, or (message, kind).
    pub fn place(&self, req: &PlaceRequest) -> std::result::Result<String, (String, FailureKind)> {
        let internal = |e: String| (e, FailureKind::Internal);
        let mut ch = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        ch.write_all(req.to_line().as_bytes())
            .map_err(|e| internal(format!("asking the starter to place the init: {e}")))?;
        // Byte by byte: nothing past the reply's newline is ours to take.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < MAX_REPLY {
            match ch.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(internal(format!("reading the placement's reply: {e}"))),
            }
        }
        if line.is_empty() {
            return Err(internal(
                "the starter went away while placing the init".into(),
            ));
        }
        match serde_json::from_slice::<PlaceReply>(&line) {
            Ok(PlaceReply::Placed { placed }) => Ok(placed),
            Ok(PlaceReply::Failed { error, kind }) => Err((error, kind)),
            Err(e) => Err(internal(format!("the placement's reply: {e}"))),
        }
    }
}

/// A scope the starter made, as the creator's undo sees it: removing it
/// (the only thing create does with it) needs a bus connection, made then.
pub struct PlacedScope {
    unit: String,
}

impl PlacedScope {
    pub fn new(unit: String) -> PlacedScope {
        PlacedScope { unit }
    }

    fn manager(&self) -> Result<SystemdManager> {
        SystemdManager::reopen(&self.unit)
    }
}

impl CgroupManager for PlacedScope {
    fn apply(&mut self, pid: i32, resources: Option<&LinuxResources>) -> Result<()> {
        self.manager()?.apply(pid, resources)
    }
    fn freeze(&self) -> Result<()> {
        self.manager()?.freeze()
    }
    fn thaw(&self) -> Result<()> {
        self.manager()?.thaw()
    }
    fn is_frozen(&self) -> Result<bool> {
        self.manager()?.is_frozen()
    }
    fn pids(&self) -> Result<Vec<i32>> {
        self.manager()?.pids()
    }
    fn update(&mut self, resources: &LinuxResources) -> Result<()> {
        self.manager()?.update(resources)
    }
    fn destroy(&mut self) -> Result<()> {
        destroy_scopes(std::slice::from_ref(&self.unit))
    }
    fn path(&self) -> String {
        self.unit.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_is_told_from_a_report() {
        let req = PlaceRequest {
            id: "c1".into(),
            cgroups_path: Some("berth.slice:berth:c1".into()),
            pid: 42,
            resources: None,
        };
        let line = req.to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(PlaceRequest::parse(&line), Some(req));
        assert_eq!(PlaceRequest::parse(r#"{"init_pid":1,"shim_pid":2}"#), None);
        assert_eq!(
            PlaceRequest::parse(r#"{"error":"x","kind":"Internal"}"#),
            None
        );
    }

    #[test]
    fn the_reply_carries_the_unit_or_the_kind() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let placer = Placer::over(a.into());
        let starter = std::thread::spawn(move || {
            let mut b = b;
            let mut got = Vec::new();
            for reply in [
                PlaceReply::Placed {
                    placed: "berth-c1.scope".into(),
                },
                PlaceReply::Failed {
                    error: "unit berth-c1.scope already exists".into(),
                    kind: FailureKind::AlreadyExists,
                },
            ] {
                let mut buf = [0u8; 4096];
                let n = b.read(&mut buf).unwrap();
                got.push(PlaceRequest::parse(std::str::from_utf8(&buf[..n]).unwrap()));
                b.write_all(reply.to_line().as_bytes()).unwrap();
            }
            got
        });
        let req = PlaceRequest {
            id: "c1".into(),
            cgroups_path: None,
            pid: 7,
            resources: None,
        };
        assert_eq!(placer.place(&req), Ok("berth-c1.scope".into()));
        let (msg, kind) = placer.place(&req).unwrap_err();
        assert_eq!(kind, FailureKind::AlreadyExists);
        assert!(msg.contains("already exists"), "{msg}");
        let seen = starter.join().unwrap();
        assert_eq!(seen, vec![Some(req.clone()), Some(req.clone())]);
        // The starter gone: a failure (EPIPE, or EOF), not a hang.
        assert_eq!(placer.place(&req).unwrap_err().1, FailureKind::Internal);
    }
}
