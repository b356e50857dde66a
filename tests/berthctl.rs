//! berthctl against a real berthd (a Type=notify systemd service on the box's
//! system bus), used as a person would from a shell; and berth@.service
//! running a container described in /etc/berth/containers/NAME.toml.

mod common;
#[allow(unused_imports)]
use common::*;

use berth_box::bundle::Bundle;
use berth_box::SystemdBox;
use serde_json::json;

fn status(b: &SystemdBox, id: &str) -> String {
    let out = ctl_ok(b, &format!("inspect {id}"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Status"].as_str().unwrap().to_string()
}

#[test]
fn run_exec_logs_and_the_everyday_verbs() {
    let Some(b) = berth_box::up_or_skip("berthctl_everyday") else {
        return;
    };
    install_berthd(&b, "");
    let bundle = busybox_bundle("ctl-every", &["sh", "-c", "echo from-bundle"]);
    let bp = bundle.path();

    // run: output, exit code, --rm, a command override and -e.
    let (code, out, err) = ctl(&b, &format!("run --rm --bundle {bp} echo hi"));
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    let (code, _, _) = ctl(&b, &format!("run --rm --bundle {bp} sh -c 'exit 3'"));
    assert_eq!(code, 3);
    // A program the container lacks: podman's 127, and the message says why.
    let (code, _, err) = ctl(&b, &format!("run --rm --bundle {bp} no-such-program"));
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    let out = ctl_ok(
        &b,
        &format!("run --rm --bundle {bp} -e GREETING=hey sh -c 'echo $GREETING'"),
    );
    assert_eq!(out, "hey\n");
    // berthd runs with UMask=0077; a container gets 0022 unless its spec says.
    assert_eq!(
        ctl_ok(&b, &format!("run --rm --bundle {bp} sh -c umask")),
        "0022\n"
    );
    // A terminal: the process sees a pty.
    let out = ctl_ok(&b, &format!("run --rm -t --bundle {bp} tty"));
    assert!(out.trim_end().starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(
        ctl_ok(&b, "ps -a --json").trim(),
        "[]",
        "--rm left something"
    );

    // Detached, then ps / inspect / exec / logs / stats / pause / stop / rm.
    let out = ctl_ok(
        &b,
        &format!(
            "run -d --name web --label app=demo -e FOO=bar --bundle {bp} \
             sh -c 'echo one; echo two; exec sleep 300'"
        ),
    );
    assert_eq!(out.trim(), "web");
    let ps = ctl_ok(&b, "ps");
    assert!(
        ps.lines()
            .any(|l| l.starts_with("web ") && l.contains(" Up ")),
        "{ps}"
    );
    let v: serde_json::Value = serde_json::from_str(&ctl_ok(&b, "inspect web")).unwrap();
    assert_eq!(v[0]["Labels"]["app"], "demo");
    assert!(v[0]["Pid"].as_u64().unwrap() > 0);
    assert_eq!(v[0]["Unit"], "berth-web.scope");
    // exec inherits the container's env; its exit code is ours.
    let (code, out, err) = ctl(&b, "exec web sh -c 'echo $FOO; exit 4'");
    assert_eq!((code, out.as_str()), (4, "bar\n"), "{err}");
    let (code, _, err) = ctl(&b, "exec web /bin/nope");
    assert_eq!(code, 127, "{err}");
    let out = ctl_ok(&b, "exec web sh -c 'echo out; echo err >&2'");
    assert!(out.contains("out") && out.contains("err"), "{out}");
    let out = b.sh_ok(&format!("echo typed | {} exec -i web head -n1", berthctl()));
    assert_eq!(out, "typed\n");
    // The end of piped input reaches the process (a half-close of the
    // attach stream): what reads to EOF finishes, its output still comes.
    let out = b.sh_ok(&format!(
        "printf 'a\\nb\\n' | timeout 20 {} exec -i web sh -c 'while read l; do echo \"<$l>\"; done; echo end'",
        berthctl()
    ));
    assert_eq!(out, "<a>\n<b>\nend\n");
    let out = b.sh_ok(&format!(
        "printf 'x\\ny\\n' | timeout 20 {} run --rm -i --bundle {bp} sh -c 'cat; echo end'",
        berthctl()
    ));
    assert_eq!(out, "x\ny\nend\n");

    // -it under a real terminal (script(1) gives berthctl a pty): raw mode,
    // the size passed on, input typed into the container's terminal.
    let out = b.sh_ok(&format!(
        "printf 'echo typed-$((6*7))\\nexit 5\\n' | script -qec \
         'stty rows 40 cols 100; {} exec -it web sh -c \"stty size; exec sh\"; echo rc=$?' /dev/null",
        berthctl()
    ));
    assert!(out.contains("40 100"), "{out:?}");
    assert!(out.contains("typed-42"), "{out:?}");
    assert!(out.contains("rc=5"), "{out:?}");

    b.sh_ok("journalctl --sync");
    let logs = ctl_ok(&b, "logs web");
    assert_eq!(logs, "one\ntwo\n");
    assert_eq!(ctl_ok(&b, "logs --tail 1 web"), "two\n");
    // -f follows new output and ends (by itself) once the container stops.
    ctl_ok(
        &b,
        &format!("run -d --name follow --bundle {bp} sh -c 'echo a; sleep 1.5; echo b'"),
    );
    let t0 = std::time::Instant::now();
    let followed = b.sh_ok(&format!("timeout 20 {} logs -f follow", berthctl()));
    assert_eq!(followed, "a\nb\n");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    ctl_ok(&b, "rm follow");
    // A follower whose reader goes away (web runs on) is ended by berthd:
    // no journalctl stays behind.
    let _ = b.sh(&format!("timeout 1 {} logs -f web", berthctl()));
    let mut left = String::new();
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = b.sh_ok("pgrep -x journalctl || true");
        if left.trim().is_empty() {
            break;
        }
    }
    assert!(left.trim().is_empty(), "journalctl left running: {left}");
    let journal = b.sh_ok("journalctl -o cat CONTAINER_NAME=web");
    assert!(journal.contains("one"), "{journal}");

    let stats = ctl_ok(&b, "stats --no-stream --format json web");
    let s: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(s[0]["Name"], "web", "{stats}");
    ctl_ok(&b, "pause web");
    assert_eq!(status(&b, "web"), "paused");
    ctl_ok(&b, "unpause web");
    assert_eq!(status(&b, "web"), "running");

    // events: a follower sees what happens after it starts.
    b.sh_ok(&format!(
        "systemd-run --unit=ctl-events -p StandardOutput=file:/tmp/events {} events",
        berthctl()
    ));
    std::thread::sleep(std::time::Duration::from_millis(500));

    // rm refuses a running container; stop ends it: the init (pid 1 of its
    // namespace, no handler) ignores SIGTERM, so SIGKILL after -t.
    let (code, _, err) = ctl(&b, "rm web");
    assert_eq!(code, 125);
    assert!(err.contains("FailedPrecondition"), "{err}");
    ctl_ok(&b, "stop -t 1 web");
    assert_eq!(status(&b, "web"), "stopped");
    assert_eq!(ctl_ok(&b, "wait web").trim(), "137");
    ctl_ok(&b, "rm web");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let events = b.sh_ok("systemctl stop ctl-events; cat /tmp/events");
    let kinds: Vec<&str> = events
        .lines()
        .filter(|l| l.ends_with(" web") || l.contains(" web "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        kinds.ends_with(&["status", "exit", "remove"])
            || kinds.ends_with(&["exit", "status", "remove"]),
        "{events}"
    );

    // kill with a named signal; stop of a stopped container is fine.
    ctl_ok(
        &b,
        &format!(
            "run -d --name k1 --bundle {bp} sh -c 'trap \"exit 7\" TERM; while :; do sleep 0.1; done'"
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    ctl_ok(&b, "kill -s TERM k1");
    assert_eq!(ctl_ok(&b, "wait k1").trim(), "7");
    ctl_ok(&b, "stop k1");
    ctl_ok(&b, "rm k1");

    // Errors: one line, exit 125, nothing left behind.
    let (code, _, err) = ctl(&b, "rm nope");
    assert_eq!(code, 125);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("NotFound"), "{err}");
    let (code, _, err) = ctl(&b, "run docker.io/library/busybox");
    assert_eq!(code, 125);
    assert!(
        err.contains("no image") && err.contains("NotFound"),
        "{err}"
    );
    let (code, _, err) = ctl(&b, "run");
    assert_eq!(code, 125);
    assert!(err.contains("--bundle"), "{err}");
    let (code, _, err) = ctl(&b, "kill -s BOGUS web");
    assert_eq!(code, 125);
    assert!(err.contains("unknown signal"), "{err}");
    let (code, _, err) = ctl(&b, &format!("run --rm --name 'a/b' --bundle {bp} true"));
    assert_eq!(code, 125);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert_eq!(ctl_ok(&b, "ps -a --json").trim(), "[]");

    let version = ctl_ok(&b, "version");
    assert!(version.contains("berthd   0."), "{version}");
    let info: serde_json::Value = serde_json::from_str(&ctl_ok(&b, "info --json")).unwrap();
    assert_eq!(info["containers"], 0);
    assert_eq!(info["cgroup_driver"], "systemd");
    // Into a file: the script is near 64 KiB, more than the box's output
    // pipe holds while berth-box waits for the command to end.
    let completion = b.sh_ok(&format!(
        "{} completion bash > /tmp/c.bash && grep -c berthctl /tmp/c.bash",
        berthctl()
    ));
    assert!(
        completion.trim().parse::<u32>().unwrap() > 0,
        "{completion}"
    );
}

#[test]
fn berth_unit_runs_stops_and_restarts_a_container() {
    let Some(b) = berth_box::up_or_skip("berthctl_unit") else {
        return;
    };
    install_berthd(&b, "");
    let bundle = busybox_bundle("ctl-unit", &["sleep", "300"]);
    b.sh_ok(&format!(
        "mkdir -p /etc/berth/containers && cat > /etc/berth/containers/web.toml <<'EOF'\n\
         bundle = \"{}\"\n\
         command = [\"sh\", \"-c\", \"echo unit-started; exec sleep 300\"]\n\
         stop_timeout = 5\n\
         [labels]\n\
         app = \"web\"\n\
         EOF",
        bundle.path()
    ));
    b.sh_ok("systemctl start berth@web");
    assert_eq!(b.sh_ok("systemctl is-active berth@web").trim(), "active");
    assert_eq!(status(&b, "web"), "running");
    // The container's output is filed under the unit.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = b.sh_ok("journalctl --sync; journalctl -o cat -u berth@web");
        if logs.contains("unit-started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(logs.contains("unit-started"), "{logs}");

    b.sh_ok("systemctl stop berth@web");
    let state = b.sh("systemctl is-active berth@web").unwrap();
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "inactive");
    assert_eq!(ctl_ok(&b, "ps -a --json").trim(), "[]");
    assert_eq!(
        b.sh_ok("systemctl list-units --no-legend 'berth-web*' | wc -l")
            .trim(),
        "0"
    );

    // Restart=always brings a killed container back, as a new process.
    b.sh_ok(
        "mkdir -p /run/systemd/system/berth@web.service.d && \
         printf '[Service]\\nRestart=always\\nRestartSec=200ms\\n' > /run/systemd/system/berth@web.service.d/restart.conf && \
         systemctl daemon-reload && systemctl start berth@web",
    );
    // (pid, status); (0, "") while the unit is between two runs.
    let pid = |b: &SystemdBox| -> (u64, String) {
        let v: serde_json::Value =
            serde_json::from_str(&ctl(b, "inspect web").1).unwrap_or(json!([{}]));
        let status = v[0]["Status"].as_str().unwrap_or_default().to_string();
        (v[0]["Pid"].as_u64().unwrap_or(0), status)
    };
    let (first, _) = pid(&b);
    assert!(first > 0);
    ctl_ok(&b, "kill web");
    let mut second = 0;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (p, st) = pid(&b);
        if p != 0 && p != first && st == "running" {
            second = p;
            break;
        }
    }
    assert!(
        second != 0,
        "not restarted: {}",
        b.sh_ok("systemctl status berth@web || true")
    );
    assert!(
        b.sh_ok("systemctl show -P NRestarts berth@web")
            .trim()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    b.sh_ok("systemctl stop berth@web");
    assert_eq!(ctl_ok(&b, "ps -a --json").trim(), "[]");
    // A typo in the file is a clear failure of the unit, not a silent default.
    b.sh_ok("echo 'bundel = \"/x\"' > /etc/berth/containers/bad.toml");
    assert!(!b.sh("systemctl start berth@bad").unwrap().status.success());
    let log = b.sh_ok("journalctl -o cat -u berth@bad");
    assert!(log.contains("bundel"), "{log}");
}

#[test]
fn berth_unit_passes_the_containers_sd_notify_through() {
    let Some(b) = berth_box::up_or_skip("berthctl_notify") else {
        return;
    };
    install_berthd(&b, "");
    // The busybox rootfs has no sd_notify client: lend it the host's
    // systemd-notify (read-only /usr and its loader paths).
    let mut config = serde_json::to_value(berth_init::spec::default_spec(false)).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["true"]);
    let ro = json!(["rbind", "ro", "nosuid", "nodev"]);
    let mounts = config["mounts"].as_array_mut().unwrap();
    for (dst, src) in [
        ("/usr", "/usr"),
        ("/lib", "/usr/lib"),
        ("/lib64", "/usr/lib64"),
    ] {
        mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": ro}));
    }
    let bundle = Bundle::create("ctl-notify", config);
    b.sh_ok(&format!(
        "mkdir -p /etc/berth/containers && cat > /etc/berth/containers/late.toml <<'EOF'\n\
         bundle = \"{}\"\n\
         command = [\"sh\", \"-c\", \"sleep 2; /usr/bin/systemd-notify --ready --status=warmed-up; exec sleep 300\"]\n\
         notify = true\n\
         stop_timeout = 1\n\
         EOF",
        bundle.path()
    ));
    // Type=notify: `systemctl start` returns once the container said READY=1,
    // i.e. after its 2 s warm-up, not when berthctl started it.
    let t0 = std::time::Instant::now();
    b.sh_ok("systemctl start berth@late");
    let waited = t0.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1800),
        "ready after {waited:?}"
    );
    assert_eq!(
        b.sh_ok("systemctl show -P StatusText berth@late").trim(),
        "warmed-up"
    );
    assert_eq!(status(&b, "late"), "running");
    b.sh_ok("systemctl stop berth@late");
    assert_eq!(ctl_ok(&b, "ps -a --json").trim(), "[]");
}
