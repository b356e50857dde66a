//! The channel between the creator and the container init.
//!
//! A SOCK_SEQPACKET socketpair carries one JSON message per packet, so message
//! boundaries survive and a dead peer shows up as EOF rather than a hang. The
//! creator speaks first (ids mapped: `Proceed`), then once the init sits in its
//! cgroup (`Placed`: the init sets up its mounts meanwhile, see [`PlacedGate`]);
//! the init answers with `RunHooks` at the createRuntime point and finally
//! `Ready` or `Error`.
//! A seccomp filter with SCMP_ACT_NOTIFY adds `SeccompListener`, whose packet
//! carries the listener fd (SCM_RIGHTS). An exec's process uses the same
//! channel type for that one message.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Creator → init.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum ToInit {
    /// Go on; `pid` is the init's pid as the creator sees it (for hook state).
    Proceed { pid: i32 },
    /// The init is in its cgroup (after `Proceed`, once per create).
    Placed,
    /// Give up (the creator failed); the init exits.
    Abort,
}

/// Init → creator.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum ToCreator {
    /// Namespaces exist, mounts not yet pivoted: run prestart/createRuntime hooks.
    RunHooks,
    /// The seccomp filter is loaded; its listener fd rides with this packet.
    SeccompListener,
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

    /// Sends `msg` with `fd` attached, in one sendmsg: after a seccomp
    /// filter is loaded, every syscall before the hand-over is one a
    /// notifying rule could block (see seccomp::HAND_OVER_SYSCALLS).
    pub fn send_with_fd<T: Serialize>(&self, msg: &T, fd: BorrowedFd) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.raw(),
            &[IoSlice::new(&bytes)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the peer is gone. An fd that
    /// came with it is closed.
    pub fn recv<T: DeserializeOwned>(&self) -> std::io::Result<Option<T>> {
        Ok(self.recv_with_fd()?.map(|(msg, _)| msg))
    }

    /// The creator's next word to the init; its giving up (`Abort`, or
    /// gone) and a broken channel as the init reports them.
    pub fn recv_from_creator(&self) -> Result<ToInit, String> {
        match self.recv::<ToInit>() {
            Ok(Some(ToInit::Abort)) | Ok(None) => Err("the creator went away".into()),
            Ok(Some(m)) => Ok(m),
            Err(e) => Err(format!("sync channel: {e}")),
        }
    }

    /// Receives one message and the fd that came with it, if any.
    pub fn recv_with_fd<T: DeserializeOwned>(
        &self,
    ) -> std::io::Result<Option<(T, Option<OwnedFd>)>> {
        self.recv_flags(MsgFlags::empty())
    }

    /// A message already waiting, without blocking: `Ok(None)` when there
    /// is none (or the peer is gone).
    pub fn try_recv<T: DeserializeOwned>(&self) -> std::io::Result<Option<T>> {
        match self.recv_flags(MsgFlags::MSG_DONTWAIT) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            other => Ok(other?.map(|(msg, _)| msg)),
        }
    }

    fn recv_flags<T: DeserializeOwned>(
        &self,
        extra: MsgFlags,
    ) -> std::io::Result<Option<(T, Option<OwnedFd>)>> {
        // A buffer of the message's size, not MAX_MESSAGE's: zeroing 64 KiB
        // per message in a freshly forked init was a copy-on-write fault per
        // page, on the create's path.
        let len = loop {
            match recv(
                self.raw(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | extra,
            ) {
                Err(nix::Error::EINTR) => continue,
                other => break other?,
            }
        };
        let mut buf = vec![0u8; len.clamp(1, MAX_MESSAGE)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            // CLOEXEC: a received fd must never reach what the creator runs.
            let flags = MsgFlags::MSG_CMSG_CLOEXEC | extra;
            match recvmsg::<()>(self.raw(), &mut iov, Some(&mut space), flags) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(m) => {
                    let mut fd = None;
                    for c in m.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: SCM_RIGHTS just installed this fd
                                // in our table; nothing else refers to it.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (m.bytes, fd);
                }
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n]).map_err(std::io::Error::other)?;
        Ok(Some((msg, fd)))
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The init's side of `Placed`. A scope start is milliseconds (systemd's
/// job, and the migration waiting for an RCU grace period), so the creator
/// places the init while the init joins its namespaces and mounts, and only
/// what depends on the cgroup waits here: a new cgroup namespace (its root
/// is the cgroup we sit in when we unshare it), hence the cgroup mount, the
/// hooks (they run in the container's cgroup) and everything after the
/// mounts. Waits once; later calls return at once.
pub struct PlacedGate<'a> {
    channel: &'a Channel,
    unshare_cgroupns: bool,
    placed: std::cell::Cell<bool>,
}

impl<'a> PlacedGate<'a> {
    pub fn new(channel: &'a Channel, unshare_cgroupns: bool) -> Self {
        PlacedGate {
            channel,
            unshare_cgroupns,
            placed: std::cell::Cell::new(false),
        }
    }

    pub fn wait(&self) -> Result<(), String> {
        if self.placed.get() {
            return Ok(());
        }
        match self.channel.recv_from_creator()? {
            ToInit::Placed => {}
            other => return Err(format!("sync channel: {other:?} where Placed was due")),
        }
        self.placed.set(true);
        if self.unshare_cgroupns {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("unshare(CLONE_NEWCGROUP): {e}"))?;
        }
        Ok(())
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

    #[test]
    fn try_recv_does_not_block() {
        let (a, b) = pair().unwrap();
        assert_eq!(b.try_recv::<ToInit>().unwrap(), None);
        a.send(&ToInit::Placed).unwrap();
        assert_eq!(b.try_recv::<ToInit>().unwrap(), Some(ToInit::Placed));
    }

    #[test]
    fn the_placed_gate_waits_once() {
        let (a, b) = pair().unwrap();
        let gate = PlacedGate::new(&b, false);
        a.send(&ToInit::Placed).unwrap();
        a.send(&ToInit::Proceed { pid: 7 }).unwrap();
        gate.wait().unwrap();
        // Passed: the next message is left for whoever reads next.
        gate.wait().unwrap();
        assert_eq!(
            b.recv::<ToInit>().unwrap(),
            Some(ToInit::Proceed { pid: 7 })
        );
    }

    #[test]
    fn the_placed_gate_fails_when_the_creator_gives_up() {
        let (a, b) = pair().unwrap();
        a.send(&ToInit::Abort).unwrap();
        assert!(PlacedGate::new(&b, false).wait().is_err());
        drop(a);
        assert!(PlacedGate::new(&b, false).wait().is_err());
    }

    #[test]
    fn an_fd_rides_with_its_message() {
        let (a, b) = pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        b.send_with_fd(&ToCreator::SeccompListener, w.as_fd())
            .unwrap();
        drop(w);
        let (msg, fd) = a.recv_with_fd::<ToCreator>().unwrap().unwrap();
        assert_eq!(msg, ToCreator::SeccompListener);
        let fd = fd.expect("the fd arrived");
        nix::unistd::write(&fd, b"x").unwrap();
        let mut got = [0u8; 1];
        nix::unistd::read(r.as_raw_fd(), &mut got).unwrap();
        assert_eq!(&got, b"x");
        // The one copy: looking at the message's size first installed none
        // (the write end's last copy closed is EOF for the read end; a copy
        // left open would make the non-blocking read fail with EAGAIN).
        drop(fd);
        nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        assert_eq!(nix::unistd::read(r.as_raw_fd(), &mut got), Ok(0));
        // A plain message carries none.
        b.send(&ToCreator::Ready).unwrap();
        assert!(a.recv_with_fd::<ToCreator>().unwrap().unwrap().1.is_none());
    }
}
