//! Network namespaces made ahead by the exec server, so a create's init
//! joins one (setns) instead of having clone(2) set one up: that set-up
//! (every pernet subsystem's init, the loopback device, the net sysctl
//! tables) is ~0.5 ms of a create's critical path, and the pool makes it
//! while the server waits for the next request (docs/performance.md
//! "Network namespaces made ahead").
//!
//! A namespace made ahead is what clone would have made — a fresh one with
//! a loopback that is down — as long as no user namespace must own it:
//! berth-init takes one only in place of a new network namespace of a spec
//! without a user namespace (`Namespaces::use_pooled_net`), and the server
//! hands one out only for such a spec. The pool is fds in the server and
//! nothing else: berthd gone, the server exits, and the kernel frees them.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};

/// The variable of the exec server's environment that sets the pool's size
/// (0 or unset: no pool). berthd always sets it, from `netns_pool` in
/// /etc/berth/berthd.toml (its default lives there alone). Not an argument:
/// the server's command line stays `berth-shim --exec-server`, what tools
/// and tests look for.
pub const ENV: &str = "BERTH_NETNS_POOL";

pub struct NetnsPool {
    /// The server's own network namespace, to go back to after each one.
    home: OwnedFd,
    ready: Vec<OwnedFd>,
    size: usize,
}

impl NetnsPool {
    /// A pool of `size` (none for 0, or when our own namespace cannot be
    /// opened to come back to).
    pub fn new(size: usize) -> Option<NetnsPool> {
        if size == 0 {
            return None;
        }
        let home = File::open("/proc/thread-self/ns/net").ok()?.into();
        Some(NetnsPool {
            home,
            ready: Vec::with_capacity(size),
            size,
        })
    }

    /// Whether it has all it should.
    pub fn full(&self) -> bool {
        self.ready.len() >= self.size
    }

    /// One made ahead, if there is one.
    pub fn take(&mut self) -> Option<OwnedFd> {
        self.ready.pop()
    }

    /// Makes namespaces until the pool is full or `busy` says a request is
    /// waiting (requests come first). A namespace that cannot be made
    /// (EPERM, a net namespace limit) shrinks the pool to what it has:
    /// creates then get theirs from clone, as without a pool.
    pub fn fill(&mut self, busy: impl Fn() -> bool) {
        while self.ready.len() < self.size && !busy() {
            match self.make_one() {
                Ok(fd) => self.ready.push(fd),
                Err(_) => self.size = self.ready.len(),
            }
        }
    }

    /// unshare(CLONE_NEWNET) makes one and moves this (single-threaded)
    /// process into it; its fd is kept and the process goes home.
    fn make_one(&self) -> nix::Result<OwnedFd> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        let made = File::open("/proc/thread-self/ns/net")
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)));
        if setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
            // Every shim forked from here on would share one network
            // namespace with the next container: stop rather than serve.
            // berthd sees the server gone and starts shims itself.
            std::process::exit(1);
        }
        Ok(made?.into())
    }
}

/// Whether `bundle`'s config.json asks for a new network namespace and no
/// user namespace: the creates that can use one from the pool. A read of a
/// few KB and a parse of its namespaces alone, so that a create that will
/// not use one (host networking, a pod's namespace, a user namespace) does
/// not take one to waste. The shim reads and checks the whole spec anyway.
pub fn wants_one(bundle: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Namespace {
        #[serde(rename = "type")]
        typ: String,
        path: Option<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(default)]
        namespaces: Vec<Namespace>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        linux: Option<Linux>,
    }
    let Ok(text) = std::fs::read(bundle.join("config.json")) else {
        return false;
    };
    let Ok(config) = serde_json::from_slice::<Config>(&text) else {
        return false;
    };
    let list = config.linux.map(|l| l.namespaces).unwrap_or_default();
    list.iter().any(|n| n.typ == "network" && n.path.is_none())
        && !list.iter().any(|n| n.typ == "user")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(namespaces: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(r#"{{"ociVersion":"1.2.0","linux":{{"namespaces":{namespaces}}}}}"#);
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn only_a_new_network_namespace_without_a_user_namespace() {
        let yes = bundle_with(r#"[{"type":"pid"},{"type":"network"},{"type":"mount"}]"#);
        assert!(wants_one(yes.path()));
        for no in [
            r#"[{"type":"pid"},{"type":"mount"}]"#,
            r#"[{"type":"network","path":"/proc/1/ns/net"}]"#,
            r#"[{"type":"user"},{"type":"network"}]"#,
            r#"[{"type":"network"},{"type":"user","path":"/proc/1/ns/user"}]"#,
        ] {
            assert!(!wants_one(bundle_with(no).path()), "{no}");
        }
        let none = tempfile::tempdir().unwrap();
        assert!(!wants_one(none.path()), "no config.json");
        std::fs::write(none.path().join("config.json"), "{").unwrap();
        assert!(!wants_one(none.path()), "not JSON");
    }

    #[test]
    fn made_ahead_and_taken() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: making network namespaces needs root");
            return;
        }
        let home = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        // The test harness runs tests on threads: unshare and setns act on
        // this thread alone, which is all this checks.
        let mut pool = NetnsPool::new(2).unwrap();
        pool.fill(|| false);
        assert_eq!(pool.ready.len(), 2);
        let back = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(back.ino(), home.ino(), "back in our own namespace");
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        let ino = |fd: &OwnedFd| {
            nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(fd))
                .unwrap()
                .st_ino
        };
        assert_ne!(ino(&a), ino(&b));
        assert_ne!(ino(&a), home.ino());
        assert!(pool.take().is_none());
        // A waiting request stops the filling at once.
        pool.fill(|| true);
        assert!(pool.take().is_none());
        assert!(NetnsPool::new(0).is_none());
    }
}
