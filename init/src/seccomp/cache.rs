//! Compiled filters kept between containers, as crun keeps them: libseccomp
//! takes ~10–15 ms to compile a profile like containers-common's default
//! (~370 syscalls with argument conditions), and every image container and
//! every CRI container with RuntimeDefault carries the same one. The creator
//! (on the host, as root, before the init is forked) looks the program up
//! in `<state root>/.seccomp/`, and compiles and stores it on a miss; the
//! init inherits it through fork, so only seccomp(2) is left after the FIFO.
//!
//! The key covers everything the program depends on: the profile as the
//! spec states it, libseccomp's version and this very binary (its inode,
//! size and mtime: an upgrade or rebuild compiles anew). The kernel, whose
//! features libseccomp probes, is fixed until the reboot that empties /run.
//! A file that is not a whole program is ignored and the profile compiled.
//! The directory is root's (0700) in the root-only state dir; a container
//! never sees it. Bounded: at MAX_ENTRIES it is emptied before a store.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use super::compiled::{compile, Compiled};

/// The cache's directory under the state root (a name no container id can
/// have: ids start with a letter or digit).
pub const DIR: &str = ".seccomp";
/// Distinct profiles kept at most (each a few KiB).
const MAX_ENTRIES: usize = 64;
/// The largest program read back: 4096 instructions (BPF_MAXINSNS) of 8 bytes.
const MAX_BYTES: u64 = 4096 * 8;

/// `filter` compiled, from the cache under `state_root` or compiled and
/// stored there; None where the filter keeps libseccomp's own load (flags,
/// notifying rules) or cannot be compiled here — the init then does what
/// it did without a cache, and reports a bad profile itself.
pub fn compiled_for(filter: &LinuxSeccomp, state_root: &Path) -> Option<Compiled> {
    let path = key(filter).map(|k| state_root.join(DIR).join(format!("{k}.bpf")));
    if let Some(hit) = path.as_deref().and_then(read) {
        return Some(hit);
    }
    let compiled = compile(filter).ok()??;
    if let Some(path) = path {
        // Best effort: a full disk or a read-only /run costs the next
        // container a compile, nothing more.
        let _ = store(&path, &compiled);
    }
    Some(compiled)
}

/// The cache key: a digest of the profile, libseccomp's version and the
/// running binary's identity.
fn key(filter: &LinuxSeccomp) -> Option<String> {
    let exe = fs::metadata("/proc/self/exe").ok()?;
    let lib = libseccomp::ScmpVersion::current().ok()?;
    let mut h = Sha256::new();
    h.update(b"berth-seccomp-cache-1\0");
    h.update(serde_json::to_vec(filter).ok()?);
    h.update(format!(
        "\0{}.{}.{}\0{}:{}:{}:{}.{}",
        lib.major,
        lib.minor,
        lib.micro,
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime(),
        exe.mtime_nsec()
    ));
    Some(
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

fn read(path: &Path) -> Option<Compiled> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_BYTES {
        return None;
    }
    Compiled::from_exported(&bytes).ok()
}

/// Writes the program beside its name and renames it into place, so a
/// reader sees a whole file or none.
fn store(path: &Path, compiled: &Compiled) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    make_room(dir);
    let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&compiled.to_exported()))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Empties the directory once it holds MAX_ENTRIES, and removes the
/// half-written files of creators that died (kill -9) before their rename.
fn make_room(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let full = names.len() >= MAX_ENTRIES;
    for name in names {
        let stale = name
            .strip_suffix(".tmp")
            .and_then(|n| n.rsplit('.').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if full || stale {
            let _ = fs::remove_file(dir.join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(errno_for: &str) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [errno_for], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }))
        .unwrap()
    }

    fn root(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-seccomp-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn bpf_files(root: &Path) -> Vec<PathBuf> {
        fs::read_dir(root.join(DIR))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    #[test]
    fn a_stored_program_is_the_compiled_one_and_a_bad_file_is_ignored() {
        let root = root("stored");
        let p = profile("mkdir");
        let fresh = compile(&p).unwrap().unwrap().to_exported();
        let first = compiled_for(&p, &root).unwrap().to_exported();
        assert_eq!(first, fresh);
        let files = bpf_files(&root);
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(fs::read(&files[0]).unwrap(), fresh);
        // A hit reads the file: a program changed there is what comes back.
        let mut changed = fresh.clone();
        changed[4] ^= 1;
        fs::write(&files[0], &changed).unwrap();
        assert_eq!(compiled_for(&p, &root).unwrap().to_exported(), changed);
        // Not whole instructions: ignored, compiled and stored again.
        fs::write(&files[0], &fresh[..5]).unwrap();
        assert_eq!(compiled_for(&p, &root).unwrap().to_exported(), fresh);
        assert_eq!(fs::read(&files[0]).unwrap(), fresh);
        // Another profile, another entry.
        let other = compiled_for(&profile("rmdir"), &root).unwrap();
        assert_ne!(other.to_exported(), fresh);
        assert_eq!(bpf_files(&root).len(), 2);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn flags_keep_libseccomps_load_and_dead_writers_files_go() {
        let root = root("flags");
        let mut p = profile("mkdir");
        p.set_flags(Some(vec![
            oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        ]));
        assert!(compiled_for(&p, &root).is_none());
        assert!(!root.join(DIR).exists());
        // A creator killed between its write and its rename left a file.
        fs::create_dir_all(root.join(DIR)).unwrap();
        let dead = root.join(DIR).join("abc.bpf.4194304999.tmp");
        fs::write(&dead, b"half").unwrap();
        compiled_for(&profile("mkdir"), &root).unwrap();
        assert!(!dead.exists());
        assert_eq!(bpf_files(&root).len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_full_directory_is_emptied_before_a_store() {
        let root = root("full");
        fs::create_dir_all(root.join(DIR)).unwrap();
        for i in 0..MAX_ENTRIES {
            fs::write(root.join(DIR).join(format!("{i}.bpf")), [0u8; 8]).unwrap();
        }
        compiled_for(&profile("mkdir"), &root).unwrap();
        assert_eq!(bpf_files(&root).len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }
}
