//! The store against a temporary directory: round trips, reopening, a full
//! map, and records as older berthd versions wrote them.

use super::*;
use std::os::unix::fs::MetadataExt;

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        // pid + test name is unique among concurrent runs; a stale leftover
        // from a killed run with a recycled pid is cleared first.
        let dir = std::env::temp_dir().join(format!("berth-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const MAP: usize = 1 << 20;

fn rec(id: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.to_owned(),
        bundle: format!("/srv/bundles/{id}"),
        status: Status::Creating,
        labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
        unit: format!("berth-{id}.scope"),
        shim_pid: 4242,
        created_at: 1_700_000_000_000_000,
        ..ContainerRecord::default()
    }
}

#[test]
fn store_round_trip() {
    let tmp = TempDir::new("round-trip");
    let store = Store::open(&tmp.db(), MAP).unwrap();
    assert_eq!(store.get("a").unwrap(), None);
    for id in ["b", "a", "c"] {
        store.insert_new_blocking(&rec(id)).unwrap();
    }
    assert_eq!(store.get("a").unwrap(), Some(rec("a")));
    let ids: Vec<String> = store.list().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["a", "b", "c"]);

    let updated = store
        .update_blocking("b", |r| {
            r.status = Status::Running;
            r.pid = 77;
            r.id = "changed".to_owned();
        })
        .unwrap();
    assert_eq!((updated.id.as_str(), updated.pid), ("b", 77));
    assert_eq!(store.get("b").unwrap(), Some(updated));
    assert_eq!(store.get("changed").unwrap(), None);

    let mut replaced = rec("c");
    replaced.exit_reason = "exited".to_owned();
    store.put_blocking(&replaced).unwrap(); // replaces
    store.put_blocking(&rec("d")).unwrap(); // inserts
    assert!(store.remove_blocking("a").unwrap());
    assert!(!store.remove_blocking("a").unwrap());
    let ids: Vec<String> = store.list().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["b", "c", "d"]);
    assert_eq!(store.get("c").unwrap(), Some(replaced));
}

#[test]
fn store_duplicate_insert_and_missing_update() {
    let tmp = TempDir::new("dup");
    let store = Store::open(&tmp.db(), MAP).unwrap();
    store.insert_new_blocking(&rec("x")).unwrap();
    let mut other = rec("x");
    other.bundle = "/elsewhere".to_owned();
    assert!(matches!(store.insert_new_blocking(&other), Err(StoreError::Exists(id)) if id == "x"));
    assert_eq!(store.get("x").unwrap(), Some(rec("x")));

    let missing = store.update_blocking("nope", |r| r.pid = 1);
    assert!(matches!(missing, Err(StoreError::NotFound(id)) if id == "nope"));
    assert_eq!(store.list().unwrap(), [rec("x")]);
}

#[test]
fn store_survives_reopen_in_private_files() {
    let tmp = TempDir::new("reopen");
    let dir = tmp.db();
    let store = Store::open(&dir, MAP).unwrap();
    store.insert_new_blocking(&rec("kept")).unwrap();
    let kept = store.update_blocking("kept", |r| r.pid = 9).unwrap();
    drop(store);

    let store = Store::open(&dir, MAP).unwrap();
    assert_eq!(store.list().unwrap(), [kept]);
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
    for name in ["data.mdb", "lock.mdb"] {
        let mode = fs::metadata(dir.join(name)).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

#[test]
fn store_map_full_is_clean() {
    let tmp = TempDir::new("full");
    let map = 1 << 20;
    let mut inserted = Vec::new();
    {
        let store = Store::open(&tmp.db(), map).unwrap();
        let err = loop {
            let mut r = rec(&format!("c{:05}", inserted.len()));
            // Records of a few pages and of part of one, in turn.
            for i in 0..(inserted.len() % 2) * 8 {
                r.labels.insert(format!("padding{i}"), "p".repeat(3000));
            }
            r.labels.insert("padding".to_owned(), "p".repeat(300));
            match store.insert_new_blocking(&r) {
                Ok(()) => inserted.push(r),
                Err(e) => break e,
            }
            assert!(inserted.len() < 10_000, "a 1 MiB map never filled");
        };
        assert!(
            matches!(err, StoreError::MapFull { map_size } if map_size == map),
            "{err}"
        );
        assert!(err.to_string().contains("the metadata store is full"));
        assert_eq!(store.list().unwrap(), inserted);
        // The room kept: every record can still change (start, exit, an
        // exec), one after the other.
        for r in &inserted {
            let id = r.id.clone();
            store
                .update_blocking(&id, |r| {
                    r.status = Status::Stopped;
                    r.exit_reason = "exited".into();
                })
                .unwrap_or_else(|e| panic!("updating {id} in a full store: {e}"));
        }
        inserted = store.list().unwrap();
        // Removing frees pages, so the store is usable again.
        assert!(store.remove_blocking(&inserted[0].id).unwrap());
        inserted.remove(0);
    }
    let store = Store::open(&tmp.db(), map).unwrap();
    assert_eq!(store.list().unwrap(), inserted);
}

/// Records as berthd wrote them when `status` was a string, before `image`
/// and `execs` existed (the first) and after (the second): the bytes go into
/// LMDB as they are, bypassing today's types, and today's store reads them.
#[test]
fn store_opens_records_of_the_old_format() {
    let tmp = TempDir::new("old-format");
    let old = [
        r#"{"id":"a","bundle":"/b/a","status":"stopped","labels":{"k":"v"},"unit":"berth-a.scope","pid":10,"pid_start":11,"shim_pid":12,"shim_start":13,"created_at":14,"started_at":15,"exited_at":16,"exit_code":137,"exit_signal":9,"exit_reason":"exited"}"#,
        r#"{"id":"b","bundle":"/b/b","status":"paused","labels":{},"unit":"berth-b.scope","pid":20,"pid_start":21,"shim_pid":22,"shim_start":23,"created_at":24,"started_at":25,"exited_at":0,"exit_code":0,"exit_signal":0,"exit_reason":"","image":"docker.io/library/alpine:latest","execs":{"e1":{"shim_pid":30,"shim_start":31,"started_at":32,"exited_at":33,"exit_code":4,"exit_signal":0}}}"#,
        r#"{"id":"c","bundle":"/b/c","status":"creating","labels":{},"unit":"berth-c.scope","pid":0,"pid_start":0,"shim_pid":0,"shim_start":0,"created_at":1,"started_at":0,"exited_at":0,"exit_code":0,"exit_signal":0,"exit_reason":""}"#,
        r#"{"id":"d","bundle":"/b/d","status":"created","labels":{},"unit":"berth-d.scope","pid":5,"pid_start":6,"shim_pid":7,"shim_start":8,"created_at":1,"started_at":0,"exited_at":0,"exit_code":0,"exit_signal":0,"exit_reason":""}"#,
        r#"{"id":"e","bundle":"/b/e","status":"running","labels":{},"unit":"berth-e.scope","pid":5,"pid_start":6,"shim_pid":7,"shim_start":8,"created_at":1,"started_at":2,"exited_at":0,"exit_code":0,"exit_signal":0,"exit_reason":""}"#,
    ];
    {
        fs::create_dir_all(tmp.db()).unwrap();
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP).max_dbs(MAX_DBS);
        // SAFETY: a fresh directory of this test's own, opened once here.
        let env = unsafe { options.open(tmp.db()) }.unwrap();
        let wtxn = env.write_txn().unwrap();
        let written = env.create_databases_and_commit(wtxn, |opener, wtxn| {
            let db: Database<Str, Str> = opener.create_database(wtxn, Some(CONTAINERS))?;
            for json in old {
                let id = &json[7..8];
                db.put(wtxn, id, json)?;
            }
            Ok::<_, heed::Error>(CommitOrAbort::<_, std::convert::Infallible>::Commit(()))
        });
        assert!(matches!(written, Ok(CommitOrAbort::Commit(()))));
    }
    let store = Store::open(&tmp.db(), MAP).unwrap();
    let statuses: Vec<Status> = store.list().unwrap().iter().map(|r| r.status).collect();
    use Status::*;
    assert_eq!(statuses, [Stopped, Paused, Creating, Created, Running]);
    let a = store.get("a").unwrap().unwrap();
    assert_eq!(
        (a.exit_code, a.exit_signal, a.exit_reason.as_str()),
        (137, 9, "exited")
    );
    assert_eq!((a.image.as_str(), store.execs("a").unwrap().len()), ("", 0));
    let b = store.get("b").unwrap().unwrap();
    // Its execs moved to their own database, out of the record.
    assert!(b.legacy_execs.is_empty());
    assert_eq!(store.exec("b", "e1").unwrap().unwrap().exit_code, 4);
    assert!(!serde_json::to_string(&b).unwrap().contains("\"execs\""));
    assert_eq!(b.image, "docker.io/library/alpine:latest");
    // Written back, a record keeps the format it was read in.
    store.update_blocking("a", |r| r.pid = 99).unwrap();
    let a = store.get("a").unwrap().unwrap();
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(v["status"], "stopped");
}

/// A write waiting for LMDB's one writer lock (held here by another thread,
/// as a slow commit would) waits on the blocking pool: the executor's only
/// thread goes on with other tasks meanwhile. Run inline, the write held
/// that thread (and every D-Bus call behind it) for the whole wait.
#[tokio::test(flavor = "current_thread")]
async fn a_write_waiting_for_the_writer_lock_leaves_the_executor_free() {
    use std::time::{Duration, Instant};
    const HELD: Duration = Duration::from_millis(300);
    let tmp = TempDir::new("writer-lock");
    let store = Store::open(&tmp.db(), MAP).unwrap();
    store.insert_new_blocking(&rec("a")).unwrap();
    let (held, is_held) = std::sync::mpsc::channel();
    let env = store.env.clone();
    // LMDB ties a write transaction to its thread: it begins and ends there.
    let holder = std::thread::spawn(move || {
        let wtxn = env.write_txn().unwrap();
        held.send(()).unwrap();
        std::thread::sleep(HELD);
        drop(wtxn);
    });
    is_held.recv().unwrap();
    let write = tokio::spawn({
        let store = store.clone();
        async move { store.update("a", |r| r.pid = 7).await }
    });
    let t = Instant::now();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ticked = t.elapsed();
    assert!(ticked < HELD / 2, "the executor was held {ticked:?}");
    assert_eq!(write.await.unwrap().unwrap().pid, 7);
    holder.join().unwrap();
}

#[tokio::test]
async fn add_exec_drops_the_oldest_finished_execs_and_names_them() {
    let tmp = TempDir::new("add-exec");
    let store = Store::open(&tmp.db(), MAP).unwrap();
    assert!(matches!(
        store.add_exec("nobody", "e", ExecRecord::default()).await,
        Err(StoreError::NotFound(_))
    ));
    for id in ["c", "c2"] {
        store.insert_new_blocking(&rec(id)).unwrap();
    }
    store
        .add_exec("c2", "other", ExecRecord::default())
        .await
        .unwrap();
    for i in 0..MAX_EXEC_RECORDS {
        let exited_at = if i < 2 { 0 } else { 1000 + i as u64 };
        let e = ExecRecord {
            exited_at,
            ..Default::default()
        };
        let dropped = store.add_exec("c", &format!("e{i}"), e).await.unwrap();
        assert!(dropped.is_empty());
    }
    assert_eq!(store.exec_count("c").unwrap(), MAX_EXEC_RECORDS);
    // Full: the oldest finished ones go, EXEC_ROOM of them (e2.., not e0
    // and e1: they still run), so the next EXEC_ROOM - 1 execs find room.
    let dropped = store.add_exec("c", "new", ExecRecord::default()).await;
    let want: Vec<String> = (2..2 + EXEC_ROOM).map(|i| format!("e{i}")).collect();
    assert_eq!(dropped.unwrap(), want);
    let execs = store.execs("c").unwrap();
    assert!(execs.contains_key("e0") && execs.contains_key("new") && !execs.contains_key("e2"));
    assert!(execs.contains_key(&format!("e{}", 2 + EXEC_ROOM)));
    assert_eq!(execs.len(), MAX_EXEC_RECORDS - EXEC_ROOM + 1);
    for i in 0..EXEC_ROOM - 1 {
        let exec_id = format!("n{i}");
        let dropped = store.add_exec("c", &exec_id, ExecRecord::default()).await;
        assert!(dropped.unwrap().is_empty());
    }
    assert_eq!(store.exec_count("c").unwrap(), MAX_EXEC_RECORDS);
    // A container's delete takes its execs along, and only its own.
    assert!(store.remove_blocking("c").unwrap());
    assert_eq!(store.exec_count("c").unwrap(), 0);
    assert_eq!(store.exec_count("c2").unwrap(), 1);
}
