//! `process.terminal`: the OCI console-socket protocol. The init opens a pty in
//! the container's devpts, sends the master to the socket the caller gave
//! (SCM_RIGHTS) and makes the slave its controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::Process;

#[derive(Debug, thiserror::Error)]
#[error("console: {step}: {source}")]
pub struct ConsoleError {
    step: &'static str,
    source: nix::Error,
}

fn step(step: &'static str) -> impl FnOnce(nix::Error) -> ConsoleError {
    move |source| ConsoleError { step, source }
}

/// `bind_console`: the init binds the slave on /dev/console; an exec does not.
pub fn setup(socket: &OwnedFd, process: &Process, bind_console: bool) -> Result<(), ConsoleError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(step("opening /dev/ptmx"))?;
    grantpt(&master).map_err(step("grantpt"))?;
    unlockpt(&master).map_err(step("unlockpt"))?;
    let slave_name = ptsname_r(&master).map_err(step("ptsname"))?;
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a pointer to a live winsize.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        nix::Error::result(rc).map_err(step("TIOCSWINSZ"))?;
    }
    let fds = [master.as_raw_fd()];
    let name = slave_name.as_bytes();
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(step("sending the pty master to the console socket"))?;
    drop(master);

    // The caller is a session leader already (every container process gets
    // a session of its own, terminal or not): the slave becomes its
    // controlling terminal.
    let slave = nix::fcntl::open(
        Path::new(&slave_name),
        OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(step("opening the pty slave"))?;
    // SAFETY: TIOCSCTTY on an fd we own.
    let rc = unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) };
    nix::Error::result(rc).map_err(step("TIOCSCTTY"))?;
    for fd in 0..3 {
        nix::unistd::dup2(slave, fd).map_err(step("dup2 onto stdio"))?;
    }
    let console = Path::new("/dev/console");
    if !bind_console {
        if slave > 2 {
            let _ = nix::unistd::close(slave);
        }
        return Ok(());
    }
    if !console.exists() {
        let _ = std::fs::File::create(console);
    }
    mount(
        Some(Path::new(&slave_name)),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(step("binding the pty on /dev/console"))?;
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    Ok(())
}

/// The other end of the protocol: accepts one connection on the console
/// socket and receives the pty master sent with SCM_RIGHTS (the shim, tests).
pub fn receive_master(listener: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let (sock, _) = listener.accept()?;
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: received just now, owned by nobody else.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::other("no pty master on the console socket"))
}
