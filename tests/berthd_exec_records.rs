//! Exec records against berthd in a box: execs nobody waited for
//! (`berthctl exec -d`) still end, and do not hold the container's exec
//! slots once they have; ExecContainerAndWait answers with the exit.

mod common;
#[allow(unused_imports)]
use common::*;

use serde_json::json;

#[test]
fn execs_nobody_waited_for_do_not_fill_the_container() {
    let Some(b) = berth_box::up_or_skip("execs_nobody_waited_for_do_not_fill_the_container") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-execrec", &["sleep", "300"]);
    let _: zbus::zvariant::OwnedObjectPath =
        call(&c, "CreateContainer", &("r1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("r1",)).unwrap();
    let process = json!({"args": ["true"], "cwd": "/", "env": ["PATH=/bin"]}).to_string();
    // As many as the store keeps records of, none waited for.
    const MAX: usize = 128;
    for _ in 0..MAX {
        let _: String = call(&c, "ExecContainer", &("r1", process.as_str(), no_options())).unwrap();
    }
    b.sh_ok(&format!(
        "for i in $(seq 600); do [ $(ls /run/berth/r1/ | grep -c '^exec-.*\\.exit\\.json$') -ge {MAX} ] && exit 0; \
         sleep 0.05; done; exit 1"
    ));
    // They have all ended: the next exec runs (it was refused as one too
    // many while their records still said running).
    let exec_id: String =
        call(&c, "ExecContainer", &("r1", process.as_str(), no_options())).unwrap();
    assert_eq!(manager(&c).wait_exec("r1", &exec_id).unwrap(), (0, 0));
    // The records that made room (EXEC_ROOM of them at once, the oldest
    // finished) took their execs' files along: as many process files as
    // records, not one more per exec ever run.
    const ROOM: usize = 32;
    let kept = b.sh_ok("ls /run/berth/r1/ | grep -c '^exec-.*\\.process\\.json$'");
    assert_eq!(kept.trim(), (MAX - ROOM + 1).to_string(), "exec files kept");
    let () = call(&c, "DeleteContainer", &("r1", true)).unwrap();
}

#[test]
fn exec_and_wait_answers_with_the_exit() {
    let Some(b) = berth_box::up_or_skip("exec_and_wait_answers_with_the_exit") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-execwait", &["sleep", "300"]);
    let path: zbus::zvariant::OwnedObjectPath =
        call(&c, "CreateContainer", &("w1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("w1",)).unwrap();
    let process =
        |script: &str| json!({"args": ["sh", "-c", script], "env": ["PATH=/bin"]}).to_string();
    let with_id = |id: &str| {
        let mut o = no_options();
        o.insert("id".into(), zbus::zvariant::Value::from(id.to_string()));
        o
    };
    let m = manager(&c);
    // Over before its report (the exit record there at once), by a
    // signal, and after a while (the shim waited for): each answered with
    // its own end, under the id asked for.
    let got: (String, i32, i32) = call(
        &c,
        "ExecContainerAndWait",
        &("w1", process("exit 7").as_str(), with_id("seven")),
    )
    .unwrap();
    assert_eq!(got, ("seven".to_string(), 7, 0));
    let got: (String, i32, i32) = call(
        &c,
        "ExecContainerAndWait",
        &("w1", process("kill -9 $$").as_str(), no_options()),
    )
    .unwrap();
    assert_eq!((got.1, got.2), (137, 9));
    let got: (String, i32, i32) = call(
        &c,
        "ExecContainerAndWait",
        &("w1", process("sleep 0.5; exit 3").as_str(), no_options()),
    )
    .unwrap();
    assert_eq!((got.1, got.2), (3, 0));
    // The same exec for WaitExec afterwards, and through the container's object.
    assert_eq!(m.wait_exec("w1", "seven").unwrap(), (7, 0));
    let obj = container_object(&c, &path);
    let (_, code, _) = obj
        .exec_and_wait(&process("exit 4"), std::collections::HashMap::new())
        .unwrap();
    assert_eq!(code, 4);

    // Nobody could attach while the caller waits: refused, nothing made.
    let execs = || b.sh_ok("ls /run/berth/w1/ | grep -c '^exec-.*process.json$' || true");
    let before = execs();
    let mut attach = with_id("attached");
    attach.insert("attach".into(), zbus::zvariant::Value::from(true));
    let e = call::<(String, i32, i32)>(
        &c,
        "ExecContainerAndWait",
        &("w1", process("true").as_str(), attach),
    )
    .unwrap_err();
    assert!(error_name(e).contains("InvalidArgument"));
    // A command that cannot start is an error, not an exit code.
    let missing = json!({"args": ["/no/such/binary"]}).to_string();
    let e = call::<(String, i32, i32)>(
        &c,
        "ExecContainerAndWait",
        &("w1", missing.as_str(), no_options()),
    )
    .unwrap_err();
    assert!(error_name(e).contains("/no/such/binary"));
    assert_eq!(execs(), before, "a refused exec left its process file");
    let () = call(&c, "DeleteContainer", &("w1", true)).unwrap();
}
