//! The Debian package (packaging/build-deb), installed with apt in a box the
//! way an administrator would: berthd enabled, started and bus-activated as a
//! systemd service, the files where the layout says, and a purge that leaves
//! nothing behind.
//!
//! The .deb is built once per test process, in its own target dir
//! (`<target>/package`, a release build), so it neither waits on nor
//! clobbers the debug build `cargo test` runs from. New tests start from
//! [`installed_box`].

mod common;
#[allow(unused_imports)]
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use berth_box::{BoxOptions, SystemdBox};

/// `busctl call` arguments up to the method name.
const MANAGER: &str = "io.berth.Berth1 /io/berth/Berth1 io.berth.Berth1.Manager";
const VOLUMES: &str = "io.berth.Berth1 /io/berth/Berth1 io.berth.Berth1.Volumes";
const AS_NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups";

/// Builds the package (once per process) and returns its path.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = berth_box::target_dir().expect("the cargo target dir");
        let started = Instant::now();
        let out = Command::new(root.join("packaging/build-deb"))
            .current_dir(root)
            // A target dir of its own: the package's generated files and
            // copies stay out of the build we run from.
            .env("CARGO_TARGET_DIR", target.join("package"))
            .env("BERTH_DEB_FAST", "1")
            // The debug binaries `cargo test --workspace` built (a release
            // build here would add minutes to CI; the package is what is
            // tested). The demo builds and installs a release package.
            .env(
                "BERTH_DEB_BINARIES",
                Path::new(env!("CARGO_BIN_EXE_berthd"))
                    .parent()
                    .expect("bin dir"),
            )
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("running packaging/build-deb");
        assert!(out.status.success(), "packaging/build-deb failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(
            deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
            "build-deb's last line is not a .deb: {stdout}"
        );
        eprintln!(
            "package: built {} in {:.0?}",
            deb.display(),
            started.elapsed()
        );
        deb
    })
}

/// A box with the package installed by dpkg, offline (its dependencies are
/// the host's packages, the box an overlay of the host), so berthd is enabled
/// and running as the postinst left it. None, after printing why, where the
/// host cannot boot a box (a failure with BERTH_REQUIRE_BOX=1).
///
/// /var/lib/berth is the box's own (on its overlay, not a tmpfs as in the
/// other tests): a purge must be able to remove it.
fn installed_box(test: &str) -> Option<SystemdBox> {
    if let Err(e) = berth_box::host_support() {
        if std::env::var_os("BERTH_REQUIRE_BOX").is_some_and(|v| v == "1") {
            panic!("{test}: BERTH_REQUIRE_BOX=1 but {e}");
        }
        eprintln!("SKIP {test}: {e}");
        return None;
    }
    let deb = deb();
    let b = SystemdBox::up(BoxOptions {
        tmpfs: Vec::new(),
        ..BoxOptions::default()
    })
    .unwrap_or_else(|e| panic!("{test}: {e}"));
    let started = Instant::now();
    // Container images ship a policy-rc.d that forbids maintainer scripts to
    // start or stop services (exit 101), and the box is an overlay of such a
    // host: remove it in the box, which is a machine running systemd.
    b.sh_ok("rm -f /usr/sbin/policy-rc.d");
    // dpkg -i, not apt-get: apt's --no-download refuses local .deb files
    // ("Pathname to install is not absolute"), and without it apt may fetch.
    b.sh_ok(&format!("dpkg -i {}", deb.display()));
    eprintln!("{test}: installed in {:.1?}", started.elapsed());
    Some(b)
}

/// What the package installs, by the layout in packaging/README.md.
const LAYOUT: &[&str] = &[
    "/usr/sbin/berthd",
    "/usr/bin/berthctl",
    "/usr/lib/systemd/system-generators/berth-generator",
    "/usr/bin/berth-runtime",
    "/usr/libexec/berth/berth-shim",
    "/usr/libexec/berth/berth-monitor",
    "/usr/libexec/berth/berth-cri",
    "/usr/lib/systemd/system/berthd.service",
    "/usr/lib/systemd/system/berth-cri.socket",
    "/usr/lib/systemd/system/berth-cri.service",
    "/usr/lib/systemd/system/berth.slice",
    "/usr/lib/systemd/system/berth@.service",
    "/usr/lib/systemd/system/berth-auto-update.service",
    "/usr/lib/systemd/system/berth-auto-update.timer",
    "/usr/share/dbus-1/system.d/io.berth.Berth1.conf",
    "/usr/share/dbus-1/system-services/io.berth.Berth1.service",
    "/usr/share/dbus-1/interfaces/io.berth.Berth1.Manager.xml",
    "/usr/share/dbus-1/interfaces/io.berth.Berth1.Container.xml",
    "/usr/share/polkit-1/actions/io.berth.berth1.policy",
    "/usr/share/man/man1/berthctl.1.gz",
    "/usr/share/man/man1/berthctl-ps.1.gz",
    "/usr/share/man/man1/berth-runtime.1.gz",
    "/usr/share/man/man8/berthd.8.gz",
    "/usr/share/bash-completion/completions/berthctl",
    "/usr/share/zsh/vendor-completions/_berthctl",
    "/usr/share/fish/vendor_completions.d/berthctl.fish",
    "/usr/share/doc/berth/copyright",
    "/usr/share/doc/berth/changelog.Debian.gz",
    "/usr/share/doc/berth/README.md",
    "/usr/share/doc/berth/architecture.md",
];

#[test]
fn package_installs_a_running_bus_activated_berthd() {
    let Some(b) = installed_box("package_installs_a_running_berthd") else {
        return;
    };
    for f in LAYOUT {
        b.sh_ok(&format!("test -f {f}"));
    }
    assert_eq!(b.sh_ok("systemctl is-active berthd").trim(), "active");
    assert_eq!(b.sh_ok("systemctl is-enabled berthd").trim(), "enabled");
    assert_eq!(
        b.sh_ok("readlink /proc/$(systemctl show -P MainPID berthd)/exe")
            .trim(),
        "/usr/sbin/berthd"
    );
    // Enabling made the D-Bus alias.
    assert_eq!(
        b.sh_ok("readlink -f /etc/systemd/system/dbus-io.berth.Berth1.service")
            .trim(),
        "/usr/lib/systemd/system/berthd.service"
    );
    let xml = b.sh_ok("busctl introspect io.berth.Berth1 /io/berth/Berth1");
    assert!(xml.contains("CreateContainer"), "{xml}");

    // Bus activation: the first call to a stopped berthd starts it.
    b.sh_ok("systemctl stop berthd");
    assert_ne!(
        b.sh_ok("systemctl is-active berthd || true").trim(),
        "active"
    );
    let list = b.sh_ok(&format!("busctl call {MANAGER} ListContainers"));
    assert_eq!(list.trim(), "a(sso) 0");
    wait_active(&b, "berthd");

    // Everyone may read; changing needs root or polkit's
    // io.berth.berth1.manage, which nobody without an agent does not get.
    b.sh_ok(&format!("{AS_NOBODY} busctl call {MANAGER} ListContainers"));
    let denied = b
        .sh(&format!(
            "{AS_NOBODY} busctl call {MANAGER} CreateContainer 'ssa{{sv}}' web /nonexistent 0"
        ))
        .unwrap();
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "{denied:?}");
    assert!(
        err.contains("uid 65534 may not do this")
            && err.contains("io.berth.berth1.manage")
            && err.contains("not authorized"),
        "{err}"
    );
    let read = b.sh_ok("pkaction --verbose --action-id io.berth.berth1.read");
    assert!(read.contains("implicit active:   auth_admin\n"), "{read}");
    assert!(read.contains("implicit any:      no"), "{read}");
    assert!(read.contains("implicit inactive: no"), "{read}");

    // berthctl from the package, against the packaged berthd.
    let version = b.sh_ok("berthctl version");
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    b.sh_ok("berthctl ps");
    // The man page file is in LAYOUT; man-db, where installed, finds it.
    let man = b.sh_ok("if command -v man >/dev/null; then man -w berthctl; else echo none; fi");
    assert!(
        ["/usr/share/man/man1/berthctl.1.gz", "none"].contains(&man.trim()),
        "{man}"
    );

    // The monitor ships static-pie (scripts/static-monitor): no program
    // interpreter. The container below runs under it: its output and exit
    // code come through it.
    let headers = b.sh_ok("readelf -lW /usr/libexec/berth/berth-monitor");
    assert!(
        headers.contains("DYN") && !headers.contains("INTERP"),
        "berth-monitor is not static-pie:\n{headers}"
    );
    // A container end to end: berthd finds the shim in /usr/libexec/berth,
    // the shim its monitor beside it.
    let bundle = busybox_bundle("pkg-run", &["sh", "-c", "echo from-the-package; exit 3"]);
    b.sh_ok(&format!(
        "busctl call {MANAGER} CreateContainer 'ssa{{sv}}' p1 {} 0",
        bundle.path()
    ));
    b.sh_ok(&format!("busctl call {MANAGER} StartContainer s p1"));
    let exit = b.sh_ok(&format!("busctl call {MANAGER} WaitContainer s p1"));
    assert_eq!(exit.trim(), "ii 3 0");
    let logs = b.sh_ok("journalctl --sync; journalctl -o cat CONTAINER_NAME=p1");
    assert!(logs.contains("from-the-package"), "{logs}");
    b.sh_ok(&format!(
        "busctl call {MANAGER} DeleteContainer sb p1 false"
    ));
}

#[test]
fn upgrade_restarts_berthd_and_keeps_containers_running() {
    let Some(b) = installed_box("upgrade_keeps_containers") else {
        return;
    };
    let bundle = busybox_bundle("pkg-upgrade", &["sleep", "300"]);
    b.sh_ok(&format!(
        "busctl call {MANAGER} CreateContainer 'ssa{{sv}}' u1 {} 0 && \
         busctl call {MANAGER} StartContainer s u1",
        bundle.path()
    ));
    let pid_of = |unit: &str| b.sh_ok(&format!("systemctl show -P MainPID {unit}"));
    let property = |name: &str| {
        b.sh_ok(&format!(
            "busctl get-property io.berth.Berth1 /io/berth/Berth1/container/u1 \
             io.berth.Berth1.Container {name}"
        ))
    };
    let container = property("Pid");
    let berthd = pid_of("berthd");
    // A named volume and its data survive the upgrade too.
    b.sh_ok(&format!(
        "busctl call {VOLUMES} CreateVolume 'sa{{sv}}' keep 0 && \
         echo kept > /var/lib/berth/volumes/keep/_data/f"
    ));
    // The same version again is an upgrade to dpkg: prerm upgrade, then
    // postinst configure <old version>.
    b.sh_ok(&format!("dpkg -i {}", deb().display()));
    wait_active(&b, "berthd");
    assert_ne!(pid_of("berthd"), berthd, "berthd was not restarted");
    let container_pid = container.trim().trim_start_matches("u ");
    b.sh_ok(&format!("kill -0 {container_pid}"));
    assert_eq!(property("Status").trim(), "s \"running\"");
    b.sh_ok(&format!("busctl call {VOLUMES} GetVolume s keep"));
    assert_eq!(b.sh_ok("cat /var/lib/berth/volumes/keep/_data/f"), "kept\n");
    b.sh_ok(&format!("busctl call {MANAGER} DeleteContainer sb u1 true"));
}

#[test]
fn remove_stops_everything_and_purge_leaves_nothing() {
    let Some(b) = installed_box("remove_and_purge") else {
        return;
    };
    let files = b.sh_ok("dpkg -L berth | while read -r f; do [ -d \"$f\" ] || echo \"$f\"; done");
    assert!(files.lines().count() > 20, "{files}");
    let bundle = busybox_bundle("pkg-purge", &["sleep", "300"]);
    b.sh_ok(&format!(
        "busctl call {MANAGER} CreateContainer 'ssa{{sv}}' s1 {} 0 && \
         busctl call {MANAGER} StartContainer s s1",
        bundle.path()
    ));
    wait_active(&b, "berth-s1.scope");
    b.sh_ok(
        "mkdir -p /etc/berth/containers && echo 'bundle = \"/x\"' > /etc/berth/containers/x.toml",
    );

    // remove: berthd and the containers stop (this one's init ignores
    // SIGTERM: SIGKILL after 10 s); state and definitions stay.
    let started = Instant::now();
    b.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q berth");
    eprintln!("remove_and_purge: removed in {:.1?}", started.elapsed());
    assert_ne!(
        b.sh_ok("systemctl is-active berthd || true").trim(),
        "active"
    );
    assert_eq!(
        b.sh_ok("systemctl list-units --all --no-legend 'berth-*.scope'")
            .trim(),
        ""
    );
    b.sh_ok("test -d /var/lib/berth && test -f /etc/berth/containers/x.toml");

    // purge: no unit, no file of the package, no state; it says the named
    // volumes go.
    b.sh_ok("mkdir -p /var/lib/berth/volumes/v1/_data");
    let out = b.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q berth 2>&1");
    assert!(out.contains("purge removes the named volumes"), "{out}");
    // (berth-box.target is the box's own.)
    let not_the_box = |out: String| {
        out.lines()
            .filter(|l| !l.contains("berth-box.target"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let unit_files = b.sh_ok("systemctl list-unit-files --no-legend 'berth*' 'dbus-io.berth*'");
    assert_eq!(not_the_box(unit_files), Vec::<String>::new());
    let units = b.sh_ok("systemctl list-units --all --no-legend 'berth*' 'dbus-io.berth*'");
    assert_eq!(not_the_box(units), Vec::<String>::new());
    let left: Vec<&str> = files
        .lines()
        .filter(|f| b.sh(&format!("test -e '{f}'")).unwrap().status.success())
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    for d in ["/var/lib/berth", "/etc/berth", "/run/berth"] {
        b.sh_ok(&format!("! test -e {d}"));
    }
    assert!(!b.sh("dpkg -s berth").unwrap().status.success());
}
