//! What the container sees: new namespaces, the mounts, masked and read-only
//! paths, capabilities, no_new_privs, user mappings, seccomp, hooks, fds.
//! Each test runs `berth-runtime run` in a box and reads the container's view.

mod common;

use common::{busybox_bundle, text, Bundle, Rt};
use serde_json::json;

fn run_in(rt: &Rt, id: &str, bundle: &Bundle) -> String {
    let out = rt.run(&["run", id, "--bundle", bundle.path()]);
    assert!(out.status.success(), "{id}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_namespace_is_new() {
    let Some(b) = berth_box::up_or_skip("every_namespace_is_new") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let kinds = ["pid", "mnt", "uts", "ipc", "net", "cgroup"];
    let script: String = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k};"))
        .collect();
    let bundle = busybox_bundle("ns", &["sh", "-c", &script]);
    let mut b2 = bundle;
    let nss = b2.config["linux"]["namespaces"].as_array_mut().unwrap();
    if !nss.iter().any(|n| n["type"] == "cgroup") {
        nss.push(json!({"type": "cgroup"}));
    }
    b2.save();
    let inside = run_in(&rt, "ns1", &b2);
    let outside = b.sh_ok(&script.replace("/proc/self", "/proc/1"));
    let inside: Vec<&str> = inside.lines().collect();
    let outside: Vec<&str> = outside.lines().collect();
    assert_eq!(inside.len(), kinds.len(), "{inside:?}");
    for (i, k) in kinds.iter().enumerate() {
        assert!(inside[i].starts_with(k), "{}", inside[i]);
        assert_ne!(
            inside[i], outside[i],
            "{k} namespace is shared with the host"
        );
    }
    // pid 1 inside is the container's process.
    let bundle = busybox_bundle("pid1", &["sh", "-c", "echo $$"]);
    assert_eq!(run_in(&rt, "ns2", &bundle).trim(), "1");
}

#[test]
fn mounts_masked_and_readonly_paths() {
    let Some(b) = berth_box::up_or_skip("mounts_masked_and_readonly_paths") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let script = "
        grep -E ' /(proc|dev|dev/pts|dev/shm|dev/mqueue|sys|tmp/t) ' /proc/self/mounts | cut -d' ' -f2,3 | sort;
        echo cmdline=$(wc -c < /proc/cmdline);
        echo firmware=$(ls /sys/firmware | wc -l);
        echo 1 > /proc/sys/kernel/domainname && echo sysctl-writable || echo sysctl-readonly;
        touch /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable || echo sysrq-readonly;
        touch /rootfile 2>/dev/null && echo root-writable || echo root-readonly;
        touch /tmp/t/x && echo tmpfs-writable;
        ls -l /dev/null /dev/zero /dev/urandom /dev/tty | cut -c1;
        readlink /dev/fd; readlink /dev/stdin; readlink /dev/ptmx";
    let mut bundle = busybox_bundle("mounts", &["sh", "-c", script]);
    bundle.config["root"]["readonly"] = json!(true);
    // Masked: a file (reads empty) and a directory (empty). Both exist on
    // every kernel, unlike the default /proc/kcore.
    bundle.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .extend([json!("/proc/cmdline"), json!("/sys/firmware")]);
    bundle.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp/t", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}));
    bundle.save();
    let out = run_in(&rt, "m1", &bundle);
    for want in [
        "/dev tmpfs",
        "/dev/mqueue mqueue",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/proc proc",
        "/sys sysfs",
        "/tmp/t tmpfs",
        "cmdline=0",
        "firmware=0",
        "sysctl-readonly",
        "sysrq-readonly",
        "root-readonly",
        "tmpfs-writable",
        "/proc/self/fd\n/proc/self/fd/0\npts/ptmx",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        out.lines().filter(|l| *l == "c").count() >= 4,
        "device nodes: {out}"
    );
}

fn status_field(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} not in {out}"))
        .trim()
        .to_string()
}

#[test]
fn capabilities_and_no_new_privs_as_specified() {
    let Some(b) = berth_box::up_or_skip("capabilities_and_no_new_privs") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let mut bundle = busybox_bundle("caps", &["cat", "/proc/self/status"]);
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    bundle.config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []
    });
    bundle.config["process"]["noNewPrivileges"] = json!(true);
    bundle.save();
    let out = run_in(&rt, "cap1", &bundle);
    // CAP_CHOWN = bit 0, CAP_KILL = bit 5.
    assert_eq!(status_field(&out, "CapEff"), "0000000000000021");
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000021");
    assert_eq!(status_field(&out, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");

    // A non-root user with no capabilities at all, and no_new_privs off.
    let mut bundle = busybox_bundle("user", &["sh", "-c", "id; cat /proc/self/status"]);
    bundle.config["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]});
    bundle.config["process"]["noNewPrivileges"] = json!(false);
    bundle.config["process"]["capabilities"] = json!({});
    bundle.save();
    let out = run_in(&rt, "cap2", &bundle);
    assert!(out.contains("uid=1000 gid=1000"), "{out}");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
    assert_eq!(status_field(&out, "Groups"), "10 20");
}

#[test]
fn user_namespace_maps_ids() {
    let Some(b) = berth_box::up_or_skip("user_namespace_maps_ids") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let mut bundle = busybox_bundle(
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
        ],
    );
    bundle.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    bundle.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    bundle.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The rootfs belongs to host root, which is unmapped inside: fine for reading.
    // A fresh proc mount is refused in a user namespace when the current /proc
    // has overmounts (the kernel's mount_too_revealing check), and the box
    // mounts /proc/sys read-only over itself: bind the box's /proc instead.
    bundle.config["mounts"][0] =
        json!({"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]});
    bundle.save();
    let out = run_in(&rt, "u1", &bundle);
    let fields: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(fields[1], ["0", "100000", "65536"], "{out}");
    assert_eq!(fields[2], ["0"], "{out}");
}

#[test]
fn seccomp_profile_denies_what_it_should() {
    let Some(b) = berth_box::up_or_skip("seccomp_profile_denies") else {
        return;
    };
    let rt = Rt::new(&b, true);
    // With no_new_privs the program is loaded last; without, early (while
    // the init has CAP_SYS_ADMIN): both from the compiled cache, twice each
    // (the second run finds the program in the cache). Loaded early, a
    // filter also holds for the init's own chdir to its cwd (as runc's):
    // the chdir rule only where it is loaded last.
    for (i, nnp) in [true, true, false, false].into_iter().enumerate() {
        let chdir = match nnp {
            true => json!({"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}),
            false => json!({"names": ["chdir"], "action": "SCMP_ACT_ALLOW"}),
        };
        let mut bundle = busybox_bundle(
            &format!("seccomp{i}"),
            &[
                "sh",
                "-c",
                "mkdir /tmp/d 2>&1 || echo mkdir-denied; cd /tmp 2>&1 || echo cd-denied",
            ],
        );
        bundle.config["process"]["noNewPrivileges"] = json!(nnp);
        bundle.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                chdir
            ]
        });
        bundle.save();
        let out = run_in(&rt, &format!("s{i}"), &bundle);
        assert!(
            out.contains("Operation not permitted") && out.contains("mkdir-denied"),
            "nnp {nnp}: {out}"
        );
        assert_eq!(
            out.contains("Function not implemented") && out.contains("cd-denied"),
            nnp,
            "nnp {nnp}, errnoRet 38: {out}"
        );
    }
}

#[test]
fn hooks_run_in_order_with_state() {
    let Some(b) = berth_box::up_or_skip("hooks_run_in_order") else {
        return;
    };
    let rt = Rt::new(&b, true);
    let mut bundle = busybox_bundle("hooks", &["true"]);
    let log = bundle.dir.join("hooks.log");
    let hook = |name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!(
            "s=$(cat); case \"$s\" in *'\"id\":\"h1\"'*) ;; *) exit 9;; esac; echo {name} >> {}", log.display())]})
    };
    bundle.config["hooks"] = json!({
        "createRuntime": [hook("createRuntime")],
        "createContainer": [hook("createContainer")],
        "startContainer": [hook("startContainer")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")],
    });
    // The startContainer hook runs inside the container: give it the log dir.
    bundle.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": bundle.dir, "type": "bind", "source": bundle.dir, "options": ["rbind"]
    }));
    bundle.save();
    let out = rt.run(&["run", "h1", "--bundle", bundle.path()]);
    assert!(out.status.success(), "{}", text(&out));
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        order,
        "createRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );
}

#[test]
fn no_host_fd_reaches_the_container() {
    let Some(b) = berth_box::up_or_skip("no_host_fd_reaches_the_container") else {
        return;
    };
    let rt = Rt::new(&b, true);
    // The container lists its fds; the runtime is started with an extra,
    // inheritable fd 7 open on a host file.
    let bundle = busybox_bundle(
        "fds",
        &[
            "sh",
            "-c",
            "readlink /proc/1/cwd; cd /proc/self/fd && echo *",
        ],
    );
    let argv = rt.argv(&["run", "f1", "--bundle", bundle.path()]);
    let out = b
        .sh(&format!(
            "exec 7</etc/hostname; {}",
            common::shell_join(&argv)
        ))
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("/"),
        "the init's cwd is inside the container"
    );
    // sh's own fds 0-2, plus the one `echo *` reads the directory with.
    let fds: Vec<u32> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(|f| f.parse().unwrap())
        .collect();
    assert!(
        fds.iter().all(|f| *f <= 3),
        "host fds visible inside: {fds:?}"
    );
}
