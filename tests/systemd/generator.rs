//! berth-generator: by hand with systemd's three directories, then as a
//! generator of the box's systemd (daemon-reload, start, Requires=, a
//! target's .wants link, Conflicts= with berth@NAME).

use std::path::PathBuf;

use berth_box::SystemdBox;

use super::common::*;
use super::{eventually, inspect};

/// sh as pid 1 that ends at once on SIGTERM (`wait` is interrupted by a
/// trapped signal; a plain `sleep` would finish first).
pub const TERMINABLE: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1 & wait; done",
];

fn active(b: &SystemdBox, unit: &str) -> String {
    b.sh_ok(&format!("systemctl is-active {unit} || true"))
        .trim()
        .to_string()
}

pub fn generator(b: &SystemdBox) {
    let bundle = busybox_bundle("sysd-gen", TERMINABLE);
    let bp = bundle.path();
    let gen = PathBuf::from(BERTHD).with_file_name("berth-generator");
    let gen = gen.display();
    b.sh_ok(&format!(
        "mkdir -p /etc/berth/containers && cd /etc/berth/containers && \
         printf 'bundle = \"{bp}\"\\n[install]\\nwanted_by = [\"berth-test.target\"]\\n' > gen-db.toml && \
         printf 'bundle = \"{bp}\"\\n[unit]\\ndescription = \"gen web\"\\nrequires = [\"gen-db\"]\\nafter = [\"gen-db\"]\\n' > gen-web.toml && \
         printf 'bundle = \"/x\"\\n[unit]\\nwants = \"not-a-list\"\\n' > bad.toml"
    ));

    // By hand, as systemd calls it: the bad file is named with its line, the
    // others are generated.
    let out = b
        .sh(&format!(
            "mkdir -p /tmp/gen/n /tmp/gen/e /tmp/gen/l && {gen} /tmp/gen/n /tmp/gen/e /tmp/gen/l"
        ))
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/etc/berth/containers/bad.toml:3: "), "{err}");
    let listing = b.sh_ok("cd /tmp/gen/n && find . | sort");
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            ".",
            "./berth-gen-db.service",
            "./berth-gen-web.service",
            "./berth-test.target.wants",
            "./berth-test.target.wants/berth-gen-db.service",
        ],
        "{listing}"
    );
    eventually("the journal has the generator's error", || {
        b.sh_ok("journalctl -t berth-generator -o verbose --no-pager || true")
            .contains("CONFIG_LINE=3")
    });

    // As the box's generator: units at daemon-reload.
    b.sh_ok(&format!(
        "ln -sf {gen} /usr/lib/systemd/system-generators/berth-generator && \
         printf '[Unit]\\nDescription=berth generator test\\n' > /run/systemd/system/berth-test.target && \
         systemctl daemon-reload"
    ));
    assert_eq!(
        b.sh_ok("systemctl show -P SourcePath berth-gen-web.service")
            .trim(),
        "/etc/berth/containers/gen-web.toml"
    );
    assert_eq!(
        b.sh_ok("systemctl show -P Description berth-gen-web.service")
            .trim(),
        "gen web"
    );
    let deps = b.sh_ok("systemctl list-dependencies --plain --no-pager berth-test.target");
    assert!(deps.contains("berth-gen-db.service"), "{deps}");
    assert_eq!(active(b, "berth-bad.service"), "inactive");

    // Requires= on another container: starting web starts db first.
    b.sh_ok("systemctl start berth-gen-web.service");
    assert_eq!(active(b, "berth-gen-db.service"), "active");
    for id in ["gen-web", "gen-db"] {
        assert_eq!(inspect(b, id)["Status"], "running", "{id}");
    }
    // Stopping the required one stops the one that requires it.
    b.sh_ok("systemctl stop berth-gen-db.service");
    assert_eq!(active(b, "berth-gen-web.service"), "inactive");
    eventually("containers gone", || {
        ctl_ok(b, "ps -a --json").trim() == "[]"
    });

    // What boot does with the [install] link: the target pulls it in.
    b.sh_ok("systemctl start berth-test.target");
    wait_active(b, "berth-gen-db.service");
    assert_eq!(inspect(b, "gen-db")["Status"], "running");

    // berth@NAME still runs the same file, and replaces the generated unit.
    b.sh_ok("systemctl start berth@gen-db.service");
    assert_eq!(active(b, "berth-gen-db.service"), "inactive");
    assert_eq!(inspect(b, "gen-db")["Status"], "running");
    b.sh_ok(
        "systemctl stop berth@gen-db.service berth-test.target && rm /etc/berth/containers/*.toml",
    );
}
