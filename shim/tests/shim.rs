//! berth-shim against real processes, a real journald and real systemd scopes,
//! inside a box: exit records, detaching from the starter, reaping, logs.

use std::time::{Duration, Instant};

use berth_box::bundle::Bundle;
use berth_box::SystemdBox;
use serde_json::{json, Value};

const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");

fn busybox_bundle(name: &str, args: &[&str]) -> Bundle {
    let mut config = serde_json::to_value(berth_init::spec::default_spec(false)).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(args);
    Bundle::create(name, config)
}

/// Drops the pid namespace: the container's orphans then go to the shim.
fn without_pid_ns(b: &mut Bundle) {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    b.save();
}

/// Waits (bounded) for a JSON record the shim writes, and parses it.
fn wait_json(b: &SystemdBox, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(out) = b.sh(&format!("cat {path}")) {
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no record at {path}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Shim<'a> {
    b: &'a SystemdBox,
    root: String,
    id: String,
    init: i64,
    pid: i64,
}

fn start_shim<'a>(b: &'a SystemdBox, id: &str, bundle: &Bundle, extra: &[&str]) -> Shim<'a> {
    let root = format!("/run/berth-shim-test-{}", std::process::id());
    let mut argv = vec![
        SHIM,
        "--root",
        &root,
        "--id",
        id,
        "--bundle",
        bundle.path(),
        "--systemd-cgroup",
    ];
    argv.extend_from_slice(extra);
    let out = b.exec(&argv).unwrap();
    assert!(out.status.success(), "shim: {:?}", out);
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("report: {line:?}"));
    assert!(v.get("error").is_none(), "shim reported {v}");
    Shim {
        b,
        root,
        id: id.into(),
        init: v["init_pid"].as_i64().unwrap(),
        pid: v["shim_pid"].as_i64().unwrap(),
    }
}

impl Shim<'_> {
    fn start(&self) {
        let dir = std::path::Path::new(&self.root);
        // berth-runtime is another package: start through the library's
        // protocol by hand — open the FIFO, read the byte, wait for EOF.
        self.b.sh_ok(&format!(
            "cat {}/{}/exec.fifo >/dev/null",
            dir.display(),
            self.id
        ));
    }

    fn exit_record(&self) -> Value {
        wait_json(self.b, &format!("{}/{}/exit.json", self.root, self.id))
    }

    fn alive(&self, pid: i64) -> bool {
        self.b
            .sh(&format!(
                "test -d /proc/{pid} && ! grep -q '^State:.Z' /proc/{pid}/status"
            ))
            .unwrap()
            .status
            .success()
    }

    fn wait_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.alive(self.pid) {
            assert!(Instant::now() < deadline, "shim {} never exited", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cleanup(&self) {
        self.b.sh_ok(&format!("rm -rf {}/{}", self.root, self.id));
    }
}

#[test]
fn exit_codes_and_signals_are_recorded() {
    let Some(b) = berth_box::up_or_skip("exit_codes_and_signals_are_recorded") else {
        return;
    };
    for (i, (script, code, signal)) in [("exit 0", 0, 0), ("exit 1", 1, 0), ("exit 137", 137, 0)]
        .iter()
        .enumerate()
    {
        let bundle = busybox_bundle("exit", &["sh", "-c", script]);
        let s = start_shim(&b, &format!("x{i}"), &bundle, &[]);
        s.start();
        let rec = s.exit_record();
        assert_eq!(rec["exit_code"], *code, "{script}: {rec}");
        assert_eq!(rec["exit_signal"], *signal, "{script}: {rec}");
        assert_eq!(rec["pid"], s.init);
        s.wait_gone();
        s.cleanup();
    }
    // Deaths by signal, sent from outside: SIGKILL (container init), SIGTERM
    // (a process without its own pid namespace, so SIGTERM is not ignored).
    for (id, sig, pidns) in [("k9", 9, true), ("k15", 15, false)] {
        let mut bundle = busybox_bundle("sig", &["sleep", "300"]);
        if !pidns {
            without_pid_ns(&mut bundle);
        }
        let s = start_shim(&b, id, &bundle, &[]);
        s.start();
        b.sh_ok(&format!("kill -{sig} {}", s.init));
        let rec = s.exit_record();
        assert_eq!(rec["exit_signal"], sig, "{rec}");
        assert_eq!(rec["exit_code"], 128 + sig, "{rec}");
        s.cleanup();
    }
    // Never started, then killed: the shim records it and exits too.
    let bundle = busybox_bundle("never", &["true"]);
    let s = start_shim(&b, "never", &bundle, &[]);
    b.sh_ok(&format!("kill -9 {}", s.init));
    assert_eq!(s.exit_record()["exit_signal"], 9);
    s.wait_gone();
    s.cleanup();
}

#[test]
fn the_shim_outlives_its_starter_and_the_container_outlives_the_shim() {
    let Some(b) = berth_box::up_or_skip("shim_outlives_starter") else {
        return;
    };
    let bundle = busybox_bundle("starter", &["sleep", "300"]);
    // The starter: a shell that runs the shim, then lingers; SIGKILLed right
    // after create. The shim is in its own scope, not the starter's cgroup.
    let root = format!("/run/berth-shim-test-{}", std::process::id());
    let starter = b.sh_ok(&format!(
        "setsid sh -c '{SHIM} --root {root} --id st1 --bundle {} --systemd-cgroup --shim-scope \
         > /tmp/st1.report; exec sleep 300' </dev/null >/dev/null 2>&1 & echo $!",
        bundle.path()
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let r = b.sh_ok("cat /tmp/st1.report 2>/dev/null || true");
        if r.contains("init_pid") {
            break r;
        }
        assert!(Instant::now() < deadline, "no report: {r}");
        std::thread::sleep(Duration::from_millis(20));
    };
    b.sh_ok(&format!("kill -9 {}", starter.trim()));
    let v: Value = serde_json::from_str(report.trim()).unwrap();
    let s = Shim {
        b: &b,
        root,
        id: "st1".into(),
        init: v["init_pid"].as_i64().unwrap(),
        pid: v["shim_pid"].as_i64().unwrap(),
    };
    let ppid = b.sh_ok(&format!(
        "awk '/^PPid/ {{print $2}}' /proc/{}/status",
        s.pid
    ));
    assert_ne!(
        ppid.trim(),
        starter.trim(),
        "the shim is not its starter's child"
    );
    assert_eq!(
        b.sh_ok(&format!("cat /proc/{}/cgroup | tail -n1", s.pid))
            .trim(),
        "0::/berth.slice/berth-shim-st1.scope"
    );
    assert!(s.alive(s.pid) && s.alive(s.init));
    s.start();
    assert!(s.alive(s.init), "the container runs after start");
    // Decision (docs/shim.md): a SIGKILLed shim does not take the container
    // with it; berthd sees the shim gone and marks the container.
    b.sh_ok(&format!("kill -9 {}", s.pid));
    s.wait_gone();
    assert!(s.alive(s.init), "container died with its shim");
    b.sh_ok(&format!("kill -9 {}", s.init));
    b.sh_ok("systemctl stop berth-st1.scope berth-shim-st1.scope 2>/dev/null || true");
    s.cleanup();
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    let Some(b) = berth_box::up_or_skip("orphaned_grandchildren_are_reaped") else {
        return;
    };
    // Without a pid namespace, the subshell's background sleep is orphaned and
    // re-parented to the shim (its subreaper), which must reap it.
    let mut bundle = busybox_bundle("zombie", &["sh", "-c", "(exec sleep 2 &); sleep 6"]);
    without_pid_ns(&mut bundle);
    let s = start_shim(&b, "z1", &bundle, &[]);
    s.start();
    // Polled, not slept: under load the orphan may take a while to appear.
    // `pid ppid state` of the `sleep 2`, found by its exact command line.
    let find = "for p in /proc/[0-9]*; do \\
         [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep 2 ' ] && \\
         awk '/^State:/ {s=$2} /^PPid:/ {pp=$2} END {print pp, s}' $p/status 2>/dev/null | sed \"s|^|${p#/proc/} |\"; \\
         done; true";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    // …is re-parented to the shim (its subreaper) once the subshell is gone…
    let orphan = loop {
        seen = b.sh_ok(find).lines().next().unwrap_or(&seen).to_owned();
        let fields: Vec<String> = seen.split_whitespace().map(str::to_owned).collect();
        if fields.get(1) == Some(&s.pid.to_string()) {
            break fields;
        }
        assert!(
            Instant::now() < deadline,
            "orphan not adopted by the shim {}: last seen `pid ppid state` {seen:?}",
            s.pid
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // …which reaps it when it exits: a zombie left unreaped keeps its /proc
    // entry for good.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = b.sh_ok(&format!(
            "awk '/^State:/ {{print $2}}' /proc/{}/status 2>/dev/null; true",
            orphan[0]
        ));
        if state.trim().is_empty() {
            // Gone while the shim still runs: the shim reaped it (a zombie
            // of a dead shim would be reaped by pid 1 instead).
            assert!(
                s.alive(s.pid) && s.alive(s.init),
                "the orphan went only with the shim"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphan {} not reaped by the shim (state {})",
            orphan[0],
            state.trim()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.exit_record()["exit_code"], 0);
    s.cleanup();
}

fn journal(b: &SystemdBox, filter: &str, format: &str) -> String {
    b.sh_ok(&format!(
        "journalctl --sync; journalctl --no-pager -o {format} {filter}"
    ))
}

#[test]
fn output_reaches_journald_with_the_container_fields() {
    let Some(b) = berth_box::up_or_skip("output_reaches_journald") else {
        return;
    };
    let bundle = busybox_bundle(
        "logs",
        &[
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; printf 'no newline'",
        ],
    );
    let s = start_shim(&b, "l1", &bundle, &["--name", "web"]);
    s.start();
    s.exit_record();
    s.wait_gone();
    let out = journal(&b, "CONTAINER_NAME=web", "json");
    let entries: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |msg: &str| {
        entries
            .iter()
            .find(|e| e["MESSAGE"] == msg)
            .unwrap_or_else(|| panic!("{msg} not in journal: {out}"))
    };
    let o = find("to-stdout");
    assert_eq!(o["PRIORITY"], "6");
    assert_eq!(o["CONTAINER_ID"], "l1");
    assert_eq!(o["SYSLOG_IDENTIFIER"], "web");
    assert_eq!(find("to-stderr")["PRIORITY"], "3");
    find("no newline");
    s.cleanup();
}

#[test]
fn ten_megabytes_of_output_without_loss() {
    let Some(b) = berth_box::up_or_skip("ten_megabytes_of_output") else {
        return;
    };
    // 2560 lines of 4 KiB: 10 MiB, few enough entries for journald's default
    // rate limit (10000 per 30 s), so any loss would be ours.
    let script = "yes $(head -c 4095 /dev/zero | tr '\\0' x) | head -n 2560";
    let bundle = busybox_bundle("big", &["sh", "-c", script]);
    let s = start_shim(&b, "big1", &bundle, &["--name", "big"]);
    let t = Instant::now();
    s.start();
    assert_eq!(s.exit_record()["exit_code"], 0);
    eprintln!("10 MiB through the shim in {} ms", t.elapsed().as_millis());
    let counts = b.sh_ok(
        "journalctl --sync; journalctl --no-pager -o cat CONTAINER_NAME=big PRIORITY=6 \
         | awk '{n++; b+=length($0)} END {print n, b}'",
    );
    // stdout only (`yes` may complain on stderr when head closes the pipe);
    // 2560 lines of 4095 bytes + newline.
    assert_eq!(counts.trim(), "2560 10483200");
    s.cleanup();
}

#[test]
fn a_terminal_container_gets_a_pty() {
    let Some(b) = berth_box::up_or_skip("a_terminal_container_gets_a_pty") else {
        return;
    };
    let mut bundle = busybox_bundle(
        "pty",
        &["sh", "-c", "tty; test -t 1 && echo stdout-is-a-tty"],
    );
    bundle.config["process"]["terminal"] = json!(true);
    bundle.save();
    let s = start_shim(&b, "p1", &bundle, &["--name", "ptyc"]);
    s.start();
    s.exit_record();
    s.wait_gone();
    let out = journal(&b, "CONTAINER_NAME=ptyc", "cat");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("stdout-is-a-tty"), "{out}");
    s.cleanup();
}

#[test]
fn no_shim_fd_leaks_into_the_container() {
    let Some(b) = berth_box::up_or_skip("no_shim_fd_leaks_into_the_container") else {
        return;
    };
    let bundle = busybox_bundle("fds", &["sh", "-c", "cd /proc/self/fd && echo fds *"]);
    let s = start_shim(&b, "f1", &bundle, &["--name", "fdc"]);
    s.start();
    s.exit_record();
    let out = journal(&b, "CONTAINER_NAME=fdc", "cat");
    assert_eq!(
        out.trim(),
        "fds 0 1 2 3",
        "only stdio (and the dir being listed)"
    );
    s.cleanup();
}

#[test]
fn an_exec_gets_its_own_shim_and_exit_record() {
    let Some(b) = berth_box::up_or_skip("an_exec_gets_its_own_shim") else {
        return;
    };
    let bundle = busybox_bundle("execs", &["sleep", "300"]);
    let s = start_shim(&b, "ex1", &bundle, &["--name", "exc"]);
    s.start();
    let process = json!({
        "args": ["sh", "-c", "echo from-exec; echo exec-err >&2; exit 4"],
        "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"],
    });
    let pjson = bundle.dir.join("process.json");
    std::fs::write(&pjson, process.to_string()).unwrap();
    let out = b
        .exec(&[
            SHIM,
            "--root",
            &s.root,
            "--id",
            "ex1",
            "--exec-id",
            "e1",
            "--process",
            pjson.to_str().unwrap(),
            "--name",
            "exc",
        ])
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let exec_pid = report["init_pid"].as_i64().unwrap();
    assert_ne!(exec_pid, s.init);
    let rec = wait_json(&b, &format!("{}/ex1/exec-e1.exit.json", s.root));
    assert_eq!(rec["exit_code"], 4);
    assert_eq!(rec["pid"], exec_pid);
    assert!(
        s.alive(s.init),
        "the container runs on after its exec exited"
    );
    let logs = journal(&b, "CONTAINER_NAME=exc", "cat");
    assert!(
        logs.contains("from-exec") && logs.contains("exec-err"),
        "{logs}"
    );
    // A bad exec is refused by the shim's report, nothing started.
    std::fs::write(
        &pjson,
        json!({"args": ["/nope"], "cwd": "/", "user": {"uid": 0, "gid": 0}}).to_string(),
    )
    .unwrap();
    let bad = b
        .exec(&[
            SHIM,
            "--root",
            &s.root,
            "--id",
            "ex1",
            "--exec-id",
            "e2",
            "--process",
            pjson.to_str().unwrap(),
        ])
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("/nope"),
        "{bad:?}"
    );
    b.sh_ok(&format!("kill -9 {}", s.init));
    s.exit_record();
    s.cleanup();
}

/// Connects to a socket inside the box through its PID 1's root.
fn box_socket(b: &SystemdBox, path: &str) -> std::os::unix::net::UnixStream {
    let host = format!("/proc/{}/root{path}", b.init_pid());
    std::os::unix::net::UnixStream::connect(&host).unwrap_or_else(|e| panic!("{host}: {e}"))
}

/// Reads the attach stream until `want` came (10 s at most); what came.
fn read_until(sock: &mut std::os::unix::net::UnixStream, want: &str) -> String {
    use std::io::Read;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains(want) {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "attach closed before {want:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

#[test]
fn attach_streams_output_and_feeds_stdin() {
    use std::io::Write;
    let Some(b) = berth_box::up_or_skip("attach_streams_output_and_feeds_stdin") else {
        return;
    };
    let bundle = busybox_bundle(
        "attach",
        &["sh", "-c", "echo ready; read line; echo got:$line"],
    );
    let s = start_shim(&b, "a1", &bundle, &["--stdin", "--name", "att"]);
    let mut sock = box_socket(&b, &format!("{}/a1/attach.sock", s.root));
    // Attachable as soon as the shim reports; attach before start (as podman
    // does), so no output is missed.
    s.start();
    read_until(&mut sock, "ready");
    sock.write_all(b"ping\n").unwrap();
    read_until(&mut sock, "got:ping");
    assert_eq!(s.exit_record()["exit_code"], 0);
    // The same lines reached the journal too.
    assert!(journal(&b, "CONTAINER_NAME=att", "cat").contains("got:ping"));
    s.cleanup();
}

#[test]
fn a_half_close_ends_stdin_and_a_disconnect_does_not() {
    use std::io::{Read, Write};
    let Some(b) = berth_box::up_or_skip("a_half_close_ends_stdin") else {
        return;
    };
    let bundle = busybox_bundle("halfclose", &["sh", "-c", "echo ready; cat; echo eof"]);
    let s = start_shim(&b, "h1", &bundle, &["--stdin"]);
    let path = format!("{}/h1/attach.sock", s.root);
    let mut first = box_socket(&b, &path);
    s.start();
    read_until(&mut first, "ready");
    first.write_all(b"one\n").unwrap();
    // A client that goes away (detach, ^C) leaves the stdin open.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.alive(s.init), "a disconnect closed the container's stdin");
    let mut second = box_socket(&b, &path);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    second.write_all(b"two\n").unwrap();
    // End of input: the process reads EOF, and its output still comes here.
    second.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    second.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("two\neof"), "after the half-close: {rest:?}");
    assert_eq!(s.exit_record()["exit_code"], 0);
    s.cleanup();
}

#[test]
fn a_terminal_is_resized_through_ctl() {
    let Some(b) = berth_box::up_or_skip("a_terminal_is_resized_through_ctl") else {
        return;
    };
    let mut bundle = busybox_bundle("resize", &["sh", "-c", "stty size; sleep 1; stty size"]);
    bundle.config["process"]["terminal"] = json!(true);
    bundle.config["process"]["consoleSize"] = json!({"height": 24, "width": 80});
    bundle.save();
    let s = start_shim(&b, "rz1", &bundle, &["--name", "rsz"]);
    s.start();
    std::thread::sleep(Duration::from_millis(300));
    b.sh_ok(&format!("echo '1 40 120' > {}/rz1/ctl", s.root));
    s.exit_record();
    let out = journal(&b, "CONTAINER_NAME=rsz", "cat");
    let sizes: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(sizes, ["24 80", "40 120"], "{out}");
    s.cleanup();
}
