//! The network's own cost: create → start → exit → delete of /bin/true with
//! berth's default network and a published port (CNI: bridge, host-local,
//! portmap) against the same with network none, beside podman with its
//! network stack (`-p`; Debian's podman uses CNI) and podman with network
//! none, interleaved in the box's own network namespace.

use std::collections::HashMap;

use anyhow::{bail, Result};
use zbus::zvariant::Value;

use super::Ctx;
use crate::engines::podman;
use crate::measure::{interleave, median, timed, Section, Unit};

const PORT_BERTH: &str = "18080:80";
const PORT_PODMAN: &str = "18081:80";

/// How a berth container is networked in a sample.
#[derive(Clone, Copy)]
enum Net {
    Port,
    NoPort,
    None,
}

fn berth(ctx: &Ctx, id: &str, net: Net) -> Result<()> {
    let b = &ctx.berth;
    let opts: HashMap<&str, Value> = match net {
        Net::Port => HashMap::from([("ports", Value::from(vec![PORT_BERTH.to_string()]))]),
        Net::NoPort => HashMap::from([("network", Value::from("berth"))]),
        Net::None => HashMap::from([("network", Value::from("none"))]),
    };
    b.create_with(id, &b.bundles.true_, opts)?;
    b.start(id)?;
    let status = b.wait(id)?;
    b.delete(id, false)?;
    if status != (0, 0) {
        bail!("{id} exited with {status:?}");
    }
    Ok(())
}

fn podman_run(ctx: &Ctx, id: &str, network: bool) -> Result<()> {
    let mut c = podman();
    c.args(["run", "--rm", "--name", id, "--pids-limit", "-1"]);
    match network {
        true => c.args(["-p", PORT_PODMAN]),
        false => c.args(["--network", "none"]),
    };
    c.arg("--rootfs").arg(&ctx.env.rootfs).arg("/bin/true");
    crate::engines::run(&mut c)
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "network",
        "Network: a lifecycle of /bin/true with a network and a published port vs none",
        Unit::Ms,
        "berth: CreateContainer with the default network (bridge berth0, host-local, \
         portmap; option ports 18080:80), the default network without a port \
         (berth-noport), or network none, then Start, Wait, Delete (CNI DEL, the netns \
         unpinned); podman: `podman run --rm -p 18081:80 --rootfs` (its \
         default network, CNI on Debian 12) or `--network none`. Interleaved, in the \
         box's own network namespace.",
    );
    let mut tools = vec!["berth", "berth-noport", "berth-none"];
    let have_podman = ctx.engine("podman").is_some();
    if have_podman {
        tools.extend(["podman", "podman-none"]);
    }
    let one = |tool: &str, id: &str| match tool {
        "berth" => berth(ctx, id, Net::Port),
        "berth-noport" => berth(ctx, id, Net::NoPort),
        "berth-none" => berth(ctx, id, Net::None),
        "podman" => podman_run(ctx, id, true),
        _ => podman_run(ctx, id, false),
    };
    // Warm-up: the default network's bridge is made by the first ADD.
    for t in &tools {
        one(t, &format!("net-warm-{t}"))?;
    }
    for (tool, samples) in interleave(&tools, ctx.iterations, |tool, i| {
        timed(|| one(tool, &format!("net-{tool}-{i}")))
    })? {
        s.push(&tool, "lifecycle", samples);
    }
    let med = |s: &Section, t: &str| s.find(t, "lifecycle").and_then(|x| median(&x.samples));
    let (berth, berth_none) = (med(&s, "berth"), med(&s, "berth-none"));
    if let (Some(noport), Some(none), Some(with)) = (med(&s, "berth-noport"), berth_none, berth) {
        s.note(format!(
            "the network alone adds {:.1} ms, publishing a port {:.1} ms more (portmap)",
            noport - none,
            with - noport
        ));
    }
    let (pod, pod_none) = (med(&s, "podman"), med(&s, "podman-none"));
    if let (Some(with), Some(none)) = (berth, berth_none) {
        let added = with - none;
        s.goal(
            "the network's cost in a lifecycle",
            "≤ 5 ms",
            format!("{added:.1} ms ({with:.1} vs {none:.1})"),
            added <= 5.0,
            "each lifecycle runs the bridge plugin (veth, host-local lease, iptables \
             MASQUERADE chain) and portmap (DNAT chains) at ADD and again at DEL: Go \
             binaries started per call, and iptables-nft calls inside them",
        );
    }
    if let (Some(b), Some(p)) = (berth, pod) {
        s.goal(
            "berth with network / podman with network",
            "≤ 0.2×",
            format!("{:.2}×", b / p),
            b / p <= 0.2,
            "",
        );
    }
    if let (Some(b), Some(p)) = (berth_none, pod_none) {
        s.note(format!("network none: berth / podman {:.2}×", b / p));
    }
    Ok(s)
}
