//! ExecContainer with the caller's own stdio fds (stdin_fd, stdout_fd,
//! stderr_fd: no relay through the monitor, stdout and stderr apart) and
//! KillExec, against berthd in a box. busctl cannot pass fds, so these are
//! probed from Rust.

mod common;
#[allow(unused_imports)]
use common::*;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use serde_json::json;
use zbus::zvariant::{Fd, OwnedObjectPath, Value};

fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (r.into(), w.into())
}

fn fd_value(f: &std::fs::File) -> Value<'static> {
    let owned: OwnedFd = f.try_clone().unwrap().into();
    Value::from(Fd::from(owned))
}

fn process(script: &str) -> String {
    json!({
        "args": ["sh", "-c", script],
        "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"],
    })
    .to_string()
}

#[test]
fn exec_with_the_callers_stdio_and_kill_exec() {
    let Some(b) = berth_box::up_or_skip("exec_with_the_callers_stdio_and_kill_exec") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-execfd", &["sleep", "300"]);
    let path: OwnedObjectPath =
        call(&c, "CreateContainer", &("f1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("f1",)).unwrap();

    // stdin read, stdout and stderr apart, and the shell's fds: 0-2 only.
    let (in_r, mut in_w) = pipe();
    let (mut out_r, out_w) = pipe();
    let (mut err_r, err_w) = pipe();
    let mut opts = no_options();
    opts.insert("stdin_fd".into(), fd_value(&in_r));
    opts.insert("stdout_fd".into(), fd_value(&out_w));
    opts.insert("stderr_fd".into(), fd_value(&err_w));
    let script = "read line; echo out:$line; echo err:$line >&2; ls /proc/$$/fd; exit 3";
    let exec_id: String =
        call(&c, "ExecContainer", &("f1", process(script).as_str(), opts)).unwrap();
    drop((in_r, out_w, err_w));
    in_w.write_all(b"hello\n").unwrap();
    drop(in_w);
    // EOF only once every copy of the write ends is gone: none kept by
    // berthd, the shim or its monitor.
    let (mut out, mut err) = (String::new(), String::new());
    out_r.read_to_string(&mut out).unwrap();
    err_r.read_to_string(&mut err).unwrap();
    let fds: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(out.lines().next(), Some("out:hello"), "{out}");
    assert_eq!(fds, ["0", "1", "2"], "the process's fds: {out}");
    assert_eq!(err, "err:hello\n");
    let (code, signal): (i32, i32) = call(&c, "WaitExec", &("f1", exec_id.as_str())).unwrap();
    assert_eq!((code, signal), (3, 0));
    // Nothing of it went to the journal (the streams were the caller's).
    let logs = b.sh_ok("journalctl --sync; journalctl -o cat CONTAINER_NAME=f1");
    assert!(!logs.contains("out:hello"), "{logs}");

    // KillExec: one exec's process, by signal; then FailedPrecondition.
    let (mut out_r, out_w) = pipe();
    let mut opts = no_options();
    opts.insert("stdout_fd".into(), fd_value(&out_w));
    opts.insert("id".into(), Value::from("sleeper"));
    let script = "echo started; exec sleep 300";
    let _: String = call(&c, "ExecContainer", &("f1", process(script).as_str(), opts)).unwrap();
    drop(out_w);
    let mut line = [0u8; 8];
    out_r.read_exact(&mut line).unwrap();
    let m = manager(&c);
    m.kill_exec("f1", "sleeper", 15).unwrap();
    assert_eq!(m.wait_exec("f1", "sleeper").unwrap(), (143, 15));
    let again = error_name(m.kill_exec("f1", "sleeper", 9).unwrap_err());
    assert!(
        again.starts_with("io.berth.Berth1.Error.FailedPrecondition"),
        "{again}"
    );
    let obj = container_object(&c, &path);
    let e = error_name(obj.kill_exec("nope", 9).unwrap_err());
    assert!(e.starts_with("io.berth.Berth1.Error.NotFound"), "{e}");
    let e = error_name(obj.kill_exec("sleeper", 0).unwrap_err());
    assert!(
        e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
        "{e}"
    );
    // The container itself is untouched.
    let status: String = b.sh_ok("systemctl is-active berth-f1.scope");
    assert_eq!(status.trim(), "active");

    // Refused by name: with attach/stdin, and for a terminal process.
    let (_r, w) = pipe();
    for (extra, terminal) in [("attach", false), ("stdin", false), ("", true)] {
        let mut opts = no_options();
        opts.insert("stdout_fd".into(), fd_value(&w));
        if !extra.is_empty() {
            opts.insert(extra.into(), Value::from(true));
        }
        let mut p: serde_json::Value = serde_json::from_str(&process("true")).unwrap();
        p["terminal"] = json!(terminal);
        let e = error_name(
            call::<String>(&c, "ExecContainer", &("f1", p.to_string().as_str(), opts)).unwrap_err(),
        );
        assert!(
            e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
            "{extra} terminal={terminal}: {e}"
        );
    }
    let mut opts = no_options();
    opts.insert("stdout_fd".into(), Value::from("not an fd"));
    let e = error_name(
        call::<String>(&c, "ExecContainer", &("f1", process("true").as_str(), opts)).unwrap_err(),
    );
    assert!(
        e.starts_with("io.berth.Berth1.Error.InvalidArgument"),
        "{e}"
    );
    let () = call(&c, "DeleteContainer", &("f1", true)).unwrap();
}
