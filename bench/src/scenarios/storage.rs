//! Storage's own cost: create → start → exit → delete of /bin/true with 3
//! bind mounts, a named volume and a tmpfs, against the same without
//! mounts, beside podman with the same mounts (`-v`, `--tmpfs`),
//! interleaved.

use std::collections::HashMap;

use anyhow::{bail, Result};
use zbus::zvariant::Value;

use super::Ctx;
use crate::engines::podman;
use crate::env::WORK;
use crate::measure::{interleave, median, timed, Section, Unit};

const VOLUME: &str = "bench-vol";

fn sources() -> Vec<String> {
    (1..=3).map(|i| format!("{WORK}/mounts/m{i}")).collect()
}

/// The mounts as `-v`/`--tmpfs` entries, berth's and podman's alike.
fn volumes() -> Vec<String> {
    let mut v: Vec<String> = sources()
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{s}:/m{}:ro", i + 1))
        .collect();
    v.push(format!("{VOLUME}:/data"));
    v
}

fn berth(ctx: &Ctx, id: &str, mounts: bool) -> Result<()> {
    let b = &ctx.berth;
    let opts: HashMap<&str, Value> = match mounts {
        true => HashMap::from([
            ("volumes", Value::from(volumes())),
            ("tmpfs", Value::from(vec!["/scratch".to_string()])),
        ]),
        false => HashMap::new(),
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

fn podman_run(ctx: &Ctx, id: &str) -> Result<()> {
    let mut c = podman();
    c.args([
        "run",
        "--rm",
        "--name",
        id,
        "--pids-limit",
        "-1",
        "--network",
        "none",
    ]);
    for v in volumes() {
        c.args(["-v", &v]);
    }
    c.args(["--tmpfs", "/scratch"]);
    c.arg("--rootfs").arg(&ctx.env.rootfs).arg("/bin/true");
    crate::engines::run(&mut c)
}

fn clean_up(ctx: &Ctx, have_podman: bool) {
    let _ = ctx.berth.conn.call_method(
        Some("io.berth.Berth1"),
        "/io/berth/Berth1",
        Some("io.berth.Berth1.Volumes"),
        "RemoveVolume",
        &(VOLUME, true),
    );
    if have_podman {
        let _ = crate::engines::run(podman().args(["volume", "rm", "-f", VOLUME]));
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "storage",
        "Storage: a lifecycle of /bin/true with 3 bind mounts, a volume and a tmpfs",
        Unit::Ms,
        "berth: CreateContainer with volumes [3 read-only binds, the named volume \
         bench-vol] and tmpfs [/scratch], then Start, Wait, Delete; berth-nomounts the \
         same without them; podman: `podman run --rm --network none -v … --tmpfs \
         /scratch --rootfs` with the same mounts. Interleaved.",
    );
    for src in sources() {
        std::fs::create_dir_all(&src)?;
    }
    let have_podman = ctx.engine("podman").is_some();
    let mut tools = vec!["berth", "berth-nomounts"];
    if have_podman {
        tools.push("podman");
    }
    let one = |tool: &str, id: &str| match tool {
        "berth" => berth(ctx, id, true),
        "berth-nomounts" => berth(ctx, id, false),
        _ => podman_run(ctx, id),
    };
    let measured = (|| {
        // Warm-up: the volume is made by its first use (both engines).
        for t in &tools {
            one(t, &format!("storage-warm-{t}"))?;
        }
        interleave(&tools, ctx.iterations, |tool, i| {
            timed(|| one(tool, &format!("storage-{tool}-{i}")))
        })
    })();
    clean_up(ctx, have_podman);
    for (tool, samples) in measured? {
        s.push(&tool, "lifecycle", samples);
    }
    let med = |s: &Section, t: &str| s.find(t, "lifecycle").and_then(|x| median(&x.samples));
    if let (Some(with), Some(without)) = (med(&s, "berth"), med(&s, "berth-nomounts")) {
        s.note(format!(
            "the five mounts add {:.1} ms to a berth lifecycle ({with:.1} vs {without:.1})",
            with - without
        ));
    }
    if let (Some(b), Some(p)) = (med(&s, "berth"), med(&s, "podman")) {
        s.goal(
            "berth with mounts / podman with the same mounts",
            "≤ 0.2×",
            format!("{:.2}×", b / p),
            b / p <= 0.2,
            "",
        );
    }
    Ok(s)
}
