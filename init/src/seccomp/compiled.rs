//! A filter compiled to BPF ahead of its load. libseccomp compiles inside
//! seccomp_load, and for a profile like podman's default (~370 syscalls,
//! argument conditions) that is milliseconds; a filter loaded last — with
//! no_new_privs, after the exec FIFO — would make every Start wait for it.
//! So the init compiles before it reports Ready, and after the FIFO only
//! the seccomp(2) call is left.
//!
//! Only filters libseccomp would load with no flags: a spec's `flags` (log,
//! spec_allow, tsync) and notifying rules keep libseccomp's own load.

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use oci_spec::runtime::LinuxSeccomp;

use super::{build, notifies, SeccompError};

/// A BPF program ready for seccomp(SECCOMP_SET_MODE_FILTER).
#[derive(Clone)]
pub struct Compiled {
    prog: Vec<libc::sock_filter>,
}

/// `s` compiled, or None where it keeps libseccomp's load (see above).
pub fn compile(s: &LinuxSeccomp) -> Result<Option<Compiled>, SeccompError> {
    if s.flags().as_ref().is_some_and(|f| !f.is_empty()) || notifies(s) {
        return Ok(None);
    }
    let ctx = build(s)?;
    // SAFETY: memfd_create with a static name; the fd is fresh and ours.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(compile_err(std::io::Error::last_os_error()));
    }
    // SAFETY: checked above: a valid fd nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(|e| compile_err(std::io::Error::other(e.to_string())))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(compile_err)?;
    Compiled::from_exported(&bytes).map(Some)
}

/// The exported program as instructions (libseccomp writes them in the
/// host's byte order, 8 bytes each: code u16, jt u8, jf u8, k u32).
fn from_bytes(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    const SIZE: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % SIZE != 0 {
        return Err(compile_err(std::io::Error::other(format!(
            "libseccomp exported {} bytes, not whole instructions",
            bytes.len()
        ))));
    }
    Ok(bytes
        .chunks_exact(SIZE)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect())
}

fn compile_err(source: std::io::Error) -> SeccompError {
    SeccompError::Compile { source }
}

impl Compiled {
    /// A program as libseccomp exports it (and the cache keeps it).
    pub fn from_exported(bytes: &[u8]) -> Result<Compiled, SeccompError> {
        Ok(Compiled {
            prog: from_bytes(bytes)?,
        })
    }

    /// The program in libseccomp's export format (see from_bytes).
    pub fn to_exported(&self) -> Vec<u8> {
        self.prog
            .iter()
            .flat_map(|i| {
                let mut b = [0u8; 8];
                b[..2].copy_from_slice(&i.code.to_ne_bytes());
                b[2] = i.jt;
                b[3] = i.jf;
                b[4..].copy_from_slice(&i.k.to_ne_bytes());
                b
            })
            .collect()
    }

    /// Loads the program into the calling thread (flags 0, as libseccomp
    /// loads a filter without flags). The caller has set no_new_privs, or
    /// still has CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<(), SeccompError> {
        let len = u16::try_from(self.prog.len()).map_err(|_| {
            compile_err(std::io::Error::other(format!(
                "{} BPF instructions: more than a filter holds",
                self.prog.len()
            )))
        })?;
        let fprog = libc::sock_fprog {
            len,
            filter: self.prog.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(2) reads the program through the pointer, which
        // lives in self for the call; the kernel copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::LoadCompiled {
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}
