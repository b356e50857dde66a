//! The cgroupfs driver on the host, limited to cgroups this test makes and
//! removes itself: `/berth-test-<pid>` in the v1 pids and freezer hierarchies
//! only. The memory hierarchy is left alone on purpose: our machines run tests
//! inside a memory cgroup that nothing may move a process out of.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_init::cgroups::fs::FsManager;
use berth_init::cgroups::{self, CgroupError, CgroupManager};
use oci_spec::runtime::LinuxResources;

const JOIN: &[&str] = &["pids", "freezer"];

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("valid resources JSON")
}

/// Kills our child and removes our cgroups even when an assertion fails.
struct Cleanup {
    child: Child,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Thaw first, or the v1 freezer keeps the SIGKILLed child alive.
        for d in &self.dirs {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn memory_cgroup(pid: u32) -> String {
    read(Path::new(&format!("/proc/{pid}/cgroup")))
        .lines()
        .find(|l| l.contains(":memory:"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn cgroups_fs_v1_pids_and_freezer() {
    let skip = |why: &str| println!("SKIP cgroups_fs_v1_pids_and_freezer: {why}");
    if !nix::unistd::geteuid().is_root() {
        return skip("not root");
    }
    let (pids_root, freezer_root) = (
        Path::new("/sys/fs/cgroup/pids"),
        Path::new("/sys/fs/cgroup/freezer"),
    );
    if cgroups::tree::unified_host() || !pids_root.join("cgroup.procs").exists() {
        return skip("needs the v1 pids and freezer hierarchies (this host is not v1/hybrid)");
    }
    if !freezer_root.join("cgroup.procs").exists() {
        return skip("no v1 freezer hierarchy");
    }
    let name = format!("berth-test-{}", std::process::id());
    let path = format!("/{name}");
    let child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning sleep");
    let pid = child.id();
    let guard = Cleanup {
        child,
        dirs: vec![pids_root.join(&name), freezer_root.join(&name)],
    };
    let memory_before = memory_cgroup(pid);

    let mut m = FsManager::with_controllers(&path, Some(JOIN)).expect("manager");
    assert_eq!(m.path(), path);
    let mut expected = guard.dirs.clone();
    expected.sort();
    assert_eq!(m.dirs(), expected);

    // memory is not among the joined hierarchies: refused, nothing created.
    let e = m
        .apply(
            pid as i32,
            Some(&resources(r#"{"memory":{"limit":67108864}}"#)),
        )
        .unwrap_err();
    assert!(
        matches!(&e, CgroupError::ControllerUnavailable { controller, setting, .. }
            if controller == "memory" && setting == "linux.resources.memory.limit"),
        "{e}"
    );
    assert!(
        guard.dirs.iter().all(|d| !d.exists()),
        "a refused apply left directories"
    );

    let t = std::time::Instant::now();
    m.apply(pid as i32, Some(&resources(r#"{"pids":{"limit":10}}"#)))
        .expect("apply");
    println!("cgroupfs apply (2 hierarchies) took {:?}", t.elapsed());
    let (pids_dir, freezer_dir) = (&guard.dirs[0], &guard.dirs[1]);
    assert_eq!(read(&pids_dir.join("pids.max")), "10");
    assert_eq!(read(&pids_dir.join("cgroup.procs")), pid.to_string());
    assert_eq!(read(&freezer_dir.join("cgroup.procs")), pid.to_string());
    assert_eq!(
        memory_cgroup(pid),
        memory_before,
        "the child left its memory cgroup"
    );
    assert_eq!(m.pids().expect("pids"), vec![pid as i32]);

    m.freeze().expect("freeze");
    assert_eq!(read(&freezer_dir.join("freezer.state")), "FROZEN");
    assert!(m.is_frozen().expect("is_frozen"));
    m.thaw().expect("thaw");
    assert_eq!(read(&freezer_dir.join("freezer.state")), "THAWED");
    assert!(!m.is_frozen().expect("is_frozen"));

    m.update(&resources(r#"{"pids":{"limit":-1}}"#))
        .expect("update");
    assert_eq!(read(&pids_dir.join("pids.max")), "max");

    // Reopened from path() it joins the same two hierarchies.
    let mut again = cgroups::reopen(false, &m.path()).expect("reopen");
    assert_eq!(again.pids().expect("pids"), vec![pid as i32]);
    again.freeze().expect("freeze after reopen");
    // destroy thaws, kills our child (the only process in our cgroup), removes.
    again.destroy().expect("destroy");
    assert!(
        guard.dirs.iter().all(|d| !d.exists()),
        "destroy left directories"
    );
    again.destroy().expect("destroy is idempotent");
    m.destroy().expect("destroy through the first handle too");
    drop(guard);
}

#[test]
fn cgroups_fs_refuses_the_root_and_escapes() {
    for bad in ["/", "/..", "/a/../../etc"] {
        let e = cgroups::reopen(false, bad).err().expect("refused");
        assert!(matches!(e, CgroupError::InvalidPath { .. }), "{bad}: {e}");
    }
}
