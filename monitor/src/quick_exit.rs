//! An exec'd process that is over before its monitor would start: a
//! probe, `true`, `test -f`. Its shim records the exit itself instead of
//! re-executing into berth-monitor only to reap it (the execve and the
//! monitor's start-up were ~0.4 ms of a ~3.5 ms exec, on the path every
//! WaitExec waits on: docs/performance.md, "Exec: the shim records a quick
//! exit").
//!
//! Only when there is nothing left for a monitor to do: the process has
//! exited, and every output pipe is at EOF with nothing in it (no output to
//! forward, no straggler holding a write end). Anything else — output, a
//! process still running after the short wait, a child left holding the
//! pipes — goes to the monitor as before, with the process not reaped.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::monitor::ExitStatus;

/// How long the shim waits for the process to end before handing it to a
/// monitor. A process still running then is a long one: a monitor started
/// this much later loses nothing (its output waits in the pipes).
pub const WAIT_MS: u8 = 2;

/// `pid`'s exit status, reaped, when it ends within `wait_ms` leaving every
/// stream of `streams` empty and closed; None (nothing reaped) otherwise.
pub fn exited_quietly(pid: i32, streams: &[(OwnedFd, u8)], wait_ms: u8) -> Option<ExitStatus> {
    let pidfd = pidfd_open(pid)?;
    if !wait_for_exit(&pidfd, streams, wait_ms) {
        return None;
    }
    // Peek (WNOWAIT): a process that exited with output left must still be
    // the monitor's to reap.
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::PIDFd(pidfd.as_fd()), flags).ok()? {
        WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {}
        _ => return None,
    }
    if !streams.iter().all(|(s, _)| at_eof_and_empty(s)) {
        return None;
    }
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).ok()? {
        WaitStatus::Exited(_, code) => Some(ExitStatus::Code(code)),
        WaitStatus::Signaled(_, sig, _) => Some(ExitStatus::Signal(sig as i32)),
        _ => None,
    }
}

/// A pidfd of `pid` (readable once it exits), or None (no such process).
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments; the fd is owned right after.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh pidfd, ours alone.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits up to `wait_ms` for the pidfd to say the process ended; false
/// at once when output comes (the monitor's then). A stream that hangs up
/// leaves the set: its writers close as the process exits, just before the
/// pidfd is readable.
fn wait_for_exit(pidfd: &OwnedFd, streams: &[(OwnedFd, u8)], wait_ms: u8) -> bool {
    let deadline = Instant::now() + Duration::from_millis(wait_ms.into());
    let mut open: Vec<&OwnedFd> = streams.iter().map(|(s, _)| s).collect();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds: Vec<PollFd> = std::iter::once(pidfd)
            .chain(open.iter().copied())
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if poll(&mut fds, PollTimeout::from(ms)).is_err() {
            return false;
        }
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if revents[0].contains(PollFlags::POLLIN) {
            return true;
        }
        if revents[1..].iter().any(|r| r.contains(PollFlags::POLLIN)) || left.is_zero() {
            return false;
        }
        let hung_up = |i: usize| revents[i + 1].contains(PollFlags::POLLHUP);
        open = open
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !hung_up(*i))
            .map(|(_, f)| f)
            .collect();
    }
}

/// A pipe whose every writer has closed it and that holds no data: poll says
/// POLLHUP and not POLLIN.
fn at_eof_and_empty(fd: &OwnedFd) -> bool {
    let mut one = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    if poll(&mut one, PollTimeout::ZERO).is_err() {
        return false;
    }
    one[0].revents() == Some(PollFlags::POLLHUP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    /// Forks a child that writes `out` to the pipe's write end, then exits
    /// with `code`; our copy of the write end is closed.
    fn child(out: &[u8], code: i32) -> (i32, Vec<(OwnedFd, u8)>) {
        let (r, w) = pipe();
        // SAFETY: the child only writes and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let _ = std::fs::File::from(w).write_all(out);
                unsafe { nix::libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                (child.as_raw(), vec![(r, 6)])
            }
        }
    }

    #[test]
    fn a_silent_exit_is_reaped_with_its_code() {
        let (pid, streams) = child(b"", 3);
        let got = exited_quietly(pid, &streams, 200);
        assert_eq!(got, Some(ExitStatus::Code(3)));
        // Reaped: nothing left to wait for.
        assert!(waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_err());
    }

    #[test]
    fn output_left_in_a_pipe_goes_to_the_monitor_unreaped() {
        let (pid, streams) = child(b"hello\n", 0);
        // Let it finish, so the answer is about the output, not the timing.
        let _ = waitid(
            Id::Pid(Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        );
        assert_eq!(exited_quietly(pid, &streams, 0), None);
        // Still the monitor's to reap, with its status.
        assert_eq!(
            waitpid(Pid::from_raw(pid), None).unwrap(),
            WaitStatus::Exited(Pid::from_raw(pid), 0)
        );
    }

    #[test]
    fn a_process_still_running_is_left_alone() {
        let (r, w) = pipe();
        // SAFETY: the child only blocks on a read and _exits.
        let pid = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                drop(w);
                let mut b = [0u8; 1];
                let _ = nix::unistd::read(r.as_raw_fd(), &mut b);
                unsafe { nix::libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let (out_r, out_w) = pipe();
        assert_eq!(exited_quietly(pid.as_raw(), &[(out_r, 6)], 1), None);
        drop((w, out_w));
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
    }
}
