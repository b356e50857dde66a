//! Deleting a network's bridge when the network goes: CNI's bridge plugin
//! creates bridges and never removes them, and a bridge left with the old
//! subnet's address would make a later network of the same bridge name
//! fail ("already has an IP address different from …").

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// From linux/sockios.h (libc has no constant for it).
const SIOCBRDELBR: libc::c_ulong = 0x89a1;

/// Takes bridge `name` down and deletes it; a bridge that is not there is
/// fine. (The ioctls brctl uses: no netlink needed for one link.)
pub fn delete(name: &str) -> std::io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cname = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in cname.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = cname;
    // SAFETY: the ioctls read and write `req` / `cname`, which live here.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODEV) => Ok(()),
                _ => Err(e),
            };
        }
        req.ifr_ifru.ifru_flags &= !(libc::IFF_UP as libc::c_short);
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::ioctl(sock.as_raw_fd(), SIOCBRDELBR as _, cname.as_ptr()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
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
        super::delete("berth-nosuch9").unwrap();
        assert!(super::delete("").is_err());
        assert!(super::delete("a/b").is_err());
    }
}
