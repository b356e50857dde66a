//! What the berthd/berthctl integration tests share: berthd installed as a
//! systemd service (this build's binaries) in a box, a connection to the
//! box's system bus, busybox bundles, typed calls, berthctl runs.
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::HashMap;
use std::path::PathBuf;

use berth_box::bundle::Bundle;
use berth_box::SystemdBox;
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, Value};

pub const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
pub const DEST: &str = "io.berth.Berth1";
pub const PATH: &str = "/io/berth/Berth1";
pub const MANAGER: &str = "io.berth.Berth1.Manager";
pub const CONTAINER: &str = "io.berth.Berth1.Container";

/// What ListContainers returns: (id, status, object path).
pub type List = Vec<(String, String, OwnedObjectPath)>;

/// Installs the bus policy, the polkit actions and the units (berthd's
/// ExecStart = the berthd just built, the shim and monitor beside it;
/// berth@'s = the berthctl beside it), runs `extra` (shell, e.g. a drop-in),
/// and starts berthd.
pub fn install_berthd(b: &SystemdBox, extra: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let ctl = PathBuf::from(BERTHD).with_file_name("berthctl");
    let ctl = ctl.display();
    b.sh_ok(&format!(
        "cp {root}/dbus/system.d/io.berth.Berth1.conf /etc/dbus-1/system.d/ && \
         busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig && \
         mkdir -p /usr/share/polkit-1/actions && \
         cp {root}/dbus/polkit/io.berth.berth1.policy /usr/share/polkit-1/actions/ && \
         sed 's|^ExecStart=.*|ExecStart={BERTHD}|' {root}/units/berthd.service > /run/systemd/system/berthd.service && \
         sed 's|^ExecStart=/usr/bin/berthctl|ExecStart={ctl}|' '{root}/units/berth@.service' > '/run/systemd/system/berth@.service' && \
         cp {root}/units/berth.slice /run/systemd/system/ && {extra} true && \
         systemctl daemon-reload && systemctl start berthd"
    ));
}

/// A connection to the box's system bus, through /proc/<box init>/root.
pub fn bus(b: &SystemdBox) -> zbus::Result<zbus::blocking::Connection> {
    let addr = format!(
        "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
        b.init_pid()
    );
    zbus::blocking::connection::Builder::address(addr.as_str())?.build()
}

/// A connection to the box's bus whose calls may take a minute (WaitExec,
/// WaitContainer of slow containers).
pub fn patient_bus(b: &SystemdBox) -> zbus::blocking::Connection {
    let addr = format!(
        "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
        b.init_pid()
    );
    zbus::blocking::connection::Builder::address(addr.as_str())
        .unwrap()
        .method_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

/// xorshift64*: small, seeded, the same everywhere (a failing seed replays).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

/// berthd installed and started, and a connection to its bus.
pub fn berthd(b: &SystemdBox) -> zbus::blocking::Connection {
    install_berthd(b, "");
    bus(b).unwrap()
}

/// berthd's MainPID (0 when it is not running).
pub fn main_pid(b: &SystemdBox) -> u32 {
    b.sh_ok("systemctl show -P MainPID berthd")
        .trim()
        .parse()
        .unwrap_or(0)
}

/// (VmRSS in kB, open fds) of berthd's main process.
pub fn berthd_usage(b: &SystemdBox) -> (u64, usize) {
    let pid = main_pid(b);
    let out = b.sh_ok(&format!(
        "awk '/^VmRSS/ {{print $2}}' /proc/{pid}/status; ls /proc/{pid}/fd | wc -l"
    ));
    let mut l = out.lines();
    (
        l.next().unwrap().trim().parse().unwrap(),
        l.next().unwrap().trim().parse().unwrap(),
    )
}

pub fn busybox_bundle(name: &str, args: &[&str]) -> Bundle {
    let mut config = serde_json::to_value(berth_init::spec::default_spec(false)).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(args);
    Bundle::create(name, config)
}

/// The same with a writable root.
pub fn busybox_bundle_writable(name: &str, args: &[&str]) -> Bundle {
    let mut config = serde_json::to_value(berth_init::spec::default_spec(false)).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(args);
    config["root"]["readonly"] = json!(false);
    Bundle::create(name, config)
}

/// Waits (20 s at most) until `unit` is active in the box.
pub fn wait_active(b: &SystemdBox, unit: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let state = b.sh_ok(&format!("systemctl is-active {unit} || true"));
        if state.trim() == "active" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{unit} is {state}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits (30 s at most) for a berthd that is not `old` and answers; how long
/// it took.
pub fn wait_back(b: &SystemdBox, c: &zbus::blocking::Connection, old: u32) -> std::time::Duration {
    let t0 = std::time::Instant::now();
    loop {
        let pid = main_pid(b);
        if pid != 0 && pid != old && call::<List>(c, "ListContainers", &()).is_ok() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "berthd did not come back: {}",
            b.sh_ok("systemctl status berthd --no-pager -n 20 || true; ps -eo pid,ppid,stat,wchan:20,args | grep -v kworker")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn call<R>(
    c: &zbus::blocking::Connection,
    method: &str,
    body: &(impl serde::Serialize + zbus::zvariant::DynamicType),
) -> zbus::Result<R>
where
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    c.call_method(Some(DEST), PATH, Some(MANAGER), method, body)?
        .body()
        .deserialize()
}

pub fn error_name(e: zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, msg, _) => format!("{name}: {}", msg.unwrap_or_default()),
        other => format!("{other}"),
    }
}

/// Container property `name` of the object at `path`, or the bus's error
/// (a berthd being restarted, an object just removed).
pub fn try_prop(
    c: &zbus::blocking::Connection,
    path: &str,
    name: &str,
) -> zbus::Result<zbus::zvariant::OwnedValue> {
    let p = zbus::blocking::fdo::PropertiesProxy::builder(c)
        .destination(DEST)?
        .path(path)?
        .build()?;
    Ok(p.get("io.berth.Berth1.Container".try_into().unwrap(), name)?)
}

pub fn prop<T: TryFrom<zbus::zvariant::OwnedValue>>(
    c: &zbus::blocking::Connection,
    path: &OwnedObjectPath,
    name: &str,
) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(try_prop(c, path.as_str(), name).unwrap()).unwrap()
}

/// Property `name` of container `id`.
pub fn prop_of<T: TryFrom<zbus::zvariant::OwnedValue>>(
    c: &zbus::blocking::Connection,
    id: &str,
    name: &str,
) -> T
where
    T::Error: std::fmt::Debug,
{
    let path: OwnedObjectPath = call(c, "GetContainer", &(id,)).unwrap();
    prop(c, &path, name)
}

pub fn no_options() -> HashMap<String, Value<'static>> {
    HashMap::new()
}

/// berthctl is another package's binary: `cargo test --workspace` (what
/// scripts/test runs) builds it beside berthd.
pub fn berthctl() -> String {
    let p = PathBuf::from(BERTHD).with_file_name("berthctl");
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build -p berthctl)",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

/// Runs `berthctl ARGS` in the box: (exit code, stdout, stderr).
pub fn ctl(b: &SystemdBox, args: &str) -> (i32, String, String) {
    let out = b.sh(&format!("{} {args}", berthctl())).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ctl_ok(b: &SystemdBox, args: &str) -> String {
    let (code, out, err) = ctl(b, args);
    assert_eq!(code, 0, "berthctl {args}: {out}{err}");
    out
}

/// berthd's Manager through the typed client (berth-client), as berthctl
/// and the benchmarks call it.
pub fn manager(c: &zbus::blocking::Connection) -> berth_client::ManagerProxyBlocking<'static> {
    berth_client::ManagerProxyBlocking::new(c).expect("Manager proxy")
}

/// A container's own object, through the typed client; properties are read
/// fresh on every call.
pub fn container_object(
    c: &zbus::blocking::Connection,
    path: &zbus::zvariant::OwnedObjectPath,
) -> berth_client::ContainerProxyBlocking<'static> {
    berth_client::ContainerProxyBlocking::builder(c)
        .path(path.clone())
        .expect("object path")
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .expect("Container proxy")
}

/// A one-layer busybox image (local/bb:1) as `docker save` writes it, built in /tmp/img.
pub const MAKE_ARCHIVE: &str = r#"set -e
rm -rf /tmp/img && mkdir -p /tmp/img/layer/bin /tmp/img/layer/etc /tmp/img/layer/tmp && cd /tmp/img
cp /bin/busybox layer/bin/busybox
for t in sh echo cat id env ls mount grep sleep httpd wget ip hostname nc timeout; do ln -s busybox layer/bin/$t; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' > layer/etc/passwd
printf 'root:x:0:\napp:x:1000:\n' > layer/etc/group
tar -C layer --owner=0 --group=0 -cf layer.tar .
diff=$(sha256sum layer.tar | cut -d' ' -f1)
cat > config.json <<EOF
{"architecture":"amd64","os":"linux",
 "config":{"Env":["PATH=/bin","FOO=from-image"],"Cmd":["sh","-c","echo default-cmd \$FOO"],"WorkingDir":"/tmp"},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff"]}}
EOF
cfg=$(sha256sum config.json | cut -d' ' -f1)
mv config.json $cfg.json
echo "[{\"Config\":\"$cfg.json\",\"RepoTags\":[\"local/bb:1\"],\"Layers\":[\"layer.tar\"]}]" > manifest.json
tar -cf image.tar manifest.json $cfg.json layer.tar
"#;

/// Runs `f` on a thread of its own in the network namespace at `ns` (the
/// thread ends with it: no other thread changes namespace).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(ns).unwrap_or_else(|e| panic!("{ns}: {e}"));
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// Starts a docker-registry on the box's loopback (unit test-registry,
/// storage in /tmp/reg) and waits until it answers; returns its port. The
/// box has a network namespace of its own: a port free here is free there.
pub fn start_registry(b: &SystemdBox) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    b.sh_ok(&format!(
        "mkdir -p /tmp/reg && printf 'version: 0.1\\nlog:\\n  level: error\\nstorage:\\n  filesystem:\\n    rootdirectory: /tmp/reg/data\\nhttp:\\n  addr: 127.0.0.1:{port}\\n' > /tmp/reg/config.yml && \
         systemd-run --unit=test-registry docker-registry serve /tmp/reg/config.yml && \
         bash -c 'for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done'"
    ));
    port
}
