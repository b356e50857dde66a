//! Spare exec shims: a shim forked ahead, in a quiet moment, for a
//! container that has just had an exec, and waiting there for the next one
//! (a kubelet probe every few seconds, a health check, a user's `exec`).
//!
//! What a fork per exec costs is on the exec's critical path: the fork
//! itself, the child's wait for a CPU, its copy-on-write faults — ~0.1 ms
//! of a ~0.75 ms exec, and more after other programs ran (docs/
//! performance.md). A spare has paid that before the request: the server
//! passes the request on to it as it came (the same bytes and fds), and
//! the spare carries on exactly as a shim forked for it would have.
//!
//! A spare is born where the exec's shim would be (the container's monitor
//! cgroup, clone3 CLONE_INTO_CGROUP: no migration) with the server's memory
//! of that moment — the container's exec target included (prepared.rs).
//! It holds no fd but its socket and the init's pidfd, and goes when it is
//! no longer wanted: its container's init exits, the server goes (berthd
//! gone), or SPARE_IDLE passes. It leaves nothing: no record, no file; its
//! cgroup is its container's.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag};

/// Containers with a spare at once. A spare costs a process and its page
/// tables; its pages are the server's, shared until written.
pub const SPARES: usize = 4;

/// How long a spare waits for an exec before it goes.
const SPARE_IDLE: Duration = Duration::from_secs(60);

/// In the spare: where its socket and the init's pidfd are.
const SPARE_SOCKET: RawFd = 3;
const SPARE_INIT: RawFd = 4;

/// What the server needs of an exec's request to find its spare, read
/// without the full parse (the shim that takes it parses and checks all).
pub struct ExecOf {
    pub root: PathBuf,
    pub id: String,
    pub parent: PathBuf,
}

pub fn peek_exec(request: &[u8]) -> Option<ExecOf> {
    let argv: Vec<String> = serde_json::from_slice(request).ok()?;
    let value = |flag: &str| {
        let at = argv.iter().position(|a| a == flag)?;
        argv.get(at + 1).cloned()
    };
    value("--exec-id")?;
    Some(ExecOf {
        root: value("--root")?.into(),
        id: value("--id")?,
        parent: value("--monitor-cgroup")?.into(),
    })
}

/// A spare's end in the server.
struct Spare {
    root: PathBuf,
    id: String,
    socket: OwnedFd,
}

/// A container whose next exec should find a spare.
struct Wanted {
    root: PathBuf,
    id: String,
    /// The monitors' cgroup (the shim's --monitor-cgroup).
    parent: PathBuf,
}

#[derive(Default)]
pub struct Spares {
    ready: Vec<Spare>,
    wanted: Vec<Wanted>,
}

impl Spares {
    /// Passes an exec's request (its bytes and fds, as received) to the
    /// spare of container `id`, if there is one that takes it; the fds come
    /// back when none did (the caller forks as before).
    pub fn pass(
        &mut self,
        root: &Path,
        id: &str,
        request: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<(), Vec<OwnedFd>> {
        let Some(at) = self.ready.iter().position(|s| s.id == id && s.root == root) else {
            return Err(fds);
        };
        // One exec each: a spare becomes that exec's shim.
        let spare = self.ready.remove(at);
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let sent = sendmsg::<()>(
            spare.socket.as_raw_fd(),
            &[std::io::IoSlice::new(request)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        // EPIPE: the spare went (its init exited, it idled out); its end
        // goes with it here.
        sent.map(drop).map_err(|_| fds)
    }

    /// After an exec into `id` (shim cgroups under `parent`): its next one
    /// should find a spare.
    pub fn want(&mut self, root: &Path, id: &str, parent: &Path) {
        if self.wanted.iter().any(|w| w.id == id && w.root == root) {
            return;
        }
        // Execs into many containers with no quiet moment between them:
        // only the latest few could get a spare anyway.
        if self.wanted.len() >= SPARES {
            self.wanted.remove(0);
        }
        self.wanted.push(Wanted {
            root: root.to_path_buf(),
            id: id.to_string(),
            parent: parent.to_path_buf(),
        });
    }

    /// Whether spares are wanted.
    pub fn wanting(&self) -> bool {
        !self.wanted.is_empty()
    }

    /// Forks the spares wanted, up to SPARES ready.
    /// `spare` is what each child runs with its socket and its target.
    ///
    /// # Safety
    /// As fork: the caller must be single-threaded.
    pub unsafe fn make(
        &mut self,
        targets: &mut berth_init::exec::Targets,
        mut spare: impl FnMut(&berth_init::exec::Prepared) -> std::convert::Infallible,
    ) {
        // Those gone (idled out, their init exited) free their place.
        self.ready.retain(|s| !hung_up(&s.socket));
        for w in std::mem::take(&mut self.wanted) {
            // Full: the spares there wait for their own containers' next
            // exec. Dropping one for this container instead would only
            // trade it for another, and with more containers exec'd into
            // in turn than SPARES (probes), every spare would be dropped
            // before its exec came: a fork for nothing each time.
            if self.ready.len() >= SPARES {
                break;
            }
            if self.ready.iter().any(|s| s.id == w.id && s.root == w.root) {
                continue;
            }
            let Some(target) = targets.get(&w.root, &w.id) else {
                continue;
            };
            let Some(socket) = fork_spare(&w, target, &mut spare) else {
                continue;
            };
            self.ready.push(Spare {
                root: w.root,
                id: w.id,
                socket,
            });
        }
    }
}

/// One spare for `w`, born in its container's monitor cgroup: our end of
/// its socket.
unsafe fn fork_spare(
    w: &Wanted,
    target: &berth_init::exec::Prepared,
    spare: &mut impl FnMut(&berth_init::exec::Prepared) -> std::convert::Infallible,
) -> Option<OwnedFd> {
    // The container's own directory, there while it runs (its monitor is
    // in it): never made here, so a spare cannot leave one behind.
    berth_init::error::validate_id(&w.id).ok()?;
    let dir = crate::cgroup::open_dir(&w.parent.join(&w.id)).ok()?;
    let init = berth_monitor::quick_exit::pidfd_open(target.init_pid())?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ok()?;
    // No plain fork where clone3 is refused: that child would have to
    // migrate, which is what a spare is not for.
    match berth_init::clone_into::fork_into(&dir)? {
        // The spare's life (exec_server.rs's `spare`) never comes back.
        #[allow(unreachable_code)]
        0 => {
            settle(theirs, init);
            match spare(target) {}
        }
        _ => Some(ours),
    }
}

/// Whether the spare at the other end of `socket` has gone.
fn hung_up(socket: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => has(&fds[0], PollFlags::POLLHUP) || has(&fds[0], PollFlags::POLLERR),
        Err(_) => true,
    }
}

/// In the spare, first: the default SIGCHLD (the shim reaps its process),
/// its socket and the init's pidfd at SPARE_SOCKET and SPARE_INIT and
/// nothing else — the server's socket, its pool, the other spares' sockets
/// all closed (a spare holding another's socket would keep it from seeing
/// its hang-up).
fn settle(socket: OwnedFd, init: OwnedFd) {
    // SAFETY: setting a disposition, no handler.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    const HIGH: RawFd = 64;
    let high = |fd: &OwnedFd| {
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HIGH))
    };
    let (Ok(s), Ok(i)) = (high(&socket), high(&init)) else {
        std::process::exit(1)
    };
    drop((socket, init));
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    if nix::unistd::dup3(s, SPARE_SOCKET, cloexec).is_err()
        || nix::unistd::dup3(i, SPARE_INIT, cloexec).is_err()
    {
        std::process::exit(1)
    }
    // SAFETY: close_range with integer arguments: everything past the two.
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, SPARE_INIT + 1, u32::MAX, 0u32) };
}

/// In the spare: waits for its request. True when one is waiting on
/// SPARE_SOCKET (the server's socket number: the exec server's `receive`
/// reads it there); false when the spare should go — and then no request
/// can still come: the socket is shut first, so a server passing one at
/// that moment sees EPIPE and forks a shim instead.
pub fn wait_for_request() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // SAFETY: settle put both there; they stay open for the spare's life.
    let (socket, init) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(SPARE_SOCKET),
            std::os::fd::BorrowedFd::borrow_raw(SPARE_INIT),
        )
    };
    let mut fds = [
        PollFd::new(socket, PollFlags::POLLIN),
        PollFd::new(init, PollFlags::POLLIN),
    ];
    let timeout = PollTimeout::try_from(SPARE_IDLE).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) if has(&fds[0], PollFlags::POLLIN) => return true,
            _ => break,
        }
    }
    // Going: shut the socket, then take a request that came meanwhile.
    let _ = nix::sys::socket::shutdown(SPARE_SOCKET, nix::sys::socket::Shutdown::Both);
    let mut byte = [0u8; 1];
    let peeked = nix::sys::socket::recv(
        SPARE_SOCKET,
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    );
    matches!(peeked, Ok(n) if n > 0)
}

fn has(fd: &nix::poll::PollFd, flag: nix::poll::PollFlags) -> bool {
    fd.revents().is_some_and(|r| r.contains(flag))
}

/// In the spare, before its request: the code pages a shim's setup will
/// run, mapped now rather than faulted in on the exec's critical path. A
/// fork copies no page-table entry of a file mapping, so every code page
/// the child runs is faulted in again (~35 per exec): every executable
/// mapping is populated here. Writable pages are left shared: copying them
/// ahead (~30 copies per exec) measured no faster and cost each spare
/// ~2 MiB of its own. Mappings past PREWARM_MAX are left alone.
pub fn prewarm() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = fields.nth(3).unwrap_or("");
        if name.starts_with("[v") {
            continue; // [vdso], [vvar], [vsyscall]: the kernel's.
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        if end <= start || end - start > PREWARM_MAX {
            continue;
        }
        if !perms.starts_with("r-x") {
            continue;
        }
        // One call maps the whole range (Linux 5.14); where the kernel has
        // no MADV_POPULATE_READ (EINVAL), a read of each page does it a
        // fault at a time.
        // SAFETY: a mapping of ours, listed just now (nothing unmaps it
        // meanwhile: no other thread); populating changes no content.
        let populated = unsafe {
            nix::libc::madvise(
                start as *mut nix::libc::c_void,
                end - start,
                MADV_POPULATE_READ,
            )
        };
        // Any other failure (EFAULT: a page that would fault with SIGBUS,
        // a mapping past its file's end) leaves the rest to the exec, as
        // a read here would die of it.
        if populated == 0 || nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
            continue;
        }
        for page in (start..end).step_by(PAGE) {
            let at = page as *const u8;
            // SAFETY: as above, a page of that mapping.
            unsafe { std::ptr::read_volatile(at) };
        }
    }
}

/// linux/mman.h (5.14); not in every libc crate version.
const MADV_POPULATE_READ: nix::libc::c_int = 22;

const PAGE: usize = 4096;
const PREWARM_MAX: usize = 16 << 20;
