//! cgroup v1 with the cgroupfs driver, as podman and containerd use it on a
//! v1 or hybrid host. The box's systemd runs a unified tree, so these run on
//! the host itself (ours is hybrid: v1 controllers under /sys/fs/cgroup), in
//! cgroups of their own under `berth-v1-<pid>`, removed at the end; skipped
//! with a reason where the host has no v1 memory hierarchy.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{busybox_bundle, text, Bundle, RUNTIME};
use serde_json::json;

fn v1_host() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let v1 = info
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup/memory ") && l.contains(" - cgroup "));
    if !v1 {
        return Some("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory".into());
    }
    if std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(1)
        != 0
    {
        return Some("needs root".into());
    }
    None
}

/// The first block device's MAJ:MIN (a throttle rule needs a real one).
fn a_block_device() -> Option<String> {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/block").ok()?.flatten().collect();
    devs.sort_by_key(|d| d.file_name());
    devs.iter()
        .filter(|d| !d.file_name().to_string_lossy().starts_with("loop"))
        .find_map(|d| std::fs::read_to_string(d.path().join("dev")).ok())
        .map(|s| s.trim().to_string())
}

struct Host {
    root: String,
    parent: String,
}

impl Host {
    fn new() -> Host {
        Host {
            root: format!("/run/{}", berth_box::bundle::unique("berth-v1-root")),
            parent: format!("berth-v1-{}", std::process::id()),
        }
    }

    fn rt(&self, args: &[&str]) -> Output {
        Command::new(RUNTIME)
            .args(["--root", &self.root])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
        // Only the cgroups this test made: its parent in each hierarchy.
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&self.parent));
        }
    }
}

fn v1_bundle(host: &Host, id: &str, script: &str, userns: bool) -> Bundle {
    let mut b = busybox_bundle(id, &["sh", "-c", script]);
    let c = &mut b.config;
    c["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", host.parent));
    // podman's default on v1: the host's cgroup namespace.
    let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "cgroup");
    if userns {
        ns.push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    }
    let mut res = json!({"memory": {"limit": 67108864, "swappiness": 7, "disableOOMKiller": true}});
    if let Some(dev) = a_block_device() {
        let (major, minor) = dev.split_once(':').unwrap();
        res["blockIO"] = json!({"throttleReadBpsDevice": [{
            "major": major.parse::<i64>().unwrap(),
            "minor": minor.parse::<i64>().unwrap(),
            "rate": 1048576}]});
    }
    c["linux"]["resources"] = res;
    b.save();
    b
}

#[test]
fn v1_cgroups_show_the_containers_own_without_a_cgroup_namespace() {
    if let Some(why) = v1_host() {
        eprintln!("SKIP v1_cgroups_show_the_containers_own: {why}");
        return;
    }
    let host = Host::new();
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                  /sys/fs/cgroup/memory/memory.swappiness; \
                  head -1 /sys/fs/cgroup/memory/memory.oom_control; \
                  cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device; \
                  ls /sys/fs/cgroup/memory | grep -c berth-v1 || true";
    // A user namespace may not mount a v1 hierarchy at all: binds only.
    for (i, userns) in [false, true].into_iter().enumerate() {
        let id = format!("v1c{i}");
        let b = v1_bundle(&host, &id, script, userns);
        let out = host.rt(&["run", &id, "--bundle", b.path()]);
        assert!(out.status.success(), "userns {userns}: {}", text(&out));
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(
            lines[0], "67108864",
            "the container's limit, not the root's: {got}"
        );
        assert_eq!(lines[1], "7", "swappiness: {got}");
        assert_eq!(lines[2], "oom_kill_disable 1", "{got}");
        if let Some(dev) = a_block_device() {
            assert!(got.contains(&format!("{dev} 1048576")), "throttle: {got}");
        }
        // Its own directory is the root: the host's other cgroups are not listed.
        assert_eq!(
            lines.last().copied(),
            Some("0"),
            "host cgroups visible: {got}"
        );
        let out = host.rt(&["delete", "-f", &id]);
        assert!(out.status.success(), "{}", text(&out));
        for ctrl in ["memory", "blkio", "pids"] {
            let dir = Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join(&host.parent)
                .join(&id);
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
    }
}
