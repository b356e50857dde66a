//! Which cgroup hierarchies are mounted where (mountinfo), and which cgroup a
//! process is in within each (/proc/PID/cgroup): shared by `exec` (joining
//! the init's cgroups) and the container's `type: cgroup` mounts.

use std::path::PathBuf;

/// One mounted cgroup hierarchy.
#[derive(Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub point: PathBuf,
    /// Its super options without rw/ro ("cpu,cpuacct", "xattr,name=systemd");
    /// empty for cgroup2.
    pub opts: String,
    pub v2: bool,
}

impl Hierarchy {
    /// Whether this is the hierarchy of a /proc/PID/cgroup line with these
    /// controllers ("" = cgroup2; "cpu,cpuacct"; "name=systemd").
    pub fn holds(&self, ctrls: &str) -> bool {
        if self.v2 {
            return ctrls.is_empty();
        }
        let have: Vec<&str> = self.opts.split(',').collect();
        !ctrls.is_empty() && ctrls.split(',').all(|c| have.contains(&c))
    }
}

/// The cgroup mounts in a mountinfo text, in its order.
pub fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?;
            let super_opts = r.nth(1).unwrap_or("");
            let point = PathBuf::from(left.split_whitespace().nth(4)?);
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let opts: Vec<&str> = super_opts
                .split(',')
                .filter(|o| !v2 && !matches!(*o, "rw" | "ro"))
                .collect();
            Some(Hierarchy {
                point,
                opts: opts.join(","),
                v2,
            })
        })
        .collect()
}

/// A /proc/PID/cgroup text as (controllers, path) pairs.
pub fn membership(proc_cgroup: &str) -> Vec<(&str, &str)> {
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctrls, path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hierarchies_and_what_they_hold() {
        let hs = hierarchies(HYBRID);
        let at = |ctrls: &str| hs.iter().find(|h| h.holds(ctrls)).map(|h| h.point.clone());
        assert_eq!(at(""), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            at("cpu,cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            at("name=systemd"),
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(at("pids"), None);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[2].opts, "xattr,name=systemd");
        assert!(hs[3].v2 && hs[3].opts.is_empty());
    }

    #[test]
    fn membership_lines() {
        let own = "12:name=systemd:/berth/web\n2:cpu,cpuacct:/berth/web\n0::/x:y\n";
        assert_eq!(
            membership(own),
            [
                ("name=systemd", "/berth/web"),
                ("cpu,cpuacct", "/berth/web"),
                ("", "/x:y")
            ]
        );
    }
}
