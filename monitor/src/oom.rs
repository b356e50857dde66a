//! Whether the kernel's OOM killer struck in the container's cgroup: its
//! `memory.events` `oom_kill` count, read when the monitor starts and again
//! when the init has exited (the exit record's `oom_killed`).
//!
//! The file is opened at the start, while the init is surely in its scope:
//! at the end the scope may be on its way out. Without a memory controller
//! there is no such file, and nothing is ever reported as OOM-killed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub struct OomWatch {
    events: File,
    at_start: u64,
}

impl OomWatch {
    /// Watches the cgroup (v2) process `pid` is in, if it has memory.events.
    pub fn of_process(pid: i32) -> Option<OomWatch> {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let dir = unified_dir(Path::new("/sys/fs/cgroup"), &cgroup)?;
        Self::open(&dir.join("memory.events"))
    }

    pub fn open(path: &Path) -> Option<OomWatch> {
        let mut events = File::open(path).ok()?;
        let at_start = read_oom_kills(&mut events)?;
        Some(OomWatch { events, at_start })
    }

    /// Whether processes were OOM-killed since the start (false when the
    /// file cannot be read any more).
    pub fn oom_killed(&mut self) -> bool {
        read_oom_kills(&mut self.events).is_some_and(|n| n > self.at_start)
    }
}

/// The cgroup v2 directory of a `/proc/<pid>/cgroup` text ("0::/path").
fn unified_dir(root: &Path, cgroup: &str) -> Option<PathBuf> {
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = rel.trim().trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(root.join(rel))
}

/// memory.events' `oom_kill` (0 on kernels before 4.13, which lack the line).
fn read_oom_kills(f: &mut File) -> Option<u64> {
    f.seek(SeekFrom::Start(0)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    Some(parse_oom_kills(&text))
}

pub fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn oom_kills_counted_from_the_start() {
        let dir = std::env::temp_dir().join(format!("berth-oom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memory.events");
        let write = |n: u64| {
            let mut f = File::create(&path).unwrap();
            write!(
                f,
                "low 0\nhigh 0\nmax 3\noom 2\noom_kill {n}\noom_group_kill 0\n"
            )
            .unwrap();
        };
        write(1);
        let mut w = OomWatch::open(&path).unwrap();
        assert!(!w.oom_killed(), "a kill before the start is not ours");
        // File::create truncates the same inode: the open file sees it.
        write(2);
        assert!(w.oom_killed());
        assert!(OomWatch::open(&dir.join("missing")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cgroup_lines() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            unified_dir(root, "0::/berth.slice/berth-a.scope\n"),
            Some(root.join("berth.slice/berth-a.scope"))
        );
        assert_eq!(unified_dir(root, "1:name=systemd:/x\n"), None);
        assert_eq!(unified_dir(root, "0::/../x\n"), None);
        assert_eq!(parse_oom_kills("oom 1\n"), 0);
    }
}
