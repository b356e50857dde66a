//! Forwarding container output to journald over its native protocol
//! (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/), with the fields the docker and
//! podman journald drivers use, so `journalctl CONTAINER_NAME=…` works the same.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::libc;
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

/// Send attempts while journald is busy; with the doubling delay below that is at
/// most ~255 ms, so a stuck journald slows the container's output but never wedges
/// the shim, which must keep reaping and recording the exit status.
const BUSY_RETRIES: u32 = 8;
const FIRST_DELAY: Duration = Duration::from_millis(1);
/// Capacity the send buffer keeps after a large message: one huge line must not pin
/// its size in a process whose whole budget is about 1 MiB.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Cuts a byte stream into lines; bytes, not text, because containers write anything.
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        // A zero limit could never make progress on a byte that is not a newline.
        LineSplitter {
            buf: Vec::new(),
            max: max_line.max(1),
        }
    }

    /// Calls `out(line, partial)` for each complete line (without its '\n') and
    /// for each `max`-byte piece of a longer one (partial = true).
    pub fn push(&mut self, mut data: &[u8], out: &mut impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let room = self.max - self.buf.len();
            // Look one byte past the room: a line of exactly `max` bytes is whole.
            let look = &data[..data.len().min(room + 1)];
            if let Some(nl) = look.iter().position(|&b| b == b'\n') {
                if self.buf.is_empty() {
                    out(&data[..nl], false);
                } else {
                    self.buf.extend_from_slice(&data[..nl]);
                    out(&self.buf, false);
                    self.buf.clear();
                }
                data = &data[nl + 1..];
            } else {
                let take = data.len().min(room);
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.buf.len() == self.max {
                    out(&self.buf, true);
                    self.buf.clear();
                }
            }
        }
    }

    /// The stream ended: what is left is a whole (unterminated) line.
    pub fn flush(&mut self, out: &mut impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            out(&self.buf, false);
            self.buf.clear();
        }
    }
}

/// A connection to journald for one container.
pub struct Journal {
    sock: UnixDatagram,
    /// Kept to reconnect: journald may restart under a long-lived shim.
    path: PathBuf,
    /// CONTAINER_ID, CONTAINER_ID_FULL, CONTAINER_NAME, SYSLOG_IDENTIFIER, encoded once.
    fields: Vec<u8>,
    /// Reused for every datagram so logging a line does not allocate.
    buf: RefCell<Vec<u8>>,
}

impl Journal {
    pub fn connect(
        path: &Path,
        container_id: &str,
        container_name: &str,
        identifier: &str,
        extra: &[(&str, &str)],
    ) -> io::Result<Journal> {
        // std creates sockets with SOCK_CLOEXEC, so the container never inherits it.
        let sock = UnixDatagram::unbound()?;
        sock.connect(path)?;
        // Blocking sends would wait forever on a stuck journald; see BUSY_RETRIES.
        sock.set_nonblocking(true)?;
        let mut fields = Vec::new();
        let short = short_id(container_id);
        encode(&mut fields, "CONTAINER_ID", short.as_bytes());
        encode(&mut fields, "CONTAINER_ID_FULL", container_id.as_bytes());
        encode(&mut fields, "CONTAINER_NAME", container_name.as_bytes());
        encode(&mut fields, "SYSLOG_IDENTIFIER", identifier.as_bytes());
        for (key, value) in extra {
            encode(&mut fields, key, value.as_bytes());
        }
        Ok(Journal {
            sock,
            path: path.to_owned(),
            fields,
            buf: RefCell::new(Vec::new()),
        })
    }

    /// Sends one journal entry; `priority` is syslog's (6 stdout, 3 stderr).
    pub fn send(&self, message: &[u8], priority: u8, partial: bool) -> io::Result<()> {
        let mut buf = self.buf.borrow_mut();
        buf.clear();
        buf.extend_from_slice(&self.fields);
        // journald only accepts a single digit 0..=7.
        encode(&mut buf, "PRIORITY", &[b'0' + priority.min(7)]);
        if partial {
            encode(&mut buf, "CONTAINER_PARTIAL_MESSAGE", b"true");
        }
        encode(&mut buf, "MESSAGE", message);
        let result = match self.retry(|| self.sock.send(&buf)) {
            // Larger than the socket send buffer: the protocol's answer is a sealed
            // memfd, which journald reads in place of the datagram payload.
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => self.send_memfd(&buf),
            other => other.map(drop),
        };
        if buf.capacity() > KEEP_CAPACITY {
            buf.clear();
            buf.shrink_to(KEEP_CAPACITY);
        }
        result
    }

    fn send_memfd(&self, data: &[u8]) -> io::Result<()> {
        let flags = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING;
        let mut file = File::from(memfd_create(c"berth-journal", flags)?);
        file.write_all(data)?;
        // journald refuses unsealed memfds: we could otherwise change the entry
        // while it reads it.
        let seals = SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SEAL;
        fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))?;
        let fds = [file.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        self.retry(|| {
            sendmsg::<UnixAddr>(self.sock.as_raw_fd(), &[], &cmsg, MsgFlags::empty(), None)
                .map_err(io::Error::from)
        })
        .map(drop)
    }

    /// Runs `op`, waiting out a busy journald and reconnecting once if it restarted.
    fn retry<T>(&self, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let mut delay = FIRST_DELAY;
        let mut reconnected = false;
        for _ in 0..BUSY_RETRIES {
            let err = match op() {
                Err(e) => e,
                done => return done,
            };
            match err.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    sleep(delay);
                    delay *= 2;
                }
                Some(libc::EINTR) => {}
                // A connected datagram socket stays tied to the old journald's
                // socket: the first send after a restart gets ECONNREFUSED, later
                // ones ENOTCONN. Connecting again reaches the new one.
                Some(libc::ECONNREFUSED | libc::ENOTCONN) if !reconnected => {
                    reconnected = true;
                    self.sock.connect(&self.path)?;
                }
                _ => return Err(err),
            }
        }
        op()
    }
}

/// Like docker and podman: CONTAINER_ID is the 12-character short form of a
/// generated hex id; a name-like id is kept whole, as cutting it would mislead.
fn short_id(id: &str) -> &str {
    if id.len() > 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

/// Appends one field: `KEY=value\n`, or, when the value holds a newline (which would
/// end the field early), `KEY\n` + little-endian u64 length + value + `\n`.
pub fn encode(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    buf.extend_from_slice(key.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned};
    use std::io::{IoSliceMut, Read, Seek};
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};

    /// Runs a splitter over `chunks`; each piece it emits is followed by `|` when
    /// complete and `+` when partial, so one byte string shows the whole result.
    fn split(max: usize, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = LineSplitter::new(max);
        let mut got = Vec::new();
        let mut out = |l: &[u8], p: bool| {
            got.extend_from_slice(l);
            got.push(if p { b'+' } else { b'|' });
        };
        for c in chunks {
            s.push(c, &mut out);
        }
        s.flush(&mut out);
        got
    }

    #[test]
    fn journal_splitter() {
        let got = split(100, &[b"hel", b"lo\nwor", b"ld\r\n", b"\nend"]);
        assert_eq!(got, b"hello|world\r||end|");
        assert_eq!(split(4, &[b"\x00\xff\n\xfe"]), b"\x00\xff|\xfe|");
        // A line of exactly max bytes is whole, not a partial plus an empty line.
        let got = split(4, &[b"abcdefghij\nab", b"cd\nxyz"]);
        assert_eq!(got, b"abcd+efgh+ij|abcd|xyz|");
        assert_eq!(split(2, &[b"abcd\n"]), b"ab+cd|");
        assert_eq!(split(2, &[b"abcde"]), b"ab+cd+e|");
    }

    #[test]
    fn journal_encode_forms() {
        let mut buf = Vec::new();
        encode(&mut buf, "MESSAGE", b"hi \xff");
        assert_eq!(buf, b"MESSAGE=hi \xff\n");
        buf.clear();
        encode(&mut buf, "MESSAGE", b"a\nb");
        assert_eq!(buf, b"MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n");
    }

    /// Parses a native-protocol entry back into (key, value) pairs.
    fn parse(mut d: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields = Vec::new();
        while let Some(nl) = d.iter().position(|&b| b == b'\n') {
            let (key, value, rest) = match d[..nl].iter().position(|&b| b == b'=') {
                Some(eq) => (&d[..eq], &d[eq + 1..nl], &d[nl + 1..]),
                None => {
                    let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap());
                    let (value, rest) = d[nl + 9..].split_at(len as usize);
                    assert_eq!(rest[0], b'\n');
                    (&d[..nl], value, &rest[1..])
                }
            };
            fields.push((String::from_utf8(key.to_vec()).unwrap(), value.to_vec()));
            d = rest;
        }
        assert!(d.is_empty(), "unterminated field");
        fields
    }

    fn field<'a>(fields: &'a [(String, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
        let mut found = fields.iter().filter(|(k, _)| k == key);
        let value = found.next().map(|(_, v)| v.as_slice());
        assert!(found.next().is_none(), "{key} sent twice");
        value
    }

    /// A stand-in journald socket, so the tests need no systemd.
    fn server(name: &str) -> (UnixDatagram, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("berth-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (sock, path)
    }

    fn recv_fields(server: &UnixDatagram) -> Vec<(String, Vec<u8>)> {
        let mut buf = vec![0; 64 * 1024];
        let n = server.recv(&mut buf).unwrap();
        parse(&buf[..n])
    }

    #[test]
    fn journal_round_trip() {
        let (srv, path) = server("round-trip");
        let id = "0123456789abcdef0123456789abcdef";
        let j = Journal::connect(
            &path,
            id,
            "web",
            "berth-web",
            &[("OBJECT_SYSTEMD_UNIT", "berth@web.service")],
        )
        .unwrap();
        j.send(b"two\nlines", 6, false).unwrap();
        j.send(b"bad \xc3\x28 utf8", 3, true).unwrap();
        for (message, priority, partial) in [
            (&b"two\nlines"[..], &b"6"[..], None),
            (b"bad \xc3\x28 utf8", b"3", Some(&b"true"[..])),
        ] {
            let f = recv_fields(&srv);
            assert_eq!(field(&f, "MESSAGE"), Some(message));
            assert_eq!(field(&f, "PRIORITY"), Some(priority));
            assert_eq!(field(&f, "CONTAINER_ID"), Some(&b"0123456789ab"[..]));
            assert_eq!(field(&f, "CONTAINER_ID_FULL"), Some(id.as_bytes()));
            assert_eq!(field(&f, "CONTAINER_NAME"), Some(&b"web"[..]));
            assert_eq!(field(&f, "SYSLOG_IDENTIFIER"), Some(&b"berth-web"[..]));
            assert_eq!(field(&f, "CONTAINER_PARTIAL_MESSAGE"), partial);
            assert_eq!(
                field(&f, "OBJECT_SYSTEMD_UNIT"),
                Some(&b"berth@web.service"[..])
            );
            assert_eq!(f.len(), if partial.is_some() { 8 } else { 7 });
        }
        // journald restarted: a new socket at the same path must be reached.
        drop(srv);
        let (srv, _) = server("round-trip");
        j.send(b"after restart", 6, false).unwrap();
        let f = recv_fields(&srv);
        assert_eq!(field(&f, "MESSAGE"), Some(&b"after restart"[..]));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn journal_memfd_fallback() {
        let (srv, path) = server("memfd");
        let j = Journal::connect(&path, "c1", "big", "berth-big", &[]).unwrap();
        // Pin the send buffer (the kernel doubles it to 200 KiB) so EMSGSIZE does
        // not depend on this host's net.core.wmem_default.
        setsockopt(&j.sock, sockopt::SndBuf, &(100 * 1024)).unwrap();
        let message: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
        j.send(&message, 6, false).unwrap();

        let mut payload = [0u8; 16];
        let mut iov = [IoSliceMut::new(&mut payload)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let flags = MsgFlags::empty();
        let msg = recvmsg::<UnixAddr>(srv.as_raw_fd(), &mut iov, Some(&mut cmsg), flags);
        let msg = msg.unwrap();
        assert_eq!(msg.bytes, 0);
        let fd = match msg.cmsgs().unwrap().next() {
            Some(ControlMessageOwned::ScmRights(fds)) if fds.len() == 1 => fds[0],
            other => panic!("expected one fd, got {other:?}"),
        };
        // SAFETY: the fd was just received and is owned by nobody else.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut data = Vec::new();
        // The fd shares our write offset, which is at the end.
        file.rewind().unwrap();
        file.read_to_end(&mut data).unwrap();
        let f = parse(&data);
        assert_eq!(field(&f, "MESSAGE").map(<[u8]>::len), Some(message.len()));
        assert!(
            field(&f, "MESSAGE") == Some(&message[..]),
            "content differs"
        );
        assert_eq!(field(&f, "CONTAINER_ID"), Some(&b"c1"[..]));
        assert!(j.buf.borrow().capacity() <= KEEP_CAPACITY);
        std::fs::remove_file(&path).unwrap();
    }
}
