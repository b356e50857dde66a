//! berth's Cockpit page (cockpit/) in a real browser: cockpit-ws in a box
//! (its own network namespace, loopback only, --no-tls), berthd installed
//! as install_berthd does, and Debian's headless Chromium driven by
//! Playwright from inside the box (cockpit/test/browser.mjs): an
//! administrator logs in and turns on administrative access, sees a
//! container created with busctl appear, reads its logs, runs `echo` in its
//! console, reads its stats, stops it (berthd's state follows), sees
//! berthd's own error message, creates one from the form, pulls an image
//! from the loopback registry with the progress bar and deletes a
//! container; a user without administrative rights gets no mutating control.
//!
//! With BERTH_COCKPIT_SCREENSHOTS=1 the script writes docs/cockpit/*.png
//! (docs/cockpit.md shows them); CI leaves the tree alone.

mod common;
#[allow(unused_imports)]
use common::*;

use std::path::Path;

/// What the test needs beyond berth's own dependencies (scripts/deps
/// installs them): the path checked, and what provides it.
const PEERS: [(&str, &str); 6] = [
    ("/usr/lib/cockpit/cockpit-ws", "apt: cockpit-ws"),
    ("/usr/lib/chromium/chromium", "apt: chromium"),
    ("/usr/bin/sudo", "apt: sudo (Cockpit's superuser bridge)"),
    ("/usr/bin/skopeo", "apt: skopeo"),
    ("/usr/bin/docker-registry", "apt: docker-registry"),
    (
        "cockpit/node_modules/playwright-core",
        "npm ci --prefix cockpit",
    ),
];

fn missing_peer() -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        return Some("node is not installed (apt: nodejs)".into());
    }
    PEERS.iter().find_map(|(path, from)| {
        let p = Path::new(root).join(path);
        (!p.exists()).then(|| format!("{} is missing ({from})", p.display()))
    })
}

#[test]
fn cockpit_page_in_a_browser() {
    if let Some(why) = missing_peer() {
        if std::env::var_os("BERTH_REQUIRE_PEERS").is_some_and(|v| v == "1") {
            panic!("cockpit_page_in_a_browser: BERTH_REQUIRE_PEERS=1 but {why}");
        }
        println!("SKIP cockpit_page_in_a_browser: {why}");
        return;
    }
    let Some(b) = berth_box::up_or_skip("cockpit") else {
        return;
    };
    let t0 = std::time::Instant::now();
    let root = env!("CARGO_MANIFEST_DIR");
    // The page as users get it: cockpit-berth built by its package script
    // (the page's own build step inside) and installed with dpkg.
    // --force-depends: its `berth` dependency is berthd installed from this
    // build below, not a berth package.
    let build_dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cockpit-{}", std::process::id()));
    let out = std::process::Command::new(Path::new(root).join("packaging/build-cockpit-deb"))
        .env("CARGO_TARGET_DIR", &build_dir)
        .output()
        .expect("running packaging/build-cockpit-deb");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build-cockpit-deb: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(deb.ends_with("_all.deb"), "not a .deb: {stdout}");
    install_berthd(
        &b,
        &format!(
            "ln -sf {ctl} /usr/local/bin/berthctl && rm -f /usr/sbin/policy-rc.d && \
             dpkg --force-depends -i {deb} >/dev/null &&",
            ctl = berthctl()
        ),
    );
    assert_eq!(
        b.sh_ok("dpkg-query -W -f='${Status}' cockpit-berth"),
        "install ok installed"
    );
    // A local administrator (group sudo: Cockpit's superuser bridge runs
    // sudo with the login password) and a plain user. The box booted only
    // berth-box.target: systemd-user-sessions never removed /run/nologin.
    b.sh_ok(
        "useradd -m -G sudo -s /bin/bash admin && useradd -m -s /bin/bash viewer && \
         printf 'admin:admin-pw\\nviewer:viewer-pw\\n' | chpasswd && rm -f /run/nologin",
    );
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    let registry = start_registry(&b);
    b.sh_ok(&format!(
        "skopeo --insecure-policy copy --quiet --dest-tls-verify=false docker-archive:/tmp/img/image.tar docker://127.0.0.1:{registry}/bb:1"
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    b.sh_ok(&format!(
        "systemd-run --unit=test-cockpit /usr/lib/cockpit/cockpit-ws --no-tls --address 127.0.0.1 --port {port} && \
         bash -c 'for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.05; done'"
    ));
    let setup = t0.elapsed();

    let shots = if std::env::var_os("BERTH_COCKPIT_SCREENSHOTS").is_some_and(|v| v == "1") {
        b.sh_ok(&format!("mkdir -p {root}/docs/cockpit"));
        format!("{root}/docs/cockpit")
    } else {
        String::new()
    };
    let fail_shot = format!("{}/cockpit-failure.png", env!("CARGO_TARGET_TMPDIR"));
    let out = b
        .sh(&format!(
            "cd {root}/cockpit && URL=http://127.0.0.1:{port} REGISTRY=127.0.0.1:{registry} \
             SHOTS='{shots}' FAILSHOT={fail_shot} timeout 150 node test/browser.mjs"
        ))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser steps failed ({:?}): {stdout}{stderr}\ncockpit-ws: {}",
        out.status,
        b.sh_ok("journalctl -u test-cockpit --no-pager -n 30 || true")
    );

    // berthd's side of what the page did.
    let c = bus(&b).unwrap();
    assert_eq!(prop_of::<String>(&c, "web", "Status"), "stopped");
    let list: List = call(&c, "ListContainers", &()).unwrap();
    assert!(
        !list.iter().any(|(id, _, _)| id == "made-here"),
        "deleted from the page, still in berthd: {list:?}"
    );
    let images = ctl_ok(&b, "image ls");
    assert!(
        !images.contains(&format!("127.0.0.1:{registry}/bb:1")) && images.contains("local/bb:1"),
        "pulled and removed from the page, the imported one kept: {images}"
    );
    let _ = std::fs::remove_dir_all(&build_dir);
    println!(
        "cockpit: setup {:.1} s, browser steps and checks {:.1} s",
        setup.as_secs_f64(),
        (t0.elapsed() - setup).as_secs_f64()
    );
}

/// The create form's parsers (cockpit/test/create-options.test.mjs, node's
/// own test runner): no browser, no box, well under a second.
#[test]
fn cockpit_create_form_parsers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = match std::process::Command::new("node")
        .args(["--test", "test/create-options.test.mjs"])
        .current_dir(Path::new(root).join("cockpit"))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            if std::env::var_os("BERTH_REQUIRE_PEERS").is_some_and(|v| v == "1") {
                panic!("cockpit_create_form_parsers: BERTH_REQUIRE_PEERS=1 but node: {e}");
            }
            println!("SKIP cockpit_create_form_parsers: node: {e} (apt: nodejs)");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
