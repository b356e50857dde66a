//! `linux.seccomp.listenerPath`: the seccomp agent that answers the
//! SCMP_ACT_NOTIFY rules gets each listener fd from the runtime side, as the
//! runtime-spec's "container process state" over a fresh connection.
//!
//! The process that loads the filter cannot do it: the container's init has
//! pivoted away from the host path by then, and each syscall it makes under
//! its own filter could be one that waits for the agent. So it hands the fd
//! to its creator (create) or caller (exec) over a sync channel, and they
//! connect — runc's split, with SCM_RIGHTS where runc uses pidfd_getfd.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};

use crate::hooks::OciState;
use crate::sync::{Channel, ToCreator};

/// The name of the listener fd in [`ContainerProcessState::fds`].
pub const SECCOMP_FD_NAME: &str = "seccompFd";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("a seccomp listener fd arrived but linux.seccomp.listenerPath is not set")]
    NoListenerPath,
    #[error("the seccomp filter was loaded but its listener fd did not arrive")]
    NoFd,
    #[error("receiving the seccomp listener fd: {source}")]
    Channel { source: std::io::Error },
    #[error("connecting to the seccomp agent at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sending the seccomp fd to the agent at {path}: {source}")]
    Send {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The runtime-spec's container process state (config-linux.md), what the
/// agent receives with the fds named in `fds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProcessState {
    pub oci_version: String,
    pub fds: Vec<String>,
    /// The process that loaded the filter, as the runtime sees it.
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    pub state: OciState,
}

/// Sends `fd`, the listener of the filter `s` that process `pid` loaded, to
/// `s.listenerPath`: one connection, one message, closed (the spec forbids
/// reuse). The agent having the fd is all a notifying process waits for.
pub fn send(s: &LinuxSeccomp, pid: i32, state: OciState, fd: OwnedFd) -> Result<(), AgentError> {
    let path = s
        .listener_path()
        .clone()
        .ok_or(AgentError::NoListenerPath)?;
    let msg = ContainerProcessState {
        oci_version: state.oci_version.clone(),
        fds: vec![SECCOMP_FD_NAME.into()],
        pid,
        metadata: s.listener_metadata().clone(),
        state,
    };
    let bytes = serde_json::to_vec(&msg).map_err(|e| AgentError::Send {
        path: path.clone(),
        source: e.into(),
    })?;
    let mut conn = UnixStream::connect(&path).map_err(|source| AgentError::Connect {
        path: path.clone(),
        source,
    })?;
    let send_err = |source: std::io::Error| AgentError::Send {
        path: path.clone(),
        source,
    };
    let fds = [fd.as_raw_fd()];
    let sent = loop {
        match sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::Error::EINTR) => continue,
            other => break other.map_err(|e| send_err(e.into()))?,
        }
    };
    // A stream may take part of it; the spec allows more sendmsg calls as
    // long as the fds went with the first.
    conn.write_all(&bytes[sent..]).map_err(send_err)?;
    Ok(())
}

/// Waits on `ch` for the listener fd of the filter `s` that process `pid`
/// loads, and sends it on. Nothing to send when the channel closes first:
/// the process failed before loading (its error comes another way) or
/// exec'd without a listener.
pub fn forward(
    ch: &Channel,
    s: &LinuxSeccomp,
    pid: i32,
    state: OciState,
) -> Result<(), AgentError> {
    match ch.recv_with_fd::<ToCreator>() {
        Ok(Some((ToCreator::SeccompListener, Some(fd)))) => send(s, pid, state, fd),
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(AgentError::NoFd),
        Err(source) => Err(AgentError::Channel { source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSliceMut;
    use std::os::fd::{FromRawFd, RawFd};
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_agent_gets_state_and_fd_on_one_connection() {
        let dir = std::env::temp_dir().join(format!("berth-agent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sock = dir.join("agent.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock, "listenerMetadata": "MKNOD=/dev/null",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .expect("seccomp");
        let state = OciState {
            oci_version: "1.2.0".into(),
            id: "c1".into(),
            status: "creating".into(),
            pid: Some(42),
            bundle: "/b".into(),
            annotations: Default::default(),
        };
        let (r, w) = nix::unistd::pipe().expect("pipe");
        send(&s, 42, state.clone(), w).expect("send");

        let (conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let m = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for c in m.cmsgs().expect("cmsgs") {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
                fds.extend(f);
            }
        }
        let n = m.bytes;
        let got: ContainerProcessState = serde_json::from_slice(&buf[..n]).expect("state JSON");
        assert_eq!(got.fds, ["seccompFd"]);
        assert_eq!(
            (got.pid, got.metadata.as_deref()),
            (42, Some("MKNOD=/dev/null"))
        );
        assert_eq!(got.state, state);
        assert_eq!(fds.len(), 1);
        // SAFETY: SCM_RIGHTS just installed it; we own it.
        let w = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        nix::unistd::write(&w, b"y").expect("write through the passed fd");
        let mut one = [0u8; 1];
        nix::unistd::read(r.as_raw_fd(), &mut one).expect("read");
        assert_eq!(&one, b"y");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_absent_agent_is_an_error_naming_the_path() {
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent/berth-agent.sock"
        }))
        .expect("seccomp");
        let state = OciState {
            oci_version: "1.2.0".into(),
            id: "c1".into(),
            status: "creating".into(),
            pid: None,
            bundle: "/b".into(),
            annotations: Default::default(),
        };
        let (_r, w) = nix::unistd::pipe().expect("pipe");
        let err = send(&s, 1, state, w).expect_err("no agent");
        assert!(
            err.to_string().contains("/nonexistent/berth-agent.sock"),
            "{err}"
        );
    }
}
