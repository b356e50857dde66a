//! Security and process options end to end (`berthctl run` flags over
//! CreateContainer's options): each one's effect seen from inside a real
//! container in a box — /proc/self/status (CapEff, NoNewPrivs, Seccomp),
//! the default seccomp profile blocking swapoff(2) and allowing umount(2),
//! groups, ulimits, sysctls, masks, entrypoint, env files, the stop signal
//! — and every bad input refused by name with nothing left behind.

mod common;
#[allow(unused_imports)]
use common::*;

use berth_box::SystemdBox;
use std::time::{Duration, Instant};

/// `Field:\tvalue` of the container's /proc/self/status.
fn status_field(b: &SystemdBox, flags: &str, field: &str) -> String {
    let out = ctl_ok(
        b,
        &format!("run --rm {flags} local/bb:1 grep ^{field}: /proc/self/status"),
    );
    out.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Nothing of a refused create is left: no container, bundle copy or rootfs.
fn nothing_left(b: &SystemdBox) {
    assert_eq!(ctl_ok(b, "ps -a -q").trim(), "", "a container was left");
    let left = b.sh_ok(
        "ls /var/lib/berth/bundles 2>/dev/null | wc -l; \
         grep -c /var/lib/berth/images/containers /proc/self/mountinfo || true",
    );
    assert_eq!(
        left.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "a bundle or rootfs was left"
    );
}

/// --init: catatonit (a copy, read-only) is pid 1, the command its child;
/// the exit code passes through.
fn init_is_pid_1(b: &SystemdBox) {
    let (code, out, err) = ctl(
        b,
        "run --rm --init local/bb:1 sh -c 'readlink /proc/1/exe; echo $$; (echo x > /run/berth-init) 2>/dev/null || echo read-only; exit 3'",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(code, 3, "exit code through catatonit: {out}{err}");
    assert_eq!(lines.first(), Some(&"/run/berth-init"), "{out}{err}");
    assert_ne!(lines.get(1), Some(&"1"), "the command is pid 1: {out}");
    assert_eq!(lines.last(), Some(&"read-only"), "{out}{err}");
}

#[test]
fn security_and_process_options() {
    let Some(b) = berth_box::up_or_skip("berthctl_security") else {
        return;
    };
    if !std::path::Path::new("/usr/share/containers/seccomp.json").exists() {
        eprintln!(
            "skipped: no /usr/share/containers/seccomp.json (golang-github-containers-common)"
        );
        return;
    }
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    let t0 = Instant::now();

    // The default seccomp profile is loaded (mode 2, a filter) in image
    // containers; unconfined and privileged have none.
    assert_eq!(status_field(&b, "", "Seccomp"), "2");
    assert_eq!(
        status_field(&b, "--security-opt seccomp=unconfined", "Seccomp"),
        "0"
    );
    // Blocked and allowed, with CAP_SYS_ADMIN so that only seccomp decides:
    // containers-common's profile refuses swapoff(2) with EPERM whatever the
    // capabilities, and allows umount(2) (which then fails on the path).
    let swapoff = |opts: &str| {
        ctl(
            &b,
            &format!("run --rm --cap-add SYS_ADMIN {opts}local/bb:1 busybox swapoff /nonexistent"),
        )
    };
    let (code, out, err) = swapoff("");
    assert!(
        code != 0 && (out + &err).contains("Operation not permitted"),
        "swapoff was not blocked: {code} {err}"
    );
    // The profile's program was compiled once and kept for the next
    // container (init/src/seccomp/cache.rs); a damaged file is not loaded:
    // the profile is compiled again and still blocks swapoff.
    let cached = b.sh_ok("ls /run/berth/.seccomp | grep -c '[.]bpf$'");
    assert!(cached.trim().parse::<u32>().unwrap_or(0) >= 1, "{cached}");
    b.sh_ok("for f in /run/berth/.seccomp/*.bpf; do printf abc > $f; done");
    let (code, out, err) = swapoff("");
    assert!(
        code != 0 && (out + &err).contains("Operation not permitted"),
        "swapoff was not blocked with a damaged cache: {code} {err}"
    );
    let (_, out, err) = swapoff("--security-opt seccomp=unconfined ");
    assert!(
        (out.clone() + &err).contains("No such file"),
        "unconfined swapoff: {out}{err}"
    );
    let (_, out, err) = ctl(
        &b,
        "run --rm --cap-add SYS_ADMIN local/bb:1 busybox umount /nonexistent",
    );
    assert!(
        !(out.clone() + &err).contains("Operation not permitted"),
        "umount was blocked: {out}{err}"
    );
    // A profile of one's own (OCI or docker format), read by berthctl.
    b.sh_ok(r#"echo '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}' > /tmp/nomkdir.json"#);
    let (code, out, err) = ctl(
        &b,
        "run --rm --security-opt seccomp=/tmp/nomkdir.json local/bb:1 busybox mkdir /tmp/d",
    );
    assert!(
        code != 0 && (out + &err).contains("Operation not permitted"),
        "own profile: {err}"
    );

    // Capabilities: 0 after dropping all; NET_ADMIN (bit 12) added; all
    // the box's when privileged.
    assert_eq!(
        status_field(&b, "--cap-drop ALL", "CapEff"),
        "0000000000000000"
    );
    let net_admin =
        u64::from_str_radix(&status_field(&b, "--cap-add net_admin", "CapEff"), 16).unwrap();
    assert_ne!(net_admin & (1 << 12), 0, "{net_admin:x}");
    let dropped = u64::from_str_radix(
        &status_field(
            &b,
            "--cap-drop CAP_KILL --cap-drop NET_BIND_SERVICE",
            "CapEff",
        ),
        16,
    )
    .unwrap();
    assert_eq!(dropped & ((1 << 5) | (1 << 10)), 0, "{dropped:x}");
    let host_bnd = b.sh_ok("grep ^CapBnd: /proc/self/status | cut -f2");
    assert_eq!(
        status_field(&b, "--privileged", "CapEff"),
        host_bnd.trim(),
        "privileged sees every capability"
    );
    assert_eq!(status_field(&b, "--privileged", "Seccomp"), "0");
    // Privileged: the host's devices, no masked paths.
    let devs = ctl_ok(&b, "run --rm --privileged local/bb:1 ls /dev");
    assert!(
        devs.contains("loop-control") || devs.lines().count() > 20,
        "{devs}"
    );
    let masked = "grep -c /proc/keys /proc/self/mountinfo || true";
    assert_eq!(
        ctl_ok(&b, &format!("run --rm local/bb:1 sh -c '{masked}'")).trim(),
        "1"
    );
    assert_eq!(
        ctl_ok(
            &b,
            &format!("run --rm --privileged local/bb:1 sh -c '{masked}'")
        )
        .trim(),
        "0"
    );
    assert_eq!(
        ctl_ok(
            &b,
            &format!("run --rm --security-opt unmask=/proc/keys local/bb:1 sh -c '{masked}'")
        )
        .trim(),
        "0"
    );
    // mask= hides a path of ours (a file: /dev/null over it).
    assert_eq!(
        ctl_ok(
            &b,
            "run --rm --security-opt mask=/etc/passwd local/bb:1 cat /etc/passwd"
        ),
        ""
    );

    // no_new_privileges: berth's spec sets it (runc's default); =false
    // clears it, and the default seccomp filter still loads (before the
    // capabilities drop, as runc does).
    assert_eq!(
        status_field(&b, "--security-opt no-new-privileges", "NoNewPrivs"),
        "1"
    );
    assert_eq!(
        status_field(&b, "--security-opt no-new-privileges=false", "NoNewPrivs"),
        "0"
    );
    assert_eq!(
        status_field(&b, "--security-opt no-new-privileges=false", "Seccomp"),
        "2"
    );

    // Groups, ulimits, sysctls.
    let groups = ctl_ok(
        &b,
        "run --rm --group-add 4321 --group-add 55 --group-add app local/bb:1 id -G",
    );
    for want in ["4321", "55", "1000"] {
        assert!(
            groups.split_whitespace().any(|g| g == want),
            "{want}: {groups}"
        );
    }
    assert_eq!(
        ctl_ok(
            &b,
            "run --rm --ulimit nofile=123:456 local/bb:1 sh -c 'ulimit -n; ulimit -Hn'"
        ),
        "123\n456\n"
    );
    assert_eq!(
        ctl_ok(
            &b,
            "run --rm --sysctl kernel.shmmax=1234567 --sysctl net.ipv4.ip_unprivileged_port_start=80 \
             local/bb:1 sh -c 'cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_unprivileged_port_start'"
        ),
        "1234567\n80\n"
    );
    let host_shmmax = b.sh_ok("cat /proc/sys/kernel/shmmax");
    assert_ne!(host_shmmax.trim(), "1234567", "the host's sysctl changed");

    // Entrypoint (a word, or a JSON array) and env files (-e wins).
    assert_eq!(
        ctl_ok(&b, "run --rm --entrypoint echo local/bb:1 hi"),
        "hi\n"
    );
    assert_eq!(
        ctl_ok(
            &b,
            r#"run --rm --entrypoint '["sh","-c"]' local/bb:1 'echo $FOO'"#
        ),
        "from-image\n"
    );
    b.sh_ok("printf '# comment\\nA=1\\n\\nB=2\\n' > /tmp/envf");
    assert_eq!(
        ctl_ok(
            &b,
            "run --rm --env-file /tmp/envf -e B=3 local/bb:1 sh -c 'echo $A$B'"
        ),
        "13\n"
    );

    // Annotations reach the spec the container is made from.
    let id = ctl_ok(&b, "create --annotation org.example.a=b local/bb:1 echo");
    let spec = b.sh_ok(&format!(
        "cat /var/lib/berth/bundles/{}/config.json",
        id.trim()
    ));
    assert!(spec.contains(r#""org.example.a":"b""#), "{spec}");
    ctl_ok(&b, &format!("rm -f {}", id.trim()));

    // The stop signal reaches the process; the stop timeout is kept.
    ctl_ok(
        &b,
        "run -d --name stopper --stop-signal USR1 --stop-timeout 2 local/bb:1 \
         sh -c \"trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done\"",
    );
    std::thread::sleep(Duration::from_millis(300));
    // An exec runs under the container's filter too.
    let exec = ctl_ok(&b, "exec stopper grep ^Seccomp: /proc/self/status");
    assert_eq!(exec.split_whitespace().nth(1), Some("2"), "{exec}");
    ctl_ok(&b, "stop stopper");
    let logs = ctl_ok(&b, "logs stopper");
    assert!(logs.contains("got-usr1"), "{logs}");
    ctl_ok(&b, "rm -f stopper");
    // A process ignoring its stop signal is killed after --stop-timeout.
    ctl_ok(
        &b,
        "run -d --name stubborn --stop-timeout 1 local/bb:1 sh -c \"trap '' TERM; while true; do sleep 0.1; done\"",
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    ctl_ok(&b, "stop stubborn");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    ctl_ok(&b, "rm -f stubborn");

    // --init: catatonit (a copy, read-only) is pid 1, the command its child;
    // the exit code passes through.
    let catatonit = ["/usr/libexec/podman/catatonit", "/usr/bin/catatonit"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if catatonit {
        init_is_pid_1(&b);
    } else {
        eprintln!("--init skipped: no catatonit (scripts/deps installs it)");
    }

    // The berth@ TOML keys are the same options (berthctl run-unit, the
    // unit's main process, run here by hand: its exit code is the check).
    b.sh_ok(
        r#"mkdir -p /tmp/units && cat > /tmp/units/sec.toml <<'EOF'
image = "local/bb:1"
entrypoint = ["sh", "-c"]
command = ["grep -q 'CapEff:.0000000000000000' /proc/self/status && [ $(ulimit -n) = 77 ] && [ $(cat /proc/sys/kernel/shmmax) = 4242 ] && id -G | grep -qw 777 && [ $E = 1 ]"]
cap_drop = ["ALL"]
security_opt = ["no-new-privileges"]
ulimits = ["nofile=77"]
group_add = ["777"]
env_file = ["/tmp/envf"]
env = ["E=1"]
[sysctls]
"kernel.shmmax" = "4242"
EOF"#,
    );
    let (code, out, err) = ctl(&b, "run-unit sec --config-dir /tmp/units");
    assert_eq!(code, 0, "the unit's options: {out}{err}");
    b.sh_ok("sed -i 's/nofile=77/nofile=78/' /tmp/units/sec.toml");
    assert_eq!(
        ctl(&b, "run-unit sec --config-dir /tmp/units").0,
        1,
        "a check that cannot fail"
    );

    // Bad input: a named error each, nothing made.
    let bad: &[(&str, &str)] = &[
        ("--cap-add SYS_NOPE", "unknown capability \"SYS_NOPE\""),
        (
            "--sysctl kernel.pid_max=100",
            "\"kernel.pid_max\" is not namespaced",
        ),
        (
            "--sysctl vm.swappiness=1",
            "\"vm.swappiness\" is not namespaced",
        ),
        (
            "--network host --sysctl net.ipv4.ip_forward=1",
            "shares with the host",
        ),
        ("--ulimit nofile=9:1", "option ulimits: \"nofile=9:1\""),
        ("--ulimit files=1", "option ulimits: \"files=1\""),
        (
            "--security-opt seccomp=/nonexistent.json",
            "seccomp=/nonexistent.json",
        ),
        (
            "--security-opt apparmor=x",
            "option security_opt: \"apparmor=x\"",
        ),
        (
            "--group-add nosuchgroup",
            "option group_add: group \"nosuchgroup\" is not in the image's /etc/group",
        ),
        ("--group-add a:b", "option group_add: \"a:b\""),
        ("--stop-signal SIGNOPE", "option stop_signal: \"SIGNOPE\""),
        ("--env-file /nonexistent", "--env-file /nonexistent"),
    ];
    b.sh_ok("echo '{\"defaultAction\": \"SCMP_ACT_NOPE\"}' > /tmp/bad.json; echo '{' > /tmp/notjson.json");
    for (flags, want) in bad.iter().chain(&[
        (
            "--security-opt seccomp=/tmp/bad.json",
            "option seccomp_profile: ",
        ),
        ("--security-opt seccomp=/tmp/notjson.json", "not JSON"),
    ]) {
        let (code, out, err) = ctl(&b, &format!("run --rm {flags} local/bb:1 true"));
        assert_ne!(code, 0, "{flags}: accepted");
        assert!(err.contains(want), "{flags}: {out}{err}");
        nothing_left(&b);
    }
    eprintln!("security options checked in {:?}", t0.elapsed());
}

/// A caller's own bundle keeps its own seccomp unless its annotation
/// io.berth.seccomp asks for runtime/default (the CRI's name); its options
/// apply as to an image's; options that need an image are refused.
#[test]
fn bundles_and_the_runtime_default_annotation() {
    let Some(b) = berth_box::up_or_skip("berthctl_security_bundle") else {
        return;
    };
    if !std::path::Path::new("/usr/share/containers/seccomp.json").exists() {
        eprintln!(
            "skipped: no /usr/share/containers/seccomp.json (golang-github-containers-common)"
        );
        return;
    }
    install_berthd(&b, "");
    let grep = ["grep", "^Seccomp:", "/proc/self/status"];
    let plain = busybox_bundle("sec-plain", &grep);
    let mut annotated = busybox_bundle("sec-annotated", &grep);
    annotated.config["annotations"] = serde_json::json!({"io.berth.seccomp": "runtime/default"});
    std::fs::write(
        annotated.dir.join("config.json"),
        serde_json::to_vec(&annotated.config).unwrap(),
    )
    .unwrap();
    let seccomp = |bundle: &str, flags: &str| {
        let out = ctl_ok(&b, &format!("run --rm {flags} --bundle {bundle}"));
        out.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        seccomp(plain.path(), ""),
        "0",
        "a bundle's own (none) is kept"
    );
    assert_eq!(
        seccomp(annotated.path(), ""),
        "2",
        "runtime/default by annotation"
    );
    assert_eq!(
        seccomp(annotated.path(), "--security-opt seccomp=unconfined"),
        "0"
    );
    assert_eq!(
        seccomp(plain.path(), "--cap-add SYS_ADMIN"),
        "0",
        "options alone do not add a profile to a bundle"
    );
    // A bundle sharing the host's IPC namespace: kernel.shm* is refused.
    let mut host_ipc = busybox_bundle("sec-hostipc", &grep);
    host_ipc.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "ipc");
    std::fs::write(
        host_ipc.dir.join("config.json"),
        serde_json::to_vec(&host_ipc.config).unwrap(),
    )
    .unwrap();
    let (code, _, err) = ctl(
        &b,
        &format!(
            "run --rm --sysctl kernel.shmmax=1 --bundle {}",
            host_ipc.path()
        ),
    );
    assert!(code != 0 && err.contains("shares with the host"), "{err}");
    let (code, _, err) = ctl(
        &b,
        &format!("run --rm --entrypoint sh --bundle {}", plain.path()),
    );
    assert!(
        code != 0 && err.contains("entrypoint goes with image"),
        "{err}"
    );
    let (code, _, err) = ctl(
        &b,
        &format!("run --rm --group-add wheel --bundle {}", plain.path()),
    );
    assert!(
        code != 0 && err.contains("group names go with image"),
        "{err}"
    );
    assert_eq!(ctl_ok(&b, "ps -a -q").trim(), "");
}
