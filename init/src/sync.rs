//! The channel between the creator and the container init.
//!
//! A SOCK_SEQPACKET socketpair carries one JSON message per packet, so message
//! boundaries survive and a dead peer shows up as EOF rather than a hang. The
//! creator speaks first (ids mapped, cgroup joined: `Proceed`), the init answers
//! with `RunHooks` at the createRuntime point and finally `Ready` or `Error`.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Creator → init.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum ToInit {
    /// Go on; `pid` is the init's pid as the creator sees it (for hook state).
    Proceed { pid: i32 },
    /// Give up (the creator failed); the init exits.
    Abort,
}

/// Init → creator.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum ToCreator {
    /// Namespaces exist, mounts not yet pivoted: run prestart/createRuntime hooks.
    RunHooks,
    /// Set up, blocked before the exec FIFO.
    Ready,
    /// Setup failed: which step and why.
    Error(crate::error::ChildFailure),
}

const MAX_MESSAGE: usize = 64 * 1024;

pub struct Channel(OwnedFd);

/// Both ends, close-on-exec so neither leaks into the container's process.
pub fn pair() -> nix::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send<T: Serialize>(&self, msg: &T) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        send(self.raw(), &bytes, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the peer is gone.
    pub fn recv<T: DeserializeOwned>(&self) -> std::io::Result<Option<T>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match recv(self.raw(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(std::io::Error::other)
    }

    pub fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_eof_is_seen() {
        let (a, b) = pair().unwrap();
        a.send(&ToInit::Proceed { pid: 42 }).unwrap();
        assert_eq!(
            b.recv::<ToInit>().unwrap(),
            Some(ToInit::Proceed { pid: 42 })
        );
        b.send(&ToCreator::Error("mount /proc: EPERM".into()))
            .unwrap();
        assert_eq!(
            a.recv::<ToCreator>().unwrap(),
            Some(ToCreator::Error("mount /proc: EPERM".into()))
        );
        drop(b);
        assert_eq!(a.recv::<ToCreator>().unwrap(), None);
    }
}
