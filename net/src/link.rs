//! The two link changes berth makes itself, with the ioctls ip(8) and
//! brctl use (no netlink needed for one flag): bring a link up (lo in a new
//! namespace) and delete a network's bridge when the network goes — CNI's
//! bridge plugin creates bridges and never removes them, and a bridge left
//! with an old subnet's address makes a later network of the same bridge
//! name fail ("already has an IP address different from …").

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// From linux/sockios.h (libc has no constant for it).
const SIOCBRDELBR: libc::c_ulong = 0x89a1;

fn control_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An ifreq naming `name` (refused: empty, too long, with a '/').
fn ifreq(name: &str) -> std::io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn set_up_on(sock: &OwnedFd, req: &mut libc::ifreq, up: bool) -> std::io::Result<()> {
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, which lives here.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut *req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flag = libc::IFF_UP as libc::c_short;
        match up {
            true => req.ifr_ifru.ifru_flags |= flag,
            false => req.ifr_ifru.ifru_flags &= !flag,
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &*req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `ip link set NAME up|down` in the caller's network namespace.
pub fn set_up(name: &str, up: bool) -> std::io::Result<()> {
    set_up_on(&control_socket()?, &mut ifreq(name)?, up)
}

/// Takes bridge `name` down and deletes it; one that is not there is fine.
pub fn delete_bridge(name: &str) -> std::io::Result<()> {
    let (sock, mut req) = (control_socket()?, ifreq(name)?);
    match set_up_on(&sock, &mut req, false) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(()),
        other => other?,
    }
    // SAFETY: SIOCBRDELBR reads the NUL-terminated name in `req`, which lives here.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCBRDELBR as _, req.ifr_name.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_bridge_is_fine_and_bad_names_are_refused() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        super::delete_bridge("berth-nosuch9").unwrap();
        assert!(super::delete_bridge("").is_err());
        assert!(super::set_up("a/b", true).is_err());
    }
}
