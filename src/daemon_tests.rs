//! Daemon verbs that need no systemd: waiting, and the checks made before a
//! caller's ids reach a path. A store in a temporary directory, no shim.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;

/// A Daemon over a fresh store under the temp dir, removed on drop.
struct Fixture {
    root: PathBuf,
    daemon: Arc<Daemon>,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let root = std::env::temp_dir().join(format!("berthd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = Store::open(&root.join("db"), 1 << 20).unwrap();
        let daemon = Daemon::new(
            store,
            root.join("run"),
            PathBuf::from("/nonexistent/berth-shim"),
            root.join("bundles"),
            None,
            crate::network::Networks::new(crate::network::NetPaths::new(
                &root.join("networks"),
                &root,
                &root.join("run"),
            )),
        );
        Fixture { root, daemon }
    }

    /// A container record in state `status`, with its state directory.
    fn container(&self, id: &str, status: Status) {
        let rec = ContainerRecord {
            id: id.into(),
            status,
            ..Default::default()
        };
        self.daemon.store.insert_new_blocking(&rec).unwrap();
        std::fs::create_dir_all(self.daemon.run_dir.join(id)).unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[tokio::test]
async fn waiting_on_unknown_ids_is_not_found_and_keeps_nothing() {
    let f = Fixture::new("wait-unknown");
    let long = "x".repeat(40_000);
    let hostile = ["", "..", "../x", long.as_str()];
    for i in 0..2000 {
        let id = format!("nope{i}");
        let id = hostile.get(i % 100).copied().unwrap_or(id.as_str());
        let r = f.daemon.wait(id).await;
        assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    }
    assert_eq!(f.daemon.exits.len(), 0, "a channel per unknown id was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_get_the_exit_and_leave_no_channel() {
    let f = Fixture::new("wait-exit");
    f.container("c1", Status::Running);
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let d = f.daemon.clone();
            tokio::spawn(async move { d.wait("c1").await })
        })
        .collect();
    // All subscribed (or the exit would be read from the record instead,
    // which is fine too, but not what this test is about).
    for _ in 0..1000 {
        if f.daemon.exits.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    f.daemon.record_exit("c1", 3, 0, "exited").await.unwrap();
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), (3, 0));
    }
    assert_eq!(f.daemon.exits.len(), 0);
    // Stopped: answered from the record, without a channel.
    assert_eq!(f.daemon.wait("c1").await.unwrap(), (3, 0));
    assert_eq!(f.daemon.exits.len(), 0);
}

#[tokio::test]
async fn wait_exec_refuses_exec_ids_that_are_no_ids() {
    let f = Fixture::new("wait-exec");
    f.container("p1", Status::Running);
    for bad in ["../x", "../../p1/exec-e1", "a/b", ".."] {
        let r = f.daemon.wait_exec("p1", bad).await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{bad}: {r:?}");
    }
    let r = f.daemon.wait_exec("p1", "e1").await;
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
}

#[test]
fn one_exec_id_is_claimed_once_even_by_concurrent_execs() {
    let f = Fixture::new("exec-claim");
    f.container("p1", Status::Running);
    // A race is lost only now and then: run it many times.
    for round in 0..50 {
        let exec_id = format!("e{round}");
        let barrier = std::sync::Barrier::new(8);
        let wins = std::thread::scope(|s| {
            let tries: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        f.daemon.claim_exec_id("p1", Some(&exec_id), b"{}")
                    })
                })
                .collect();
            tries
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|r| match r {
                    Ok(_) => true,
                    Err(Error::AlreadyExists(_)) => false,
                    Err(e) => panic!("{e:?}"),
                })
                .count()
        });
        assert_eq!(wins, 1, "exec {exec_id} was claimed {wins} times");
    }
    let again = f.daemon.claim_exec_id("p1", Some("e1"), b"{}");
    assert!(matches!(again, Err(Error::AlreadyExists(_))), "{again:?}");
    let bad = f.daemon.claim_exec_id("p1", Some("../e2"), b"{}");
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
}

#[test]
fn generated_exec_ids_do_not_collide() {
    let f = Fixture::new("exec-ids");
    f.container("p1", Status::Running);
    let ids = std::thread::scope(|s| {
        let makers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..250)
                        .map(|_| f.daemon.claim_exec_id("p1", None, b"{}").unwrap().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        makers
            .into_iter()
            .flat_map(|m| m.join().unwrap())
            .collect::<std::collections::HashSet<_>>()
    });
    assert_eq!(ids.len(), 1000);
}

/// A gone shim's exit.json that is not an exit record is recorded as such,
/// with why: never as an exit of 0.
#[test]
fn a_malformed_exit_record_is_a_recorded_reason_not_0() {
    let f = Fixture::new("bad-exit");
    f.container("c1", Status::Running);
    let dir = f.daemon.run_dir.join("c1");
    let ending = || crate::shims::read_exit(&f.daemon.run_dir, "c1");
    assert_eq!(ending(), (-1, 0, crate::shims::SHIM_DIED.to_string()));
    for bad in [
        "",
        "{\"exit_code\":0",
        r#"{"exit_code":"0","exit_signal":0}"#,
    ] {
        std::fs::write(dir.join("exit.json"), bad).unwrap();
        let (code, signal, reason) = ending();
        assert_eq!((code, signal), (-1, 0), "{bad:?}");
        assert!(reason.starts_with("shim died: "), "{reason}");
        assert!(reason.contains("exit.json is malformed"), "{reason}");
    }
    let good = r#"{"exit_code":137,"exit_signal":9,"exited_at_us":1,"pid":7}"#;
    std::fs::write(dir.join("exit.json"), good).unwrap();
    assert_eq!(ending(), (137, 9, crate::shims::EXITED.to_string()));
}

#[tokio::test]
async fn wait_exec_names_a_malformed_shim_record() {
    let f = Fixture::new("bad-exec-shim");
    f.container("p1", Status::Running);
    let shim = f.daemon.run_dir.join("p1").join("exec-e1.shim.json");
    std::fs::write(&shim, r#"{"pid":12}"#).unwrap();
    let r = f.daemon.wait_exec("p1", "e1").await;
    let Err(Error::Internal(msg)) = r else {
        panic!("{r:?}")
    };
    assert!(msg.contains("exec-e1.shim.json is malformed"), "{msg}");
}

/// After the shim failed: the record and the rewritten bundle go, and
/// undoing again finds nothing to do (crate::rollback).
#[tokio::test]
async fn a_failed_create_leaves_no_record_and_no_bundle() {
    use crate::rollback::{undo_create, Made};
    let f = Fixture::new("undo");
    f.container("c1", Status::Creating);
    let bundles = f.root.join("bundles");
    std::fs::create_dir_all(bundles.join("c1")).unwrap();
    std::fs::write(bundles.join("c1/config.json"), b"{}").unwrap();
    std::fs::create_dir_all(bundles.join("c2")).unwrap();
    for _ in 0..2 {
        undo_create(&f.daemon, "c1", false, Made::NoContainer).await;
        assert_eq!(f.daemon.store.get("c1").unwrap(), None);
        assert!(!bundles.join("c1").exists());
    }
    assert!(bundles.join("c2").exists(), "another container's bundle");
}
