//! Path resolution inside the container root, and LookPath.
//!
//! Every path taken from config.json is resolved with [`secure_join`]: symlinks
//! are followed as if the rootfs were `/`, so a mount target such as
//! `/etc/evil -> /../../../host` lands inside the rootfs, never on the host.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Too many symlinks on one path: the kernel's own limit is 40.
const MAX_LINKS: usize = 40;

/// Resolves `unsafe_path` under `root`, following symlinks scoped to `root`.
/// Missing trailing components are kept as they are (they will be created).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> std::io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, unsafe_path);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                push_components(&mut pending, &target);
            }
            _ => resolved.push(&part),
        }
    }
    Ok(root.join(resolved))
}

/// Pushes the normal and `..` components of `path` so that `pop` yields them in order.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

/// Finds `program` as execvp would, using the container's PATH, in the current
/// root (called after pivot_root, so `/` is the container's root). A bad
/// command fails `create`, not `start`.
pub fn look_path(program: &str, env: &[String]) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        // runc's texts (Go's exec.LookPath), word for word: podman and
        // containerd map them to exit codes 127 and 126.
        return check_executable(&p)
            .map(|()| p)
            .map_err(|why| format!("exec: {program:?}: {why}"));
    }
    // No PATH in process.env searches nowhere, as runc (Go's LookPath with
    // an empty $PATH): a spec relying on a default would run elsewhere what
    // runc refuses.
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("");
    path.split(':')
        .filter(|_| !path.is_empty())
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|p| check_executable(p).is_ok())
        .ok_or_else(|| format!("exec: {program:?}: executable file not found in $PATH"))
}

/// Why `p` cannot be executed, as Go's findExecutable says it.
fn check_executable(p: &Path) -> Result<(), String> {
    let md = std::fs::metadata(p).map_err(|e| {
        let e = std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::ENOENT));
        format!("stat {}: {}", p.display(), errno_text(&e))
    })?;
    if md.is_dir() {
        return Err("is a directory".into());
    }
    if md.permissions().mode() & 0o111 == 0 {
        return Err("permission denied".into());
    }
    Ok(())
}

/// An errno's text as Go prints it ("no such file or directory"), without
/// Rust's " (os error N)".
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = tmp("join");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("/../../../../etc", root.join("abs")).unwrap();
        symlink("../../..", root.join("real/up")).unwrap();
        symlink("real", root.join("rel")).unwrap();
        assert_eq!(
            secure_join(&root, Path::new("/abs/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(&root, Path::new("/real/up/x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            secure_join(&root, Path::new("/rel/new/dir")).unwrap(),
            root.join("real/new/dir")
        );
        assert_eq!(
            secure_join(&root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(secure_join(&root, Path::new("/loop")).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn look_path_uses_the_container_path() {
        let sh = look_path("sh", &["PATH=/nonexistent:/bin".into()]).unwrap();
        assert_eq!(sh, PathBuf::from("/bin/sh"));
        assert!(look_path("no-such-program-berth", &[]).is_err());
        assert_eq!(
            look_path("sh", &[]).unwrap_err(),
            r#"exec: "sh": executable file not found in $PATH"#,
            "no PATH: searched nowhere, as runc"
        );
        assert_eq!(
            look_path("/etc/passwd", &[]).unwrap_err(),
            r#"exec: "/etc/passwd": permission denied"#
        );
        assert_eq!(
            look_path("/no/such", &[]).unwrap_err(),
            r#"exec: "/no/such": stat /no/such: no such file or directory"#
        );
        assert_eq!(
            look_path("/etc", &[]).unwrap_err(),
            r#"exec: "/etc": is a directory"#
        );
    }
}
