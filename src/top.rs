//! TopContainer (`berthctl top`): the processes of a container's cgroup
//! (its scope and any cgroups below it), read from /proc. podman runs ps
//! inside the container; berth reads the same facts from the host, so no
//! binary of the host enters the container and none of the image is needed.
//! Pids are given as the container sees them (the last NSpid) and as the
//! host does.

use std::path::{Path, PathBuf};

/// One process: (pid in the container, its parent's pid in the container
/// (0: outside it), uid, host pid, command line).
pub type ProcessRow = (u32, u32, u32, u32, String);

/// The v2 cgroup directory of `pid`.
fn cgroup_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
}

/// Every pid in `dir` and the cgroups below it.
fn pids_below(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        // file_type does not follow links: cgroupfs has none, but a walk
        // should never leave the tree.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            pids_below(&e.path(), out);
        }
    }
}

/// (PPid, real uid, the innermost NSpid) from /proc/<pid>/status.
fn status_of(pid: u32) -> Option<(u32, u32, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    };
    let ppid = field("PPid:")?.first()?.parse().ok()?;
    let uid = field("Uid:")?.first()?.parse().ok()?;
    let nspid = field("NSpid:")?.last()?.parse().ok()?;
    Some((ppid, uid, nspid))
}

/// The command line of `pid` (its comm in brackets for a kernel-like
/// process without one, as ps shows).
fn command_of(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if !args.is_empty() {
        return args.join(" ");
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!("[{}]", comm.trim())
}

/// The processes of the cgroup `init_pid` is in, sorted by container pid;
/// None when that cgroup cannot be read (the process has gone).
pub fn processes(init_pid: u32) -> Option<Vec<ProcessRow>> {
    let dir = cgroup_dir(init_pid)?;
    let mut pids = Vec::new();
    pids_below(&dir, &mut pids);
    if pids.is_empty() {
        return None;
    }
    let facts: Vec<(u32, (u32, u32, u32))> = pids
        .iter()
        .filter_map(|&p| status_of(p).map(|s| (p, s)))
        .collect();
    let in_container = |host: u32| {
        facts
            .iter()
            .find(|(p, _)| *p == host)
            .map_or(0, |(_, (_, _, ns))| *ns)
    };
    let mut rows: Vec<ProcessRow> = facts
        .iter()
        .map(|&(host, (ppid, uid, ns))| (ns, in_container(ppid), uid, host, command_of(host)))
        .collect();
    rows.sort();
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_in_its_own_cgroup_listing() {
        let me = std::process::id();
        let Some(rows) = processes(me) else {
            eprintln!("skipped: no cgroup v2 directory for this process");
            return;
        };
        let row = rows
            .iter()
            .find(|r| r.3 == me)
            .expect("this process listed");
        assert!(!row.4.is_empty());
    }
}
