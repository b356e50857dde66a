//! Loading the device program ([`super::device_filter`]) with bpf(2) and
//! attaching it to a cgroup v2 directory, as runc's fs2 driver does.
//!
//! The program is attached with BPF_F_ALLOW_MULTI: the kernel then runs the
//! programs of every ancestor too (all must allow), and the container may
//! attach its own below. A program stays attached while the cgroup exists and
//! is freed with it, so removing the directory is the whole cleanup. Programs
//! already on the directory (an earlier create or update) are detached once
//! the new one is in place, so the policy is never briefly open, and an
//! update can loosen it (with MULTI alone they would all have to allow).
//!
//! No RLIMIT_MEMLOCK raise: since Linux 5.11 BPF memory is charged to the
//! memory cgroup, and raising the limit needs CAP_SYS_RESOURCE anyway.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::device_filter::{self, Insn};
use super::devices::Rule;

/// What failed in bpf(2), with the kernel's words where it gives some.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "loading the device program (BPF_PROG_TYPE_CGROUP_DEVICE, {insns} instructions): \
         {source}{hint}{log}"
    )]
    Load {
        insns: usize,
        #[source]
        source: io::Error,
        /// Why the kernel may have said no, when the errno alone is cryptic.
        hint: &'static str,
        /// The verifier's log, when it rejected the program.
        log: String,
    },
    #[error("{op} on {dir}: {source}")]
    Cgroup {
        op: &'static str,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, BpfError>;

// bpf(2) commands and constants (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Room for the verifier's complaint: it logs every instruction it visits,
/// and our programs are a few dozen long.
const LOG_SIZE: usize = 256 * 1024;
/// More programs than anyone attaches to one container cgroup.
const MAX_ATTACHED: usize = 64;

/// The BPF_PROG_LOAD part of `union bpf_attr`, up to the fields we set; the
/// kernel takes a shorter attr and treats the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// BPF_PROG_ATTACH / BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with one of the attr structs above.
///
/// # Safety
/// `attr` must be the `union bpf_attr` prefix for `cmd`, and every address
/// in it must point to a buffer of the size it claims that stays alive (and,
/// for output buffers, writable) until this returns.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the size passed is that of `attr`, a live #[repr(C)] struct;
    // the caller vouches for the addresses inside it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Takes ownership of a descriptor bpf(2) just returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

fn prog_load(code: &[u64], log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
    // The programs' license: "GPL" only matters for GPL-only helpers, which
    // ours calls none of.
    let license = b"Apache\0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"berth_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: code.len() as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: insns, license and log_buf point to `code`, `license` and the
    // caller's `buf`, all borrowed for this call, with the lengths given.
    unsafe { bpf(BPF_PROG_LOAD, &mut attr) }.map(owned)
}

/// Loads `prog`; a rejected program is loaded again with the verifier log on,
/// so the error says what the verifier disliked.
pub fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let code: Vec<u64> = prog.iter().map(Insn::encode).collect();
    let source = match prog_load(&code, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut buf = vec![0u8; LOG_SIZE];
    let _ = prog_load(&code, Some(&mut buf));
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]);
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    let log = if tail.is_empty() {
        String::new()
    } else {
        let lines: Vec<&str> = tail.into_iter().rev().collect();
        format!("; verifier log:\n{}", lines.join("\n"))
    };
    let hint = match source.raw_os_error() {
        Some(libc::EPERM) => {
            " (bpf(2) needs CAP_BPF or CAP_SYS_ADMIN in the initial user namespace; before \
             Linux 5.11 RLIMIT_MEMLOCK may also be too low)"
        }
        Some(libc::EINVAL) if log.is_empty() => " (does this kernel have CONFIG_CGROUP_BPF?)",
        _ => "",
    };
    Err(BpfError::Load {
        insns: prog.len(),
        source,
        hint,
        log,
    })
}

/// Enforces `rules` on the cgroup v2 directory `dir`. Rules that take
/// nothing away need no program: only older ones are detached.
pub fn set_device_rules(dir: &Path, rules: &[Rule]) -> Result<()> {
    if !device_filter::restricts(rules) {
        return attach_replacing(dir, None);
    }
    let prog = load(&device_filter::compile(rules))?;
    attach_replacing(dir, Some(prog.as_fd()))
    // `prog` closes here; the attachment keeps the program alive.
}

/// Attaches `prog` (if any) to the cgroup v2 directory `dir`, then detaches
/// the device programs that were attached to it directly before.
fn attach_replacing(dir: &Path, prog: Option<BorrowedFd>) -> Result<()> {
    let err = |op| {
        move |source| BpfError::Cgroup {
            op,
            dir: dir.to_path_buf(),
            source,
        }
    };
    let cgroup = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(err("opening"))?;
    let old = match attached(&cgroup) {
        Ok(ids) => ids,
        // Nothing to attach, and bpf(2) refused (in a user namespace, or no
        // CONFIG_CGROUP_BPF): then nothing of ours can be there to detach,
        // and rules that deny nothing must not fail a create.
        Err(_) if prog.is_none() => return Ok(()),
        Err(e) => return Err(err("BPF_PROG_QUERY")(e)),
    };
    if let Some(prog) = prog {
        let mut attr = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
        };
        // SAFETY: an attach attr holds descriptors only, no addresses.
        unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }
            .map_err(err("BPF_PROG_ATTACH (device program)"))?;
    }
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        // SAFETY: this attr holds an id only, no addresses.
        let old_fd = match unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut get) }.map(owned) {
            Ok(fd) => fd,
            // Detached and freed meanwhile: nothing left to do.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(err("BPF_PROG_GET_FD_BY_ID")(e)),
        };
        let mut attr = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: 0,
        };
        // SAFETY: a detach attr holds descriptors only, no addresses.
        match unsafe { bpf(BPF_PROG_DETACH, &mut attr) } {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("BPF_PROG_DETACH (old device program)")(e)),
        }
    }
    Ok(())
}

/// Ids of the device programs attached to the cgroup itself (not inherited).
fn attached(cgroup: &File) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_ATTACHED];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_ATTACHED as u32,
        ..Default::default()
    };
    // SAFETY: prog_ids points to `ids`, with room for the prog_cnt it claims.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }?;
    let n = (attr.prog_cnt as usize).min(MAX_ATTACHED);
    Ok(ids[..n].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::device_filter::{compile, EXIT};
    use crate::cgroups::devices;
    use oci_spec::runtime::LinuxDeviceCgroup;

    /// bpf(2) where the test runs, or why not (not root, no CAP_BPF).
    fn kernel_loads() -> bool {
        match load(&compile(&[])) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("SKIP loading device programs into this kernel: {e}");
                false
            }
        }
    }

    #[test]
    fn the_verifier_accepts_every_rule_shape() {
        if !kernel_loads() {
            return;
        }
        let configs = [
            "[]",
            r#"[{"allow":false,"access":"rwm"}]"#,
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"b","major":8,"access":"r"},
                {"allow":false,"type":"c","minor":3,"access":"w"},
                {"allow":true,"type":"a","major":10,"minor":200,"access":"m"},
                {"allow":false,"type":"a","access":"rw"},
                {"allow":true,"type":"c","major":4294967295,"access":"rwm"}]"#,
            r#"[{"allow":false,"type":"c","major":1,"access":"rwm"},{"allow":true,"access":"rwm"}]"#,
        ];
        for json in configs {
            let d: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
            let rules = devices::rules(&d).unwrap();
            if let Err(e) = load(&compile(&rules)) {
                panic!("{json}: {e}");
            }
        }
    }

    #[test]
    fn a_rejected_program_says_why() {
        if !kernel_loads() {
            return;
        }
        // EXIT without setting R0.
        let bad = Insn {
            code: EXIT,
            dst: 0,
            src: 0,
            off: 0,
            imm: 0,
        };
        let e = load(&[bad]).unwrap_err().to_string();
        println!("a rejection reads: {e}");
        assert!(e.contains("verifier log") && e.contains("R0"), "{e}");
    }
}
