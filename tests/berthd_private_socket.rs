//! berthd's private socket (/run/berth/.private, src/private_socket.rs): root's
//! Manager calls peer to peer, their side effects (container objects,
//! ContainerNew and the rest) on the bus for every subscriber, nobody but
//! root let in — not even when the socket's mode would allow it — nothing
//! kept per connection once it closes, and berthctl's wait carried across a
//! berthd restart.
//!
//! The clients run in the box: zbus's server handshake refuses a peer whose
//! SO_PEERCRED pid is 0, which is what a client in an outer pid namespace is.

mod common;
#[allow(unused_imports)]
use common::*;

use std::sync::mpsc;
use std::time::Duration;

/// The id of each ContainerNew on the bus, as it arrives.
fn container_news(b: &berth_box::SystemdBox) -> mpsc::Receiver<String> {
    let conn = bus(b).unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(MANAGER)
        .unwrap()
        .member("ContainerNew")
        .unwrap()
        .build();
    let iter = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(256)).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _conn = conn;
        for msg in iter.flatten() {
            if let Ok((id, _)) = msg
                .body()
                .deserialize::<(String, zbus::zvariant::OwnedObjectPath)>()
            {
                if tx.send(id).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn fds(b: &berth_box::SystemdBox) -> usize {
    berthd_usage(b).1
}

#[test]
fn private_socket_serves_root_and_no_one_else() {
    let Some(b) = berth_box::up_or_skip("private_socket_serves_root_and_no_one_else") else {
        return;
    };
    install_berthd(&b, "");
    let c = patient_bus(&b);
    let m = manager(&c);
    assert_eq!(
        b.sh_ok("stat -c '%a %U' /run/berth/.private").trim(),
        "600 root"
    );
    let news = container_news(&b);
    let bundle = busybox_bundle("d-private", &["true"]);
    let dbus_bench = std::path::Path::new(BERTHD)
        .with_file_name("examples")
        .join("dbus_bench");
    let bench = |who: &str, prefix: &str| {
        b.sh(&format!(
            "{who} {} --bundle {} --iterations 2 --prefix {prefix} --address private",
            dbus_bench.display(),
            bundle.path()
        ))
        .unwrap()
    };

    // Root: whole lifecycles peer to peer; the bus saw each container made.
    let out = bench("", "p");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("RESULT n=2 "),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in ["p-0-0", "p-0-1"] {
        let got = news.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, want, "ContainerNew on the bus");
    }

    // Anyone else: no connection, nothing made — also when the socket's
    // mode would let them in (berthd checks the peer's uid itself).
    let nobody = "setpriv --reuid 65534 --regid 65534 --clear-groups";
    assert!(!bench(nobody, "n").status.success());
    b.sh_ok("chmod 711 /run/berth && chmod 666 /run/berth/.private");
    let out = bench(nobody, "n");
    b.sh_ok("chmod 700 /run/berth && chmod 600 /run/berth/.private");
    assert!(!out.status.success(), "a non-root peer was served");
    assert!(m.list_containers().unwrap().is_empty());
    assert!(b
        .sh_ok("journalctl -u berthd --no-pager -o cat")
        .contains("private socket: refused a peer that is not root"));

    // Nothing kept per connection: 30 berthctl calls, each its own.
    let ctl = berthctl();
    b.sh_ok(&format!("{ctl} version"));
    let before = fds(&b);
    b.sh_ok(&format!(
        "for i in $(seq 30); do {ctl} version >/dev/null; done"
    ));
    // Each peer's task ends once its connection has (a slow machine may
    // take a moment to get there).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fds(&b) != before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fds(&b), before, "berthd's fds after 30 private connections");

    // berthctl wait on the private socket outlives a berthd restart.
    let slow = busybox_bundle("d-private-slow", &["sh", "-c", "sleep 2; exit 5"]);
    let _: zbus::zvariant::OwnedObjectPath =
        call(&c, "CreateContainer", &("w1", slow.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("w1",)).unwrap();
    let waited = b.sh_ok(&format!(
        "{ctl} wait w1 > /tmp/w1.out 2>&1 & w=$!; sleep 0.5; systemctl restart berthd; \
         wait $w; echo \"rc=$? $(cat /tmp/w1.out)\""
    ));
    assert_eq!(waited.trim(), "rc=0 5", "berthctl wait across the restart");
    let c = bus(&b).unwrap();
    let () = call(&c, "DeleteContainer", &("w1", true)).unwrap();
}
