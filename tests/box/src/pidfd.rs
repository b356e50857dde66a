//! A process held by a pidfd, to wait for its exit without being its parent.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub struct PidFd(OwnedFd);

impl PidFd {
    /// `None` when the process is gone (or the kernel has no pidfd_open).
    pub fn open(pid: i32) -> Option<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the fd was just returned to us and nothing else owns it.
        Some(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Waits until the process has exited (a zombie or reaped), at most `timeout`.
    /// Returns whether it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, wait) {
                Ok(n) if n > 0 => return true,
                Err(nix::errno::Errno::EINTR) if !left.is_zero() => {}
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn waits_for_a_child_to_exit() {
        let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
        let fd = PidFd::open(child.id() as i32).expect("pidfd_open");
        assert!(
            !fd.wait_exit(Duration::from_millis(20)),
            "sleep 0.2 exited early"
        );
        assert!(fd.wait_exit(Duration::from_secs(5)));
        child.wait().unwrap();
    }
}
