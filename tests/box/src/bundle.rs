//! OCI bundles for tests: a busybox-static rootfs and a config.json, in the
//! cargo target dir (every box binds it at the same path), removed on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Busybox applets the tests use, as symlinks in the rootfs.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "ls", "sleep", "mkdir", "readlink", "id", "grep", "true", "false",
    "touch", "mount", "hostname", "wc", "env", "stat", "head", "uname", "pwd", "yes", "tr", "tty",
    "stty", "ps", "kill", "seq", "dd",
];

pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

/// `name-<pid>-<n>`: unique among concurrent tests and test processes.
pub fn unique(name: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl Bundle {
    /// Writes a busybox rootfs and `config` (a runtime-spec config.json value).
    pub fn create(name: &str, config: Value) -> Bundle {
        let base = crate::target_dir()
            .expect("cargo target dir")
            .join("berth-tests");
        let dir = base.join(unique(name));
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("creating the test rootfs");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox (apt-get install busybox-static)");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a))
                .expect("busybox applet link");
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
            .expect("writing /etc/passwd");
        let b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn save(&self) {
        let json = serde_json::to_string_pretty(&self.config).expect("config serializes");
        std::fs::write(self.dir.join("config.json"), json).expect("writing config.json");
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().expect("utf-8 bundle path")
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
