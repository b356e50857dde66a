//! Restart policies and health checks against a real berthd and systemd:
//! bad options refused with nothing left; `--restart always` brings back a
//! container killed behind berthd's back (RestartCount 1), also when berthd
//! was down at the exit, and leaves one stopped on purpose; `on-failure:1`
//! stops after one retry; a health check's transient timer makes the
//! container healthy, then unhealthy and killed (on_failure=kill), or
//! restarted (on_failure=restart), and goes with the container; `top`
//! lists the container's processes with their pids inside; `cp` in and out
//! of a running and a stopped container, where the container's links (to
//! /etc/shadow, to /etc) lead to the container's files, never the host's;
//! `export` and `commit` (the committed image runs, with a deletion kept).

mod common;
#[allow(unused_imports)]
use common::*;

use std::time::{Duration, Instant};

use berth_box::SystemdBox;
use serde_json::Value as Json;

const IMAGE: &str = "docker.io/local/bb:1";

#[test]
fn restart_policies_and_health_checks() {
    let Some(b) = berth_box::up_or_skip("berthctl_lifecycle") else {
        return;
    };
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    let t0 = Instant::now();
    bad_options_change_nothing(&b);
    restart_always(&b);
    restart_on_failure(&b);
    restart_across_a_berthd_restart(&b);
    health_kill(&b);
    health_restart(&b);
    unit_health(&b);
    top(&b);
    cp(&b);
    eprintln!("lifecycle checks took {:?}", t0.elapsed());
}

fn inspect(b: &SystemdBox, id: &str) -> Json {
    let out = ctl_ok(b, &format!("inspect {id}"));
    let v: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    match v {
        Json::Array(mut a) => a.remove(0),
        v => v,
    }
}

/// Polls `id`'s inspect until `ok` holds (15 s at most).
fn until(b: &SystemdBox, id: &str, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = inspect(b, id);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{id}: not {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(v: &Json) -> &str {
    v["Status"].as_str().unwrap_or_default()
}

fn units(b: &SystemdBox, pattern: &str) -> String {
    b.sh_ok(&format!(
        "systemctl list-units --all --plain --no-legend '{pattern}' || true"
    ))
}

fn bad_options_change_nothing(b: &SystemdBox) {
    let cases = [
        ("--restart sometimes", "option restart \"sometimes\""),
        ("--restart on-failure:x", "option restart"),
        ("--health-retries 2", "health_* options need health_cmd"),
        (
            "--health-cmd true --health-interval 10ms",
            "health_interval 10000 µs",
        ),
        (
            "--health-cmd true --health-on-failure explode",
            "health_on_failure \"explode\"",
        ),
        (
            "--health-cmd true --health-interval soon",
            "--health-interval \"soon\"",
        ),
        ("--health-cmd '[oops'", "not a JSON array"),
        ("--rm --restart always", "--rm and --restart conflict"),
    ];
    for (opts, want) in cases {
        let (code, out, err) = ctl(b, &format!("run -d --name bad {opts} {IMAGE} sleep 1"));
        assert_ne!(code, 0, "{opts}: {out}");
        assert!(err.contains(want), "{opts}: {err}");
    }
    assert_eq!(ctl_ok(b, "ps -a -q"), "");
    assert_eq!(units(b, "berth-health-*"), "");
    let (code, _, err) = ctl(b, "healthcheck run nosuch");
    assert_ne!(code, 0);
    assert!(
        err.contains("NotFound") || err.contains("no container"),
        "{err}"
    );
}

fn restart_always(b: &SystemdBox) {
    ctl_ok(
        b,
        &format!("run -d --name ra --restart always {IMAGE} sleep 300"),
    );
    let v = inspect(b, "ra");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "always");
    let pid = v["Pid"].as_u64().unwrap();
    // Killed behind berthd's back: a crash, which the policy restarts.
    let t0 = Instant::now();
    b.sh_ok(&format!("kill -9 {pid}"));
    let v = until(b, "ra", "restarted", |v| {
        v["RestartCount"] == 1 && status(v) == "running"
    });
    eprintln!("killed → running again (as polled): {:?}", t0.elapsed());
    assert_ne!(v["Pid"].as_u64().unwrap(), pid);
    // A stop asked for stays a stop.
    ctl_ok(b, "stop -t 1 ra");
    std::thread::sleep(Duration::from_millis(700));
    let v = inspect(b, "ra");
    assert_eq!(
        (status(&v), v["RestartCount"].as_u64()),
        ("stopped", Some(1))
    );
    ctl_ok(b, "rm ra");
}

fn restart_on_failure(b: &SystemdBox) {
    ctl_ok(
        b,
        &format!("run -d --name rf --restart on-failure:1 {IMAGE} sh -c 'sleep 0.2; exit 3'"),
    );
    until(b, "rf", "retried once", |v| {
        v["RestartCount"] == 1 && status(v) == "stopped"
    });
    std::thread::sleep(Duration::from_millis(800));
    let v = inspect(b, "rf");
    assert_eq!(
        (status(&v), v["RestartCount"].as_u64()),
        ("stopped", Some(1))
    );
    assert_eq!(v["ExitCode"], 3);
    // A clean exit is no failure.
    ctl_ok(
        b,
        &format!("run -d --name rok --restart on-failure {IMAGE} sh -c 'exit 0'"),
    );
    until(b, "rok", "stopped", |v| status(v) == "stopped");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(b, "rok")["RestartCount"], 0);
    ctl_ok(b, "rm rf rok");
}

fn restart_across_a_berthd_restart(b: &SystemdBox) {
    ctl_ok(
        b,
        &format!("run -d --name rb --restart unless-stopped {IMAGE} sleep 300"),
    );
    let pid = inspect(b, "rb")["Pid"].as_u64().unwrap();
    // berthd is down when the container dies: its next start decides.
    b.sh_ok(&format!(
        "systemctl kill -s KILL berthd; while systemctl is-active -q berthd; do sleep 0.05; done; kill -9 {pid}"
    ));
    b.sh_ok("systemctl start berthd");
    let v = until(b, "rb", "restarted by the next berthd", |v| {
        v["RestartCount"] == 1 && status(v) == "running"
    });
    assert_ne!(v["Pid"].as_u64().unwrap(), pid);
    ctl_ok(b, "rm -f rb");
}

fn health_kill(b: &SystemdBox) {
    // ContainerHealth, as `berthctl events` words it.
    b.sh_ok(&format!(
        "(timeout 30 {} events --json > /tmp/events.json 2>&1 &) ; sleep 0.3",
        berthctl()
    ));
    ctl_ok(
        b,
        &format!(
            "run -d --name hk --health-cmd 'test -e /tmp/ok' --health-interval 1s \
             --health-retries 2 --health-on-failure kill {IMAGE} sleep 300"
        ),
    );
    assert_eq!(inspect(b, "hk")["State"]["Health"]["Status"], "starting");
    let timer = units(b, "berth-health-hk.timer");
    assert!(
        timer.contains("active"),
        "{timer}: {}",
        b.sh_ok("journalctl -u berthd --no-pager | tail -20")
    );
    ctl_ok(b, "exec hk busybox touch /tmp/ok");
    // By hand, as podman's `healthcheck run`.
    assert_eq!(ctl_ok(b, "healthcheck run hk").trim(), "healthy");
    let t0 = Instant::now();
    b.sh_ok(&format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do {} healthcheck run hk >/dev/null; done",
        berthctl()
    ));
    eprintln!(
        "healthcheck run (berthctl + exec in the container): {:?} each",
        t0.elapsed() / 10
    );
    let ps = ctl_ok(b, "ps");
    assert!(ps.contains("(healthy)"), "{ps}");
    // A check outliving --health-timeout fails, and its process goes.
    ctl_ok(
        b,
        &format!(
            "run -d --name slow --health-cmd 'sleep 30' --health-timeout 1s --health-interval 1h \
             {IMAGE} sleep 300"
        ),
    );
    let t0 = Instant::now();
    let (code, out, _) = ctl(b, "healthcheck run slow");
    assert_eq!((code, out.trim()), (1, "starting"));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    let top = ctl_ok(b, "top slow");
    assert!(
        !top.contains("sleep 30\n") && !top.contains("sh -c sleep 30"),
        "{top}"
    );
    ctl_ok(b, "rm -f slow");
    // The timer's checks: two failures in a row, then the kill.
    ctl_ok(b, "exec hk busybox rm /tmp/ok");
    let t0 = Instant::now();
    let v = until(b, "hk", "unhealthy and killed", |v| status(v) == "stopped");
    eprintln!("unhealthy and killed after {:?}", t0.elapsed());
    assert_eq!(v["State"]["Health"]["Status"], "unhealthy");
    assert_eq!(v["ExitSignal"], 9, "{v:#}");
    let events = b.sh_ok("cat /tmp/events.json");
    for health in ["healthy", "unhealthy"] {
        let line = format!("\"health\":\"{health}\",\"id\":\"hk\"");
        assert!(events.contains(&line), "{line} in {events}");
    }
    // Its timer goes with the run.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !units(b, "berth-health-hk.*").is_empty() {
        assert!(
            Instant::now() < deadline,
            "{}",
            units(b, "berth-health-hk.*")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, err) = ctl(b, "healthcheck run hk");
    assert_ne!(code, 0);
    assert!(err.contains("running containers"), "{err}");
    ctl_ok(b, "rm hk");
}

fn health_restart(b: &SystemdBox) {
    ctl_ok(
        b,
        &format!(
            "run -d --name hr --health-cmd false --health-interval 1s \
             --health-retries 1 --health-on-failure restart {IMAGE} sleep 300"
        ),
    );
    let pid = inspect(b, "hr")["Pid"].as_u64().unwrap();
    let v = until(b, "hr", "restarted for its health", |v| {
        v["RestartCount"].as_u64() >= Some(1) && status(v) == "running"
    });
    assert_ne!(v["Pid"].as_u64().unwrap(), pid);
    // The restarted container has its timer again; delete takes it away.
    let timer = units(b, "berth-health-hr.timer");
    assert!(timer.contains("active"), "{timer}");
    ctl_ok(b, "rm -f hr");
    assert_eq!(units(b, "berth-health-*"), "");
    assert_eq!(ctl_ok(b, "ps -a -q"), "");
}

fn top(b: &SystemdBox) {
    ctl_ok(b, &format!("run -d --name tp {IMAGE} sleep 300"));
    ctl_ok(b, "exec -d tp sleep 301");
    let deadline = Instant::now() + Duration::from_secs(5);
    let out = loop {
        let out = ctl_ok(b, "top tp");
        if out.contains("sleep 301") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let host_pid = inspect(b, "tp")["Pid"].as_u64().unwrap();
    // The init: pid 1 inside, its host pid beside it.
    let init = out
        .lines()
        .find(|l| l.ends_with("sleep 300"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = init.split_whitespace().collect();
    assert_eq!(
        cols[..4],
        ["0", "1", "0", host_pid.to_string().as_str()],
        "{out}"
    );
    assert!(out.contains("sleep 301"), "{out}");
    ctl_ok(b, "kill tp");
    ctl_ok(b, "wait tp");
    let (code, _, err) = ctl(b, "top tp");
    assert_ne!(code, 0);
    assert!(err.contains("stopped state"), "{err}");
    ctl_ok(b, "rm tp");
}

fn cp(b: &SystemdBox) {
    ctl_ok(b, &format!("run -d --name cpc {IMAGE} sleep 300"));
    b.sh_ok(
        "rm -rf /tmp/cpsrc /tmp/out /tmp/outdir /tmp/o1 /tmp/o2 /tmp/o3 && mkdir -p /tmp/cpsrc/d /tmp/outdir && \
         echo hello > /tmp/cpsrc/d/f && ln -s f /tmp/cpsrc/d/l",
    );
    let in_ctr = |cmd: &str| ctl_ok(b, &format!("exec cpc sh -c '{cmd}'"));
    // In: a directory (its link kept a link), a file under a new name.
    ctl_ok(b, "cp /tmp/cpsrc/d cpc:/tmp");
    assert_eq!(
        in_ctr("cat /tmp/d/f; busybox readlink /tmp/d/l"),
        "hello\nf\n"
    );
    ctl_ok(b, "cp /tmp/cpsrc/d/f cpc:/tmp/g");
    assert_eq!(in_ctr("cat /tmp/g"), "hello\n");
    // Out: into a directory, and as a new name.
    ctl_ok(b, "cp cpc:/etc/passwd /tmp/outdir");
    assert!(b.sh_ok("cat /tmp/outdir/passwd").contains("app:x:1000"));
    ctl_ok(b, "cp cpc:/tmp/d /tmp/out");
    assert_eq!(b.sh_ok("cat /tmp/out/f; readlink /tmp/out/l"), "hello\nf\n");
    // The container's links name the container's files.
    in_ctr("busybox ln -s /etc/shadow /tmp/sh && busybox ln -s /etc /tmp/etc2");
    assert!(
        b.sh_ok("test -s /etc/shadow && echo yes").contains("yes"),
        "the box has a shadow file"
    );
    ctl_ok(b, "cp cpc:/tmp/sh /tmp/o1");
    assert_eq!(
        b.sh_ok("readlink /tmp/o1"),
        "/etc/shadow\n",
        "archived as a link"
    );
    let (code, _, err) = ctl(b, "cp cpc:/tmp/etc2/shadow /tmp/o2");
    assert_ne!(code, 0, "the container has no /etc/shadow");
    assert!(
        err.contains("NotFound") || err.contains("No such file"),
        "{err}"
    );
    assert!(b.sh("test -e /tmp/o2").unwrap().status.code() != Some(0));
    ctl_ok(b, "cp /tmp/cpsrc/d/f cpc:/tmp/etc2/");
    assert_eq!(in_ctr("cat /etc/f"), "hello\n");
    assert!(
        b.sh("test -e /etc/f").unwrap().status.code() != Some(0),
        "host /etc untouched"
    );
    // An archive that climbs out is refused.
    b.sh_ok(
        "python3 -c 'import tarfile,io; t=tarfile.open(\"/tmp/evil.tar\",\"w\"); \
         i=tarfile.TarInfo(\"../escaped\"); i.size=2; t.addfile(i, io.BytesIO(b\"x\\n\")); t.close()'",
    );
    let (code, _, err) = ctl(b, "cp - cpc:/tmp < /tmp/evil.tar");
    assert_ne!(code, 0);
    assert!(err.contains("leaves the destination"), "{err}");
    assert_eq!(in_ctr("test -e /escaped || echo no"), "no\n");
    // Bad names: named errors, nothing made.
    let (code, _, err) = ctl(b, "cp cpc:/nonexistent /tmp/o2");
    assert_ne!(code, 0);
    assert!(err.contains("nonexistent"), "{err}");
    let (code, _, err) = ctl(b, "cp nosuch:/x /tmp/o2");
    assert_ne!(code, 0);
    assert!(err.contains("no container"), "{err}");
    assert!(b.sh("test -e /tmp/o2").unwrap().status.code() != Some(0));
    // A deletion, for commit's whiteout below.
    in_ctr("busybox rm /bin/hostname");
    // A stopped container: its rootfs.
    ctl_ok(b, "kill cpc");
    ctl_ok(b, "wait cpc");
    ctl_ok(b, "cp cpc:/tmp/g /tmp/o3");
    assert_eq!(b.sh_ok("cat /tmp/o3"), "hello\n");
    ctl_ok(b, "cp /tmp/cpsrc/d/f cpc:/tmp/h");
    // export: the rootfs with what was copied in, not the host's.
    ctl_ok(b, "export -o /tmp/cpc.tar cpc");
    let list = b.sh_ok("tar -tf /tmp/cpc.tar");
    for want in ["bin/busybox", "tmp/h", "tmp/d/f", "etc/f", "tmp/sh"] {
        assert!(list.lines().any(|l| l == want), "{want} in {list}");
    }
    assert_eq!(b.sh_ok("tar -xOf /tmp/cpc.tar tmp/h"), "hello\n");
    let (code, _, err) = ctl(b, "export -o /tmp/none.tar nosuch");
    assert_ne!(code, 0);
    assert!(err.contains("no container"), "{err}");
    assert!(b.sh("test -e /tmp/none.tar").unwrap().status.code() != Some(0));
    // commit: the upper layer on the image's, deletions included; it runs.
    let image_id = ctl_ok(b, "commit cpc local/committed:1");
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    let out = ctl_ok(
        b,
        "run --rm local/committed:1 sh -c 'cat /tmp/h /etc/f; test -e /bin/hostname || echo gone'",
    );
    assert_eq!(out, "hello\nhello\ngone\n");
    for (args, want) in [
        ("commit nosuch local/x:1", "no container"),
        ("commit cpc ''", "image name"),
        ("commit cpc 'Bad Name'", "Bad Name"),
    ] {
        let (code, _, err) = ctl(b, args);
        assert_ne!(code, 0, "{args}");
        assert!(err.contains(want), "{args}: {err}");
    }
    ctl_ok(b, "image rm local/committed:1");
    ctl_ok(b, "rm cpc");
}

/// berth@'s TOML takes the health_* keys (the same conversion as berthctl's
/// flags): the unit's container gets its timer and turns healthy.
fn unit_health(b: &SystemdBox) {
    b.sh_ok(&format!(
        "mkdir -p /etc/berth/containers && printf '%s\\n' 'image = \"{IMAGE}\"' \
         'command = [\"sleep\", \"300\"]' 'health_cmd = \"true\"' 'health_interval = \"1s\"' 'stop_timeout = 1' \
         > /etc/berth/containers/uh.toml && systemctl start berth@uh"
    ));
    wait_active(b, "berth@uh");
    until(b, "uh", "healthy", |v| {
        v["State"]["Health"]["Status"] == "healthy"
    });
    b.sh_ok("systemctl stop berth@uh");
    assert_eq!(units(b, "berth-health-uh.*"), "");
}
