//! berth inside systemd's own tooling, in one box: containers as machined
//! machines (machinectl list/status/terminate/kill), the generator that turns
//! /etc/berth/containers/NAME.toml into berth-NAME.service, socket
//! activation (a .socket unit's listening fd served from inside a container)
//! and `berthctl auto-update` against a loopback registry.

mod common;
#[allow(unused_imports)]
use common::*;

use std::time::{Duration, Instant};

use berth_box::SystemdBox;

#[path = "systemd/autoupdate.rs"]
mod autoupdate;
#[path = "systemd/generator.rs"]
mod generator;
#[path = "systemd/private_socket.rs"]
mod private_socket;
#[path = "systemd/sockets.rs"]
mod sockets;

/// `berthctl inspect ID` as JSON (its first and only entry).
pub fn inspect(b: &SystemdBox, id: &str) -> serde_json::Value {
    let out = ctl_ok(b, &format!("inspect {id}"));
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].take()
}

/// Polls `check` for up to 20 s.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The names `machinectl list` shows.
fn machines(b: &SystemdBox) -> Vec<String> {
    b.sh_ok("machinectl list --no-legend --no-pager | awk '{print $1}'")
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn machinectl_generated_units_socket_activation_and_auto_update() {
    let Some(b) = berth_box::up_or_skip("systemd_depth") else {
        return;
    };
    install_berthd(&b, "");
    let t0 = Instant::now();
    machined(&b);
    eprintln!("machined: {:?}", t0.elapsed());
    let t0 = Instant::now();
    generator::generator(&b);
    eprintln!("generator: {:?}", t0.elapsed());
    let t0 = Instant::now();
    sockets::socket_activation(&b);
    eprintln!("socket activation: {:?}", t0.elapsed());
    let t0 = Instant::now();
    autoupdate::auto_update(&b);
    eprintln!("auto-update: {:?}", t0.elapsed());
}

#[test]
fn scopes_over_systemds_private_socket_across_daemon_reexec() {
    let Some(b) = berth_box::up_or_skip("systemd_private_socket") else {
        return;
    };
    install_berthd(&b, "");
    private_socket::across_reexec(&b);
}

fn machined(b: &SystemdBox) {
    // sh as the container's pid 1 ends on SIGTERM only through its trap (a
    // pid 1 ignores signals it has no handler for).
    let bundle = busybox_bundle(
        "sysd-mach",
        &["sh", "-c", "trap 'exit 7' TERM; while :; do sleep 1; done"],
    );
    let bp = bundle.path();
    let t0 = Instant::now();
    ctl_ok(b, &format!("run -d --name mach1 --bundle {bp}"));
    eprintln!("run -d with registration: {:?}", t0.elapsed());
    ctl_ok(b, &format!("run -d --name my_box --bundle {bp}"));
    // Registered in the background, right after Start's reply.
    eventually("two machines", || machines(b).len() == 2);
    let list = machines(b);
    assert!(list.contains(&"mach1".to_string()), "{list:?}");
    // machined refuses `_`: the name is mapped (machined.rs machine_name).
    let mapped = list
        .iter()
        .find(|m| m.starts_with("my-box-"))
        .unwrap_or_else(|| panic!("no mapped machine for my_box: {list:?}"))
        .clone();
    assert_eq!(mapped.len(), "my-box-".len() + 8, "{mapped}");

    let status = b.sh_ok("machinectl status mach1 --no-pager");
    let pid = inspect(b, "mach1")["Pid"].as_u64().unwrap();
    assert!(status.contains("Unit: berth-mach1.scope"), "{status}");
    assert!(status.contains(&format!("Leader: {pid} (sh)")), "{status}");
    assert!(
        status.contains("Service: berth; class container"),
        "{status}"
    );
    assert!(status.contains("sleep 1"), "processes listed: {status}");
    let props = b.sh_ok("machinectl show mach1 -p Class -p Unit -p Leader -p RootDirectory");
    assert!(
        props.contains(&format!("RootDirectory={bp}/rootfs")),
        "{props}"
    );

    // terminate stops the scope: SIGTERM, the trap's exit 7, recorded.
    b.sh_ok("machinectl terminate mach1");
    let (code, out, err) = ctl(b, "wait mach1");
    assert_eq!(code, 0, "{out}{err}");
    let v = inspect(b, "mach1");
    assert_eq!(
        (v["Status"].as_str(), v["ExitCode"].as_i64()),
        (Some("stopped"), Some(7)),
        "{v}"
    );
    eventually("mach1 unregistered", || {
        !machines(b).contains(&"mach1".into())
    });

    // kill: the signal reaches the container, berth records it.
    b.sh_ok(&format!("machinectl kill --signal=KILL {mapped}"));
    ctl_ok(b, "wait my_box");
    let v = inspect(b, "my_box");
    assert_eq!(v["ExitSignal"].as_i64(), Some(9), "{v}");
    eventually("my_box unregistered", || machines(b).is_empty());
    ctl_ok(b, "rm mach1 my_box");

    // A container that stops by itself leaves machined's list too.
    ctl_ok(b, &format!("run -d --name mach2 --bundle {bp}"));
    eventually("mach2 registered", || machines(b).contains(&"mach2".into()));
    ctl_ok(b, "stop -t 5 mach2");
    eventually("mach2 unregistered", || machines(b).is_empty());
    ctl_ok(b, "rm mach2");

    // A container that ends within REGISTER_AFTER (100 ms) is never a
    // machine: no registration, no unregistration. machined logs "New
    // machine NAME." for each machine it takes (mach2's shows the grep works).
    let quick = busybox_bundle("sysd-quick", &["sh", "-c", "usleep 30000"]);
    ctl_ok(
        b,
        &format!("run --rm --name quick1 --bundle {}", quick.path()),
    );
    let news = |name: &str| {
        b.sh_ok(&format!(
            "journalctl -u systemd-machined -o cat | grep -c 'New machine {name}\\.' || true"
        ))
        .trim()
        .to_string()
    };
    assert_eq!(news("mach2"), "1");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(news("quick1"), "0", "a 30 ms container was registered");

    // Turned off in the config file: containers run, no machines.
    b.sh_ok(
        "mkdir -p /etc/berth && echo 'register_machines = false' > /etc/berth/berthd.toml && \
         systemctl restart berthd",
    );
    ctl_ok(b, &format!("run -d --name mach3 --bundle {bp}"));
    assert_eq!(inspect(b, "mach3")["Status"], "running");
    // Long enough for a registration to have happened (one takes ~3 ms).
    std::thread::sleep(Duration::from_millis(500));
    assert!(machines(b).is_empty(), "{:?}", machines(b));
    ctl_ok(b, "rm -f mach3");

    // No machined at all: berth works, and says so once.
    b.sh_ok(
        "rm /etc/berth/berthd.toml && systemctl stop systemd-machined && \
         systemctl mask systemd-machined && systemctl restart berthd",
    );
    for i in 0..2 {
        ctl_ok(b, &format!("run -d --name nomach{i} --bundle {bp}"));
        assert_eq!(inspect(b, &format!("nomach{i}"))["Status"], "running");
    }
    let said = || {
        b.sh_ok("journalctl -u berthd -o cat | grep -c 'systemd-machined is not available' || true")
            .trim()
            .to_string()
    };
    eventually("the absence logged", || said() != "0");
    std::thread::sleep(Duration::from_millis(500));
    let log = b.sh_ok("journalctl -u berthd -o cat | tail -20");
    assert_eq!(said(), "1", "{log}");
    ctl_ok(b, "rm -f nomach0 nomach1");
    b.sh_ok("systemctl unmask systemd-machined");
}
