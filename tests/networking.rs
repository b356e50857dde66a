//! Networking end to end, in a box with its own network namespace (nothing
//! here touches the host's): CNI networks, published ports reached from the
//! box, containers finding each other by name, none/host/container modes,
//! the generated files, named errors that leave nothing behind, a berthd
//! restart that keeps networking working, and a kill storm that leaks no
//! veth, lease, rule or namespace.

mod common;
#[allow(unused_imports)]
use common::*;

use std::collections::HashMap;

use zbus::zvariant::Value;

/// The box's "own IP", as a host's NIC: a veth to a namespace "ext" (in the
/// box), which stands for the world outside.
const BOX_IP: &str = "192.0.2.10";
const EXT_IP: &str = "192.0.2.20";

fn networks(c: &zbus::blocking::Connection) -> berth_client::NetworksProxyBlocking<'static> {
    berth_client::NetworksProxyBlocking::new(c).expect("Networks proxy")
}

/// Creates (not starts) container `id` from local/bb:1 with `args` and
/// `opts`.
fn create(
    c: &zbus::blocking::Connection,
    id: &str,
    args: &[&str],
    opts: &[(&'static str, Value<'static>)],
) -> zbus::Result<zbus::zvariant::OwnedObjectPath> {
    let mut o: HashMap<&str, Value> = opts.iter().cloned().collect();
    o.insert("image", Value::from("local/bb:1"));
    o.insert(
        "args",
        Value::from(args.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
    );
    manager(c).create_container(id, "", o)
}

fn run(
    c: &zbus::blocking::Connection,
    id: &str,
    args: &[&str],
    opts: &[(&'static str, Value<'static>)],
) {
    create(c, id, args, opts).unwrap_or_else(|e| panic!("creating {id}: {}", error_name(e)));
    manager(c).start_container(id).unwrap();
}

/// Runs a container to its end and returns its output (the journal).
fn output(
    b: &berth_box::SystemdBox,
    c: &zbus::blocking::Connection,
    id: &str,
    args: &[&str],
    opts: &[(&'static str, Value<'static>)],
) -> String {
    run(c, id, args, opts);
    manager(c).wait_container(id).unwrap();
    let out = ctl_ok(b, &format!("logs {id}"));
    manager(c).delete_container(id, false).unwrap();
    out
}

fn strs(v: &[&str]) -> Value<'static> {
    Value::from(v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

/// What networking has made in the box: veths (host side), CNI cache
/// entries, host-local leases, pinned namespaces, portmap's per-container
/// DNAT chains, and NAT rules (one per network, the default's included).
fn made(b: &berth_box::SystemdBox) -> String {
    b.sh_ok(
        "echo veths $(ip -o link show type veth | grep -v boxeth | grep -vc boxpeer); \
         echo cache $(ls /var/lib/berth/cni/results | wc -l); \
         echo leases $(ls /var/lib/berth/cni/networks/*/ 2>/dev/null | grep -c '^[0-9a-f.:]*[0-9]$'); \
         echo netns $(ls /run/berth-net/netns | wc -l); \
         echo dnat $(iptables -t nat -S | grep -c '^-N CNI-DN-' || true)",
    )
}

/// `made` with `n` containers attached, `dnat` of them publishing ports.
fn counts(n: usize, dnat: usize) -> String {
    format!("veths {n}\ncache {n}\nleases {n}\nnetns {n}\ndnat {dnat}\n")
}

#[test]
fn networks_end_to_end() {
    let Some(b) = berth_box::up_or_skip("networks_end_to_end") else {
        return;
    };
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        assert!(
            std::env::var_os("BERTH_REQUIRE_BOX").is_none(),
            "containernetworking-plugins is missing (scripts/deps installs it)"
        );
        println!("SKIP networks_end_to_end: no CNI plugins in /usr/lib/cni");
        return;
    }
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    b.sh_ok(&format!(
        "ip netns add ext && ip link add boxeth type veth peer name exteth netns ext && \
         ip addr add {BOX_IP}/24 dev boxeth && ip link set boxeth up && \
         ip -n ext addr add {EXT_IP}/24 dev exteth && ip -n ext link set exteth up && \
         ip -n ext link set lo up"
    ));
    let c = bus(&b).unwrap();

    // The default network: published TCP ports reached on the box's
    // loopback and its own address; UDP published too.
    let web = ["httpd", "-f", "-p", "80", "-h", "/etc"];
    run(
        &c,
        "web",
        &web,
        &[(
            "ports",
            strs(&["8080:80", "127.0.0.1:8081:80", "9090:9090/udp"]),
        )],
    );
    let wget = |url: &str| {
        b.sh_ok(&format!(
            "for i in $(seq 50); do wget -T 2 -qO- {url} && break; sleep 0.1; done"
        ))
    };
    assert_eq!(wget("http://127.0.0.1:8080/hostname"), "web\n");
    assert_eq!(wget(&format!("http://{BOX_IP}:8080/hostname")), "web\n");
    assert_eq!(wget("http://127.0.0.1:8081/hostname"), "web\n");
    let obj = container_object(&c, &manager(&c).get_container("web").unwrap());
    assert_eq!(obj.network().unwrap(), "berth");
    assert!(
        obj.ip_address().unwrap().starts_with("10.90."),
        "{}",
        obj.ip_address().unwrap()
    );
    assert_eq!(obj.gateway().unwrap(), "10.90.0.1");
    assert_eq!(obj.mac_address().unwrap().len(), 17);
    assert_eq!(
        obj.ports().unwrap()[0],
        (String::new(), 8080, 80, "tcp".into())
    );
    // UDP: busybox has no UDP tool, so the receiver is ours, in the
    // container's network namespace, and so is the sender, in the box's.
    run(
        &c,
        "udp",
        &["sleep", "60"],
        &[("ports", strs(&["9091:9090/udp"]))],
    );
    let root = format!("/proc/{}/root", b.init_pid());
    let rx = in_netns(&format!("{root}/run/berth-net/netns/udp"), || {
        std::net::UdpSocket::bind("0.0.0.0:9090").unwrap()
    });
    rx.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let box_ns = format!("/proc/{}/ns/net", b.init_pid());
    let mut got = [0u8; 16];
    let received = (0..25).find_map(|_| {
        in_netns(&box_ns, || {
            let tx = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            tx.send_to(b"datagram", (BOX_IP, 9091)).unwrap();
        });
        rx.recv(&mut got).ok()
    });
    assert_eq!(
        received.map(|n| &got[..n]),
        Some(&b"datagram"[..]),
        "UDP {BOX_IP}:9091 -> udp:9090"
    );

    // Outbound: a container reaches "outside" (ext) masqueraded as the box.
    let ext = format!("/proc/{}/root/run/netns/ext", b.init_pid());
    let listener = in_netns(&ext, || {
        std::net::TcpListener::bind((EXT_IP, 7000)).unwrap()
    });
    let url = format!("http://{EXT_IP}:7000/");
    listener.set_nonblocking(true).unwrap();
    // (busybox wget -T crashes: timeout(1) bounds it instead, under a sh as
    // pid 1 — a pid 1 ignores the TERM it has no handler for.)
    let cmd = format!("timeout 3 wget -qO- {url}; true");
    let out = output(&b, &c, "out", &["sh", "-c", &cmd], &[]);
    let peer = (0..100).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        listener
            .accept()
            .ok()
            .map(|(_, peer)| peer.ip().to_string())
    });
    assert_eq!(
        peer.as_deref(),
        Some(BOX_IP),
        "not masqueraded (wget said {out:?})"
    );

    // A user network: containers reach each other by name.
    let app = networks(&c)
        .create_network(
            "app",
            HashMap::from([("subnet", Value::from("10.92.0.0/24"))]),
        )
        .unwrap();
    assert!(app.as_str().ends_with("/network/app"));
    run(&c, "api", &web, &[("network", Value::from("app"))]);
    let out = output(
        &b,
        &c,
        "client",
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do wget -qO- http://api:80/hostname && break; sleep 0.2; done",
        ],
        &[("network", Value::from("app"))],
    );
    assert_eq!(out, "api\n");

    // none: only lo. host: the box's interfaces. container: web's namespace.
    let none = output(
        &b,
        &c,
        "n",
        &["ip", "-o", "link"],
        &[("network", Value::from("none"))],
    );
    assert!(
        none.contains(": lo:") && none.lines().count() == 1,
        "{none}"
    );
    let host = output(
        &b,
        &c,
        "h",
        &["ip", "-o", "link"],
        &[("network", Value::from("host"))],
    );
    assert!(host.contains("boxeth"), "{host}");
    let joined = output(
        &b,
        &c,
        "j",
        &["wget", "-qO-", "http://127.0.0.1:80/hostname"],
        &[("network", Value::from("container:web"))],
    );
    assert_eq!(joined, "web\n");

    // The files berth writes, bound over the image's.
    let files = output(
        &b,
        &c,
        "f",
        &[
            "sh",
            "-c",
            "hostname; cat /etc/hostname /etc/resolv.conf /etc/hosts",
        ],
        &[
            ("hostname", Value::from("h1")),
            ("dns", strs(&["192.0.2.53"])),
            ("dns_search", strs(&["example.test"])),
            ("add_hosts", strs(&["db:192.0.2.7"])),
        ],
    );
    for want in [
        "h1\nh1\n",
        "search example.test\n",
        "nameserver 192.0.2.53\n",
        "192.0.2.7\tdb\n",
        "\th1 f\n",
    ] {
        assert!(files.contains(want), "{want:?} in {files}");
    }

    // IPv6, when the plugins can here.
    networks(&c)
        .create_network(
            "six",
            HashMap::from([("subnet6", Value::from("fd00:b::/64"))]),
        )
        .unwrap();
    let six = output(
        &b,
        &c,
        "six",
        &["ip", "-6", "-o", "addr", "show", "eth0"],
        &[("network", Value::from("six"))],
    );
    if six.contains("fd00:b::") {
        println!("IPv6: {}", six.trim());
    } else {
        println!("SKIP IPv6: the container got no address in fd00:b::/64: {six}");
    }

    bad_input(&b, &c);
    berthctl_and_units(&b);

    // berthd restarts: running containers keep their network.
    let before = main_pid(&b);
    b.sh_ok("systemctl restart berthd");
    wait_back(&b, &c, before);
    assert_eq!(wget("http://127.0.0.1:8080/hostname"), "web\n");

    // Teardown: removal leaves nothing (the three runners are still up).
    assert_eq!(made(&b), counts(3, 2));
    for id in ["web", "udp", "api"] {
        manager(&c).delete_container(id, true).unwrap();
    }
    assert_eq!(made(&b), counts(0, 0));
    let e = networks(&c).remove_network("app", false);
    assert!(e.is_ok(), "{e:?}");
    assert_eq!(
        networks(&c).prune_networks().unwrap(),
        vec!["six".to_string()]
    );
    assert!(!b.sh_ok("ls /etc/berth/networks").contains("app.conflist"));
    // Removed networks take their bridges (the plugin leaves them) and NAT
    // rules; the default network's stay.
    let bridges = b.sh_ok("ip -o link show type bridge | cut -d: -f2");
    assert_eq!(bridges.trim(), "berth0", "bridges left: {bridges}");
    let nat = b.sh_ok("iptables -t nat -S POSTROUTING | grep -o 'berth network [a-z0-9]*' || true");
    assert_eq!(nat, "berth network berth\n");
}

/// The same through berthctl (podman's flags and verbs) and a berth@ unit's
/// TOML.
fn berthctl_and_units(b: &berth_box::SystemdBox) {
    ctl_ok(b, "network create --subnet 10.95.0.0/24 front");
    let ls = ctl_ok(b, "network ls");
    assert!(
        ls.contains("front") && ls.contains("10.95.0.0/24") && ls.contains("berth0"),
        "{ls}"
    );
    ctl_ok(b, "run -d --name w2 --network front -p 8082:80 --hostname www --add-host db:192.0.2.8 local/bb:1 httpd -f -p 80 -h /etc");
    assert_eq!(ctl_ok(b, "port w2"), "80/tcp -> 0.0.0.0:8082\n");
    let ps = ctl_ok(b, "ps --format '{{.Names}} {{.Ports}}'");
    assert!(ps.contains("w2 0.0.0.0:8082->80/tcp\n"), "{ps}");
    assert_eq!(b.sh_ok("for i in $(seq 50); do wget -qO- http://127.0.0.1:8082/hostname && break; sleep 0.1; done"), "www\n");
    let ip = ctl_ok(
        b,
        "inspect --format '{{.NetworkSettings.IPAddress}} {{.NetworkSettings.Hostname}}' w2",
    );
    assert!(ip.starts_with("10.95.0.") && ip.ends_with(" www\n"), "{ip}");
    let inspect = ctl_ok(b, "network inspect front");
    assert!(
        inspect.contains("\"Id\": \"w2\"") && inspect.contains("10.95.0."),
        "{inspect}"
    );
    let (code, _, err) = ctl(b, "network rm front");
    assert!(code == 125 && err.contains("InUse"), "{code} {err}");
    b.sh_ok(
        "mkdir -p /etc/berth/containers && printf 'image = \"local/bb:1\"\\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/etc\"]\\nnetwork = \"front\"\\nports = [\"8083:80\"]\\nhostname = \"unit\"\\n' > /etc/berth/containers/u1.toml && systemctl start berth@u1"
    );
    assert_eq!(b.sh_ok("for i in $(seq 50); do wget -qO- http://127.0.0.1:8083/hostname && break; sleep 0.1; done"), "unit\n");
    b.sh_ok("systemctl stop berth@u1");
    ctl_ok(b, "network rm -f front");
    let ps = ctl_ok(b, "ps -a --format '{{.Names}}'");
    assert!(
        !ps.contains("w2"),
        "network rm -f removes its containers: {ps}"
    );
}

/// Every bad input: a named error, and nothing made.
fn bad_input(b: &berth_box::SystemdBox, c: &zbus::blocking::Connection) {
    let before = made(b);
    let err = |r: zbus::Result<zbus::zvariant::OwnedObjectPath>| error_name(r.unwrap_err());
    let e = err(create(
        c,
        "dup",
        &["sleep", "1"],
        &[("ports", strs(&["8080:81"]))],
    ));
    assert!(
        e.contains("AlreadyExists") && e.contains("container web"),
        "{e}"
    );
    let e = err(create(
        c,
        "range",
        &["sleep", "1"],
        &[("ports", strs(&["70000:80"]))],
    ));
    assert!(
        e.contains("InvalidArgument") && e.contains("out of range"),
        "{e}"
    );
    let e = err(create(
        c,
        "nonet",
        &["sleep", "1"],
        &[("network", Value::from("nosuch"))],
    ));
    assert!(e.contains("NotFound") && e.contains("nosuch"), "{e}");
    let e = err(create(
        c,
        "hostports",
        &["sleep", "1"],
        &[("network", Value::from("host")), ("ports", strs(&["1:1"]))],
    ));
    assert!(e.contains("InvalidArgument"), "{e}");
    for (subnet, why) in [
        ("10.92.0.0/25", "overlaps"),
        ("10.1.2.3/24", "host bits"),
        ("banana", "CIDR"),
    ] {
        let e = networks(c)
            .create_network("bad", HashMap::from([("subnet", Value::from(subnet))]))
            .unwrap_err();
        let e = error_name(e);
        assert!(
            e.contains("InvalidArgument") && e.contains(why),
            "{subnet}: {e}"
        );
    }
    let e = error_name(
        networks(c)
            .create_network("app", HashMap::new())
            .unwrap_err(),
    );
    assert!(e.contains("AlreadyExists"), "{e}");
    let e = error_name(networks(c).remove_network("app", false).unwrap_err());
    assert!(e.contains("InUse") && e.contains("api"), "{e}");
    // A plugin's own failure: host-local has no address left in a /30.
    networks(c)
        .create_network(
            "tiny",
            HashMap::from([("subnet", Value::from("10.94.0.0/30"))]),
        )
        .unwrap();
    run(
        c,
        "t1",
        &["sleep", "30"],
        &[("network", Value::from("tiny"))],
    );
    let e = err(create(
        c,
        "t2",
        &["sleep", "1"],
        &[("network", Value::from("tiny"))],
    ));
    assert!(
        e.contains("NetworkError") && e.contains("no IP addresses available"),
        "{e}"
    );
    manager(c).delete_container("t1", true).unwrap();
    networks(c).remove_network("tiny", false).unwrap();
    // A missing plugin: berthd pointed at an empty plugin directory.
    let pid = main_pid(b);
    b.sh_ok("mkdir -p /run/systemd/system/berthd.service.d && printf '[Service]\\nEnvironment=CNI_PATH=/nonexistent\\n' > /run/systemd/system/berthd.service.d/cni.conf && systemctl daemon-reload && systemctl restart berthd");
    wait_back(b, c, pid);
    let e = err(create(c, "noplugin", &["sleep", "1"], &[]));
    assert!(
        e.contains("NetworkError") && e.contains("\"bridge\" not found in /nonexistent"),
        "{e}"
    );
    let pid = main_pid(b);
    b.sh_ok("rm /run/systemd/system/berthd.service.d/cni.conf && systemctl daemon-reload && systemctl restart berthd");
    wait_back(b, c, pid);
    let ids: Vec<String> = manager(c)
        .list_containers()
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    for id in ["dup", "range", "nonet", "hostports", "t2", "noplugin"] {
        assert!(!ids.contains(&id.to_string()), "{id} left a record");
    }
    assert_eq!(made(b), before, "bad input left networking behind");
}

/// kill -9 of berthd at seeded instants during networked creates and
/// deletes: after each restart, exactly what the records hold exists.
#[test]
fn kill_storm_leaks_nothing() {
    let Some(b) = berth_box::up_or_skip("kill_storm_leaks_nothing") else {
        return;
    };
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        println!("SKIP kill_storm_leaks_nothing: no CNI plugins in /usr/lib/cni");
        return;
    }
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    let c = bus(&b).unwrap();
    let seed = std::env::var("BERTH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_ed17);
    println!("kill_storm_leaks_nothing: BERTH_SEED={seed}");
    let mut rng = Rng::new(seed);
    for round in 0..8 {
        // Creates and deletes in flight, then the kill.
        let ctl = berthctl();
        let delay_ms = rng.below(40);
        b.sh_ok(&format!(
            "for i in 1 2 3; do ({ctl} create --name s{round}-$i local/bb:1 sleep 60 >/dev/null 2>&1 &); done; \
             ({ctl} rm -f s{}-1 >/dev/null 2>&1 &); sleep 0.0{delay_ms:02}; kill -9 $(systemctl show -P MainPID berthd)",
            round.max(1) - 1
        ));
        let pid = main_pid(&b);
        let _ = b.sh("systemctl reset-failed berthd; systemctl start berthd");
        wait_back(&b, &c, pid);
        // Every record with a network has its parts; nothing else exists.
        let recs = manager(&c).list_containers().unwrap();
        let held = recs.len();
        assert_eq!(
            made(&b),
            counts(held, 0),
            "round {round} (seed {seed}): {held} records: {recs:?}"
        );
    }
    for (id, _, _) in manager(&c).list_containers().unwrap() {
        manager(&c).delete_container(&id, true).unwrap();
    }
    assert_eq!(made(&b), counts(0, 0));
}
