//! Attaching to a running container, as conmon offers it:
//! - `attach.sock` (unix stream) in the state dir: every connected client gets
//!   a copy of the container's output as it comes; what a client writes goes
//!   to the container's stdin (when it has one: `--stdin`, or a terminal).
//! - `attach-split.sock` (unix stream, the container's only) beside it: the
//!   same, but output comes framed so stdout and stderr stay apart (what a
//!   CRI attach with stderr asks for): `[1 stdout | 2 stderr][length: u32
//!   big-endian][bytes]` per chunk; input is raw bytes as on `attach.sock`.
//! - `ctl` (a FIFO) in the state dir: lines `1 <rows> <cols>` resize the
//!   container's terminal (conmon's format).
//!
//! - A client that shuts down its sending side (`shutdown(SHUT_WR)`, as
//!   `berthctl run -i` does at the end of its input) ends the container's
//!   stdin, which then reads EOF, and keeps getting output; a client that just
//!   disconnects leaves the stdin open for the next one (docker's half-close
//!   of an attach). A terminal is never closed this way (a hang-up would
//!   SIGHUP the session).
//!
//! Everything is non-blocking: a client that cannot keep up is dropped, the
//! container is never blocked by a reader.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::poll::{PollFd, PollFlags};

/// At most this many attached clients at once.
const MAX_CLIENTS: usize = 16;
/// Output kept for the first client of a holding shim (an exec's, whose
/// process runs before anyone can attach).
const MAX_BACKLOG: usize = 64 * 1024;

/// A connected client; `sending` until it half-closes; `framed` when it
/// came through the split socket.
struct Client {
    sock: UnixStream,
    sending: bool,
    framed: bool,
}

/// Which output stream a chunk came from (the framed clients' first byte).
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// The split socket's name beside `attach.sock`.
pub const SPLIT_SOCKET: &str = "attach-split.sock";

pub struct Attach {
    listener: Option<UnixListener>,
    /// The split socket's listener (framed output), when bound.
    split: Option<UnixListener>,
    clients: Vec<Client>,
    /// Where client input goes: the container's stdin pipe or its pty master.
    input: Option<OwnedFd>,
    /// The pty master (for resizes), when the container has a terminal.
    pty: Option<std::os::fd::RawFd>,
    ctl: Option<std::fs::File>,
    ctl_buf: Vec<u8>,
    /// Some while holding output for a first client that has not come yet.
    backlog: Option<Vec<u8>>,
}

impl Attach {
    /// Binds `dir/<prefix>attach.sock` and makes `dir/<prefix>ctl` (prefix
    /// "" for the container, `exec-<id>.` for an exec). Done by the shim
    /// before it reports "created", so a starter can attach right away
    /// (before `start`, missing no output); the fds then cross the re-exec.
    /// A failure leaves that part off (logging still works).
    pub fn bind(dir: &Path, prefix: &str) -> (Option<UnixListener>, Option<std::fs::File>) {
        let sock = dir.join(format!("{prefix}attach.sock"));
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).ok();
        let ctl_path = dir.join(format!("{prefix}ctl"));
        let _ = std::fs::remove_file(&ctl_path);
        let ctl = nix::unistd::mkfifo(&ctl_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .ok()
            .and_then(|_| {
                use std::os::unix::fs::OpenOptionsExt;
                // Read-write: we hold a writer ourselves, so the FIFO never
                // reports EOF between two clients.
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                    .open(&ctl_path)
                    .ok()
            });
        (listener, ctl)
    }

    pub fn new(
        listener: Option<UnixListener>,
        ctl: Option<std::fs::File>,
        input: Option<OwnedFd>,
        pty: Option<std::os::fd::RawFd>,
        hold: bool,
    ) -> Attach {
        if let Some(l) = &listener {
            let _ = l.set_nonblocking(true);
        }
        let hold = hold && listener.is_some();
        Attach {
            listener,
            split: None,
            clients: Vec::new(),
            input,
            pty,
            ctl,
            ctl_buf: Vec::new(),
            backlog: hold.then(Vec::new),
        }
    }

    /// Binds `dir/attach-split.sock`. Done by the container's monitor as it
    /// starts (no fd to carry across the re-exec: a split attach is for a
    /// running container, CRI's Attach); an exec has none. A failure leaves
    /// it off (attach.sock still works).
    pub fn bind_split(&mut self, dir: &Path) {
        let sock = dir.join(SPLIT_SOCKET);
        let _ = std::fs::remove_file(&sock);
        self.split = UnixListener::bind(&sock).ok();
        if let Some(l) = &self.split {
            let _ = l.set_nonblocking(true);
        }
    }

    /// Still waiting for the first client of a holding shim.
    pub fn holding(&self) -> bool {
        self.backlog.is_some()
    }

    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = Vec::new();
        for l in self.listener.iter().chain(&self.split) {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        if let Some(c) = &self.ctl {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        for c in &self.clients {
            // A half-closed client is always readable (EOF): watch it for
            // its hang-up only (POLLHUP is reported without being asked).
            let events = if c.sending {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(c.sock.as_fd(), events));
        }
        fds
    }

    /// Accepts new clients, moves client input to the container, applies resizes.
    pub fn service(&mut self) {
        if let Some(l) = &self.listener {
            while let Ok((mut c, _)) = l.accept() {
                if self.clients.len() < MAX_CLIENTS && c.set_nonblocking(true).is_ok() {
                    // The first client gets what was held for it (blocking
                    // write: at most MAX_BACKLOG, into a fresh socket buffer).
                    if let Some(held) = self.backlog.take() {
                        let _ = c.set_nonblocking(false);
                        let ok = c.write_all(&held).is_ok();
                        if !ok || c.set_nonblocking(true).is_err() {
                            continue;
                        }
                    }
                    self.clients.push(Client {
                        sock: c,
                        sending: true,
                        framed: false,
                    });
                }
            }
        }
        if let Some(l) = &self.split {
            while let Ok((c, _)) = l.accept() {
                if self.clients.len() < MAX_CLIENTS && c.set_nonblocking(true).is_ok() {
                    self.clients.push(Client {
                        sock: c,
                        sending: true,
                        framed: true,
                    });
                }
            }
        }
        let mut buf = [0u8; 4096];
        // Borrowed from the OwnedFd itself: the fd stays open for as long
        // as it is written to (the closure borrows `self.input`, not `self`).
        let input = self.input.as_ref();
        let mut end_input = false;
        self.clients.retain_mut(|c| {
            if !c.sending {
                return !hung_up(&c.sock);
            }
            loop {
                match c.sock.read(&mut buf) {
                    // EOF: a hang-up, or a half-close that ends the input.
                    Ok(0) if hung_up(&c.sock) => return false,
                    Ok(0) => {
                        c.sending = false;
                        end_input = true;
                        return true;
                    }
                    Ok(n) => {
                        if let Some(fd) = input {
                            let _ = nix::unistd::write(fd, &buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        });
        if end_input && self.pty.is_none() {
            // Dropping our (only) write end: the container reads EOF.
            self.input = None;
        }
        self.read_ctl();
    }

    fn read_ctl(&mut self) {
        let Some(ctl) = self.ctl.as_mut() else { return };
        let mut buf = [0u8; 256];
        while let Ok(n) = ctl.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.ctl_buf.extend_from_slice(&buf[..n]);
        }
        while let Some(end) = self.ctl_buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.ctl_buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let f: Vec<&str> = text.split_whitespace().collect();
            if let (["1", rows, cols], Some(pty)) = (f.as_slice(), self.pty) {
                if let (Ok(r), Ok(c)) = (rows.parse::<u16>(), cols.parse::<u16>()) {
                    let ws = nix::libc::winsize {
                        ws_row: r,
                        ws_col: c,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ with a pointer to a live winsize.
                    unsafe { nix::libc::ioctl(pty, nix::libc::TIOCSWINSZ, &ws) };
                }
            }
            if self.ctl_buf.len() > 4096 {
                self.ctl_buf.clear();
            }
        }
    }

    /// A copy of container output (from `stream`: STDOUT or STDERR) for
    /// every client; slow or gone ones go (a framed client cut mid-frame
    /// is gone too, so no client ever sees a torn frame).
    pub fn broadcast(&mut self, stream: u8, data: &[u8]) {
        if let Some(held) = &mut self.backlog {
            let room = MAX_BACKLOG.saturating_sub(held.len());
            held.extend_from_slice(&data[..data.len().min(room)]);
        }
        let mut frame = Vec::new();
        if self.clients.iter().any(|c| c.framed) {
            frame.reserve(5 + data.len());
            frame.push(stream);
            frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
            frame.extend_from_slice(data);
        }
        self.clients.retain_mut(|c| {
            let bytes = if c.framed { &frame[..] } else { data };
            c.sock.write_all(bytes).is_ok()
        });
    }
}

/// The peer closed its socket (both ways), as opposed to a half-close.
fn hung_up(sock: &UnixStream) -> bool {
    let mut fd = [PollFd::new(sock.as_fd(), PollFlags::empty())];
    matches!(nix::poll::poll(&mut fd, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
        && fd[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client input reaches the container's stdin (through the borrowed
    /// OwnedFd), and a half-close ends it.
    #[test]
    fn client_input_goes_to_the_stdin_until_the_client_half_closes() {
        let dir = std::env::temp_dir().join(format!("berth-attach-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (listener, ctl) = Attach::bind(&dir, "");
        let (stdin_r, stdin_w) = nix::unistd::pipe().unwrap();
        let mut attach = Attach::new(listener, ctl, Some(stdin_w), None, false);
        let mut client = UnixStream::connect(dir.join("attach.sock")).unwrap();
        attach.service();
        client.write_all(b"hello\n").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // Both the data and the half-close are queued: one round takes both
        // (a few rounds in case the socket is slow to report them).
        for _ in 0..100 {
            attach.service();
            if attach.input.is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(attach.input.is_none(), "the half-close ends the stdin");
        let mut got = String::new();
        std::fs::File::from(stdin_r)
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "hello\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A split-socket client gets each chunk framed with its stream; a
    /// plain one gets the bytes as they are.
    #[test]
    fn split_clients_get_framed_output_plain_ones_raw() {
        let dir = std::env::temp_dir().join(format!("berth-attach-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (listener, ctl) = Attach::bind(&dir, "");
        let mut attach = Attach::new(listener, ctl, None, None, false);
        attach.bind_split(&dir);
        let mut plain = UnixStream::connect(dir.join("attach.sock")).unwrap();
        let mut split = UnixStream::connect(dir.join(SPLIT_SOCKET)).unwrap();
        attach.service();
        attach.broadcast(STDERR, b"e!");
        attach.broadcast(STDOUT, b"o");
        drop(attach);
        let mut got = Vec::new();
        plain.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"e!o");
        got.clear();
        split.read_to_end(&mut got).unwrap();
        assert_eq!(got, [2, 0, 0, 0, 2, b'e', b'!', 1, 0, 0, 0, 1, b'o']);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
