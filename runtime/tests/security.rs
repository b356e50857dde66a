//! Security regressions, each against `berth-runtime` in a box: host fds and
//! a host cwd never reach a container (CVE-2024-21626 class), the runtime's
//! own processes in a container are out of reach (CVE-2019-5736,
//! CVE-2016-9962), the default masked and read-only paths, exec inheriting
//! the container's no_new_privs, capabilities and seccomp filter, symlink
//! tricks in the bundle, and the modes of the state directory.
//!
//! isolation.rs covers the container's own view (namespaces, the init's fds
//! and cwd, masks it adds, seccomp and capabilities of the init): these
//! tests extend it to `exec`, to hostile specs and to the defaults.

mod common;

use common::{shell_join, text, Bundle, Rt};
use serde_json::json;

/// common's busybox bundle with a writable root (runc's default spec makes
/// it read-only): the probes below leave files in /tmp.
fn busybox_bundle(name: &str, args: &[&str]) -> Bundle {
    let mut b = common::busybox_bundle(name, args);
    b.config["root"]["readonly"] = json!(false);
    b.save();
    b
}

/// A directory in the box, outside every rootfs, holding `marker` with a
/// secret only an escape could read. Removed with the box.
fn host_secret(b: &berth_box::SystemdBox, name: &str) -> (String, String) {
    let dir = format!("/run/{}", berth_box::bundle::unique(name));
    let secret = format!("host-secret-{}", berth_box::bundle::unique("s"));
    b.sh_ok(&format!("mkdir -p {dir} && echo {secret} > {dir}/marker"));
    (dir, secret)
}

/// Extra busybox applets in a test bundle's rootfs.
fn add_applets(bundle: &Bundle, applets: &[&str]) {
    for a in applets {
        let _ = std::os::unix::fs::symlink("busybox", bundle.dir.join("rootfs/bin").join(a));
    }
}

/// `create` + `start` of a long-running container.
fn start_sleeper(rt: &Rt, id: &str, bundle: &Bundle) {
    let log = format!("/tmp/{id}.log");
    let out = rt.create(id, bundle, &log);
    assert!(out.status.success(), "create {id}: {}", text(&out));
    rt.ok(&["start", id]);
}

/// Numbers of the fds listed by `cd /proc/self/fd && echo *`.
fn fd_numbers(line: &str) -> Vec<u32> {
    line.split_whitespace()
        .map(|f| {
            f.parse()
                .unwrap_or_else(|_| panic!("not an fd list: {line}"))
        })
        .collect()
}

#[test]
fn exec_sees_no_host_fds() {
    let Some(b) = berth_box::up_or_skip("exec_sees_no_host_fds") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("sec-execfd", &["sleep", "300"]);
    start_sleeper(&rt, "xf1", &bundle);
    // The caller of `exec` holds inheritable fds on a host file and a host
    // directory; the exec'd process must see neither (nor the runtime's own).
    for detach in [false, true] {
        let mut args = vec!["exec"];
        if detach {
            args.push("-d");
        }
        args.extend([
            "xf1",
            "sh",
            "-c",
            "cd /proc/self/fd && echo * > /tmp/fds; cat /tmp/fds",
        ]);
        let argv = rt.argv(&args);
        let out = b
            .sh(&format!(
                "exec 7</etc/hostname 8</ 9</run; {}",
                shell_join(&argv)
            ))
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        if detach {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let listed = rt.ok(&["exec", "xf1", "cat", "/tmp/fds"]);
        // 0-2, and the directory `echo *` reads /proc/self/fd through.
        let fds = fd_numbers(listed.trim());
        assert!(
            fds.iter().all(|f| *f <= 3),
            "host fds visible to an exec (detach {detach}): {fds:?}"
        );
    }
    rt.ok(&["delete", "-f", "xf1"]);
}

#[test]
fn cwd_through_a_leaked_fd_stays_in_the_container() {
    let Some(b) = berth_box::up_or_skip("cwd_through_a_leaked_fd") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let (dir, secret) = host_secret(&b, "sec-cwd");
    // From a cwd outside the container's root, `marker` is the host file and
    // `..` climbs past the root to the host's /.
    let probe = format!(
        "cat marker 2>/dev/null; cat ../../../../../../../../../..{dir}/marker 2>/dev/null; echo cwd=$(pwd)"
    );
    // The caller leaks directory fds 7 and 8 (runc's CVE-2024-21626 leaked
    // one of its own: process.cwd = /proc/self/fd/N then started the process
    // in the host's filesystem). Every small fd number is tried, so a fd the
    // runtime itself leaks is caught too.
    let mut outcomes = Vec::new();
    for n in 3..=12 {
        let mut bundle = busybox_bundle("sec-cwd", &["sh", "-c", &probe]);
        bundle.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        bundle.save();
        let argv = rt.argv(&["run", &format!("cwd{n}"), "--bundle", bundle.path()]);
        let out = b
            .sh(&format!("exec 7<{dir} 8<{dir}; {}", shell_join(&argv)))
            .unwrap();
        let all = text(&out);
        assert!(
            !all.contains(&secret),
            "process.cwd /proc/self/fd/{n} reached the host: {all}"
        );
        outcomes.push(format!(
            "fd {n}: {}",
            if out.status.success() {
                "ran inside"
            } else {
                "refused"
            }
        ));
    }
    // The fds the caller leaked are directories: those must be refused.
    for n in [7, 8] {
        assert!(
            outcomes[n - 3].ends_with("refused"),
            "cwd through leaked fd {n}: {outcomes:?}"
        );
    }
    eprintln!("create/run: {outcomes:?}");

    // A program through a leaked fd: a host binary run in the container.
    b.sh_ok(&format!("cp /bin/busybox {dir}/echo"));
    let host_bin = "/proc/self/fd/7/echo";
    let bundle = busybox_bundle("sec-argv0", &[host_bin, "ran-a-host-binary"]);
    let argv = rt.argv(&["run", "argv0", "--bundle", bundle.path()]);
    let out = b
        .sh(&format!("exec 7<{dir}; {}", shell_join(&argv)))
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("ran-a-host-binary"), "{}", text(&out));

    // The same through exec (--cwd, and args[0]), into a running container.
    let bundle = busybox_bundle("sec-cwd-exec", &["sleep", "300"]);
    start_sleeper(&rt, "cwdx", &bundle);
    let argv = rt.argv(&["exec", "cwdx", host_bin, "ran-a-host-binary"]);
    let out = b
        .sh(&format!("exec 7<{dir}; {}", shell_join(&argv)))
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("ran-a-host-binary"), "{}", text(&out));
    for n in 3..=12 {
        let cwd = format!("/proc/self/fd/{n}");
        let argv = rt.argv(&["exec", "--cwd", &cwd, "cwdx", "sh", "-c", &probe]);
        let out = b
            .sh(&format!("exec 7<{dir} 8<{dir}; {}", shell_join(&argv)))
            .unwrap();
        let all = text(&out);
        assert!(
            !all.contains(&secret),
            "exec --cwd {cwd} reached the host: {all}"
        );
        if n == 7 || n == 8 {
            assert!(!out.status.success(), "exec --cwd {cwd}: {all}");
        }
    }
    rt.ok(&["delete", "-f", "cwdx"]);
    // Nothing was created in the host directory either.
    assert_eq!(
        b.sh_ok(&format!("ls -A {dir} | tr '\\n' ' '")).trim(),
        "echo marker"
    );
}

fn expect_lines(out: &str, want: &[&str]) {
    for w in want {
        assert!(
            out.lines().any(|l| l == *w),
            "missing line {w:?} in:\n{out}"
        );
    }
}

#[test]
fn runtime_processes_in_the_container_are_out_of_reach() {
    let Some(b) = berth_box::up_or_skip("runtime_processes_out_of_reach") else {
        return;
    };
    let rt = Rt::new(&b, true);
    // A created container: its init is still the runtime binary, blocked on
    // the exec FIFO as pid 1 of the container. A process exec'd in the
    // container (root, default capabilities) must not read its exe, fds,
    // environment or memory, nor open its exe for writing (CVE-2019-5736:
    // overwrite the host runtime through /proc/<pid>/exe; CVE-2016-9962:
    // ptrace or fds of a runtime process that joined the container).
    let bundle = busybox_bundle("sec-exe", &["sleep", "300"]);
    let out = rt.create("exe1", &bundle, "/tmp/exe1.log");
    assert!(out.status.success(), "{}", text(&out));
    let probe = r#"
        readlink /proc/self/exe
        readlink /proc/1/exe >/dev/null 2>&1 && echo init-exe-visible || echo init-exe-denied
        (echo x >> /proc/1/exe) 2>/dev/null && echo init-exe-writable || echo init-exe-write-denied
        cat /proc/1/environ >/dev/null 2>&1 && echo init-environ-visible || echo init-environ-denied
        dd if=/proc/1/mem of=/dev/null bs=1 count=1 2>/dev/null && echo init-mem-visible || echo init-mem-denied
        leaked=0; for f in /proc/1/fd/* /proc/1/cwd /proc/1/root; do readlink $f >/dev/null 2>&1 && leaked=$((leaked+1)); done; echo init-links-readable=$leaked
        grep '^TracerPid:' /proc/1/status
    "#;
    let out = rt.ok(&["exec", "exe1", "sh", "-c", probe]);
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("busybox") && !first.contains("berth"),
        "an exec'd process's /proc/self/exe: {first}"
    );
    expect_lines(
        &out,
        &[
            "init-exe-denied",
            "init-exe-write-denied",
            "init-environ-denied",
            "init-mem-denied",
            "init-links-readable=0",
            "TracerPid:\t0",
        ],
    );
    // The runtime binary itself is not in the container's filesystem.
    let out = rt.ok(&[
        "exec",
        "exe1",
        "sh",
        "-c",
        &format!("ls {} 2>&1 || true", common::RUNTIME),
    ]);
    assert!(out.contains("No such file"), "{out}");
    rt.ok(&["delete", "-f", "exe1"]);

    // A watcher in a running container scans every process's exe while the
    // runtime execs into it: a runtime process caught before its execve must
    // show nothing (it is non-dumpable from before it enters the container).
    let watcher = r#"
        caught=0
        while [ ! -e /tmp/stop ]; do
            for p in /proc/[0-9]*; do
                case $p in /proc/1|/proc/$$) continue;; esac
                l=$(readlink $p/exe 2>/dev/null) || { [ -d $p ] && caught=$((caught+1)); continue; }
                case $l in *berth*) echo "LEAK $p $l";; esac
            done
        done
        # The exec that made /tmp/stop may not have exited yet: when pid 1
        # exits the kernel SIGKILLs the rest of the pid namespace, and that
        # exec would report 137. Wait (builtins only, no forks) until every
        # other process of the container is gone.
        others=1
        while [ $others = 1 ]; do
            others=0
            for p in /proc/[0-9]*; do
                case $p in /proc/1|/proc/$$) ;; *) [ -d $p ] && others=1;; esac
            done
        done
        echo caught=$caught
        echo done
    "#;
    let bundle = busybox_bundle("sec-watch", &["sh", "-c", watcher]);
    start_sleeper(&rt, "watch1", &bundle);
    for _ in 0..40 {
        rt.ok(&["exec", "watch1", "true"]);
    }
    rt.ok(&["exec", "watch1", "touch", "/tmp/stop"]);
    rt.wait_status("watch1", "stopped");
    let log = b.sh_ok("cat /tmp/watch1.log");
    assert!(log.contains("done"), "{log}");
    assert!(!log.contains("LEAK"), "runtime binary visible: {log}");
    eprintln!("watcher: {}", log.trim().replace('\n', " "));
    rt.ok(&["delete", "watch1"]);
}

#[test]
fn default_masked_and_readonly_paths_hold() {
    let Some(b) = berth_box::up_or_skip("default_masked_and_readonly_paths") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let spec = berth_init::spec::default_spec(false);
    let linux = spec.linux().as_ref().unwrap();
    let masked = linux.masked_paths().clone().unwrap_or_default();
    let readonly = linux.readonly_paths().clone().unwrap_or_default();
    assert!(masked.iter().any(|p| p == "/proc/kcore"), "{masked:?}");
    assert!(masked.iter().any(|p| p == "/proc/keys"), "{masked:?}");
    let script = format!(
        r#"
        for p in {masked}; do
            if [ -d $p ]; then echo "$p dir $(ls -A $p | wc -l)"
            elif [ -e $p ]; then echo "$p file $(head -c 4096 $p 2>/dev/null | wc -c)"
            else echo "$p absent"; fi
            umount $p 2>/dev/null && echo "$p unmounted"
        done
        for p in {readonly}; do
            if [ -e $p ]; then
                o=$(grep " $p " /proc/self/mountinfo | tail -n 1 | cut -d' ' -f6)
                echo "$p opts $o"
                mount -o remount,rw $p 2>/dev/null && echo "$p remounted-rw"
                umount $p 2>/dev/null && echo "$p unmounted"
            else echo "$p absent"; fi
        done
        echo x > /proc/sys/vm/drop_caches 2>/dev/null && echo sysctl-written
        echo done
        "#,
        masked = masked.join(" "),
        readonly = readonly.join(" "),
    );
    let bundle = busybox_bundle("sec-masks", &["sh", "-c", &script]);
    add_applets(&bundle, &["umount", "cut", "tail"]);
    let out = rt.run(&["run", "mask1", "--bundle", bundle.path()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.contains("done"), "{out}");
    for bad in ["unmounted", "remounted-rw", "sysctl-written"] {
        assert!(!out.contains(bad), "{bad}:\n{out}");
    }
    let mut checked = 0;
    for p in &masked {
        // What the box (outside the container) has decides what must be masked.
        let exists = b.sh(&format!("test -e {p}")).unwrap().status.success();
        let line = out
            .lines()
            .find(|l| l.split(' ').next() == Some(p.as_str()))
            .unwrap_or_else(|| panic!("{p} not probed: {out}"));
        if exists {
            assert!(
                line.ends_with(" dir 0") || line.ends_with(" file 0"),
                "masked path readable: {line}"
            );
            checked += 1;
        }
    }
    for p in &readonly {
        let exists = b.sh(&format!("test -e {p}")).unwrap().status.success();
        let line = out
            .lines()
            .find(|l| l.split(' ').next() == Some(p.as_str()))
            .unwrap_or_else(|| panic!("{p} not probed: {out}"));
        if exists {
            let opts = line.rsplit(' ').next().unwrap_or_default();
            assert!(
                opts.split(',').any(|o| o == "ro"),
                "read-only path not read-only: {line}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "too few paths exist to check: {out}");
}

#[test]
fn exec_inherits_no_new_privs_capabilities_and_seccomp() {
    let Some(b) = berth_box::up_or_skip("exec_inherits_nnp_caps_seccomp") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let mut bundle = busybox_bundle("sec-exec-attrs", &["sleep", "300"]);
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    bundle.config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []
    });
    bundle.config["process"]["noNewPrivileges"] = json!(true);
    bundle.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    bundle.save();
    start_sleeper(&rt, "attrs1", &bundle);
    let probe = "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
                 mkdir /tmp/d 2>&1 || echo mkdir-denied";
    for who in ["init", "exec"] {
        let out = match who {
            // The init's view, through its /proc entry (the exec'd shell is
            // its sibling in the container's pid namespace).
            "init" => rt.ok(&[
                "exec",
                "attrs1",
                "sh",
                "-c",
                "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/1/status; echo mkdir-denied",
            ]),
            _ => rt.ok(&["exec", "attrs1", "sh", "-c", probe]),
        };
        expect_lines(
            &out,
            &[
                "CapEff:\t0000000000000021",
                "CapPrm:\t0000000000000021",
                "CapBnd:\t0000000000000021",
                "NoNewPrivs:\t1",
                "Seccomp:\t2",
                "mkdir-denied",
            ],
        );
        if who == "exec" {
            assert!(out.contains("Operation not permitted"), "{out}");
        }
    }
    // An exec cannot raise what the container's process lacks by itself:
    // without --cap, CAP_SYS_ADMIN stays out of every set.
    let out = rt.ok(&[
        "exec",
        "attrs1",
        "sh",
        "-c",
        "mount -t tmpfs t /tmp 2>&1 || echo mount-denied",
    ]);
    assert!(out.contains("mount-denied"), "{out}");
    rt.ok(&["delete", "-f", "attrs1"]);
}

#[test]
fn symlinked_rootfs_is_refused() {
    let Some(b) = berth_box::up_or_skip("symlinked_rootfs_is_refused") else {
        return;
    };
    let rt = Rt::new(&b, true);
    // The victim: a directory outside the bundle (here another bundle's
    // rootfs, so a container would even run there).
    let victim = busybox_bundle("sec-victim", &["true"]);
    let victim_root = victim.dir.join("rootfs");
    let before = b.sh_ok(&format!("ls -A {}", victim_root.display()));
    for (name, root_path) in [
        ("relative", "rootfs"),
        ("nested", "sub/rootfs"),
        ("absolute", ""),
    ] {
        let mut bundle = busybox_bundle("sec-rootlink", &["touch", "/written-by-container"]);
        let link = bundle.dir.join("rootfs");
        std::fs::remove_dir_all(&link).unwrap();
        match name {
            "nested" => {
                std::os::unix::fs::symlink(&victim.dir, bundle.dir.join("sub")).unwrap();
                bundle.config["root"]["path"] = json!(root_path);
            }
            _ => {
                std::os::unix::fs::symlink(&victim_root, &link).unwrap();
                if name == "absolute" {
                    bundle.config["root"]["path"] = json!(link);
                }
            }
        }
        // A mount point the container would create in its "rootfs".
        bundle.config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/made-by-berth", "type": "tmpfs", "source": "tmpfs"}));
        bundle.save();
        let out = rt.run(&["run", &format!("rl-{name}"), "--bundle", bundle.path()]);
        assert!(
            !out.status.success(),
            "{name}: a rootfs that is a symlink out of the bundle ran: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("root.path"),
            "{name}: {}",
            text(&out)
        );
    }
    assert_eq!(
        b.sh_ok(&format!("ls -A {}", victim_root.display())),
        before,
        "something was written outside the bundle"
    );
    common::assert_nothing_left(&rt, "rl-relative");
}

#[test]
fn mount_targets_through_symlinks_stay_in_the_rootfs() {
    let Some(b) = berth_box::up_or_skip("mount_targets_through_symlinks") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let (dir, _) = host_secret(&b, "sec-mnt");
    let mut bundle = busybox_bundle(
        "sec-mntlink",
        &[
            "sh",
            "-c",
            &format!("ls -A {dir}; ls -A /etc-host; cat /etc-host/from-bundle"),
        ],
    );
    let rootfs = bundle.dir.join("rootfs");
    // Absolute and relative symlinks to host paths, and one to the host's /etc.
    std::os::unix::fs::symlink(&dir, rootfs.join("abs")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../../../..{dir}"),
        rootfs.join("rel"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc", rootfs.join("etc-host")).unwrap();
    std::fs::write(bundle.dir.join("payload"), "from the bundle\n").unwrap();
    let mounts = bundle.config["mounts"].as_array_mut().unwrap();
    mounts.extend([
        json!({"destination": "/abs/tmpfs-here", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/rel/bind-here", "type": "bind", "source": "payload", "options": ["bind"]}),
        json!({"destination": "/etc-host/from-bundle", "type": "bind", "source": "payload", "options": ["bind"]}),
        json!({"destination": format!("/abs/../../../..{dir}/dotdot"), "type": "tmpfs", "source": "tmpfs"}),
    ]);
    // A device node through the same symlink.
    bundle.config["linux"]["devices"] = json!([
        {"path": "/abs/null-here", "type": "c", "major": 1, "minor": 3, "fileMode": 438}
    ]);
    bundle.save();
    let host_etc = b.sh_ok("ls -A /etc | wc -l");
    let out = rt.run(&["run", "ml1", "--bundle", bundle.path()]);
    let all = text(&out);
    if out.status.success() {
        // Everything landed inside the rootfs, where the container sees it.
        let stdout = String::from_utf8_lossy(&out.stdout);
        for want in [
            "tmpfs-here",
            "bind-here",
            "dotdot",
            "null-here",
            "from the bundle",
        ] {
            assert!(stdout.contains(want), "missing {want}: {all}");
        }
    }
    assert_eq!(
        b.sh_ok(&format!("ls -A {dir}")).trim(),
        "marker",
        "a mount or node was made in the host directory: {all}"
    );
    assert_eq!(b.sh_ok("ls -A /etc | wc -l"), host_etc, "{all}");
    assert!(
        !b.sh("test -e /etc/from-bundle").unwrap().status.success(),
        "{all}"
    );
    // Nothing stayed mounted on the host side either.
    let mounts = b.sh_ok("cat /proc/self/mountinfo");
    assert!(!mounts.contains(&dir), "{mounts}");
}

#[test]
fn state_dir_is_root_only() {
    let Some(b) = berth_box::up_or_skip("state_dir_is_root_only") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let bundle = busybox_bundle("sec-modes", &["sleep", "300"]);
    let out = rt.create("mode1", &bundle, "/tmp/mode1.log");
    assert!(out.status.success(), "{}", text(&out));
    let root = &rt.root;
    let modes = b.sh_ok(&format!(
        "stat -c '%a %n' {root} {root}/mode1 {root}/mode1/state.json {root}/mode1/exec.fifo"
    ));
    let modes: Vec<&str> = modes
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    // Root only: the root and the container's dir 0700,
    // the record 0600, the FIFO 0622 (the init may have changed user).
    assert_eq!(modes, ["700", "700", "600", "622"], "{root}");
    // What an unprivileged user gets.
    let nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups";
    for probe in [
        format!("ls {root}"),
        format!("ls {root}/mode1"),
        format!("cat {root}/mode1/state.json"),
        // A writer of its own on the FIFO would hang `start`.
        format!("test -w {root}/mode1/exec.fifo"),
        format!("{} --root {root} state mode1", common::RUNTIME),
        format!("{} --root {root} start mode1", common::RUNTIME),
    ] {
        let out = b.sh(&format!("{nobody} {probe}")).unwrap();
        assert!(
            !out.status.success(),
            "as nobody, `{probe}` worked: {}",
            text(&out)
        );
    }
    assert_eq!(rt.status("mode1"), "created", "nobody started it");
    rt.ok(&["delete", "mode1"]);
}
