//! berthd starts and stops containers' scopes over systemd's private socket
//! (/run/systemd/private), and keeps doing so across `systemctl
//! daemon-reexec`, which drops every private connection; with
//! `systemd_private_socket = false` it uses the system bus alone.

use std::time::Duration;

use berth_box::SystemdBox;

use super::common::*;
use super::eventually;

/// How many of berthd's sockets are connected to systemd's private socket:
/// the peers of pid 1's accepted /run/systemd/private sockets that berthd
/// holds (ss prints a client's own inode after its `*` address).
fn private_connections(b: &SystemdBox) -> usize {
    let pid = main_pid(b);
    let script = format!(
        "ss -xpH | awk '\
         {{for (i = 1; i < NF; i++) if ($i == \"/run/systemd/private\") peer[$(i + 3)] = 1}} \
         index($0, \"pid={pid},\") {{for (i = 1; i < NF; i++) if ($i == \"*\") {{mine[$(i + 1)] = 1; break}}}} \
         END {{n = 0; for (k in mine) if (k in peer) n++; print n}}'"
    );
    b.sh_ok(&script).trim().parse().unwrap_or(0)
}

/// One container run to its end and removed; no scope of it left.
fn lifecycle(b: &SystemdBox, bundle: &str, name: &str) {
    ctl_ok(b, &format!("run --rm --name {name} --bundle {bundle}"));
    let left = b.sh_ok(&format!(
        "systemctl list-units --all --no-legend 'berth-{name}*' | wc -l"
    ));
    assert_eq!(left.trim(), "0", "a scope of {name} is left");
}

pub fn across_reexec(b: &SystemdBox) {
    let bundle = busybox_bundle("sysd-private", &["true"]);
    let bp = bundle.path();
    lifecycle(b, bp, "priv1");
    assert_eq!(
        private_connections(b),
        1,
        "berthd is not on the private socket"
    );

    // daemon-reexec closes the connection: the next create either finds it
    // closed (and uses the system bus) or reconnects; none fails.
    b.sh_ok("systemctl daemon-reexec");
    lifecycle(b, bp, "priv2");
    std::thread::sleep(Duration::from_millis(1100));
    lifecycle(b, bp, "priv3");
    eventually("berthd back on the private socket", || {
        private_connections(b) == 1
    });

    // Turned off: the system bus only.
    b.sh_ok(
        "mkdir -p /etc/berth && echo 'systemd_private_socket = false' > /etc/berth/berthd.toml \
         && systemctl restart berthd",
    );
    lifecycle(b, bp, "priv4");
    assert_eq!(private_connections(b), 0);
    b.sh_ok("rm /etc/berth/berthd.toml && systemctl restart berthd");
    let journal = b.sh_ok("journalctl -u berthd --no-pager -o cat");
    assert!(!journal.contains("panicked"), "{journal}");
}
