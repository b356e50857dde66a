//! image-run: `berthctl run --rm IMAGE true` beside `podman run --rm IMAGE
//! true` — the whole client command, image store included — on one busybox
//! image loaded into both stores beforehand (no network). Then berth's
//! steps apart, to see where a run goes: berthctl's own start-up (exec,
//! clap, the bus connection, one call, exit) and each D-Bus call of the run
//! timed on the bench's connection.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use berth_client::ImagesProxyBlocking;
use zbus::zvariant::Value;

use super::Ctx;
use crate::engines::{podman, run as run_cmd};
use crate::env::WORK;
use crate::measure::{interleave, median, timed, Section, Unit};

/// The image's name in berth's store (podman names its copy itself).
const IMAGE: &str = "local/runbb:1";
/// The calls of a run, in order: each a variant of the "berth steps" tool.
const STEPS: &[&str] = &["create (image)", "attach", "start", "wait", "delete"];
/// Round numbers of the warm-up runs (not counted).
const WARM_UP: usize = usize::MAX - 1;
const STEPS_TOOL: &str = "berth steps";
/// berthctl's default network for an image (podman cannot have one here).
const NETWORK_TOOL: &str = "berth, default network";
/// Variants: the client command; berth's calls summed; berthctl alone.
const RUN: &str = "run --rm";
const SUM: &str = "run (sum of the calls)";
const STARTUP: &str = "start-up + one call";

/// `berthctl` of this build.
fn berthctl(ctx: &Ctx) -> Command {
    Command::new(ctx.env.bin.join("berthctl"))
}

/// Imports the archive into both stores; podman's name for it.
fn load(ctx: &Ctx, tar: &Path, have_podman: bool) -> Result<Option<String>> {
    let conn = &ctx.berth.conn;
    let tar_s = tar.to_str().context("path is not UTF-8")?;
    ImagesProxyBlocking::new(conn)?
        .import_image(tar_s, HashMap::new())
        .context("ImportImage of the busybox image into berthd")?;
    if !have_podman {
        return Ok(None);
    }
    let out = podman()
        .args(["load", "-q", "-i", tar_s])
        .output()
        .context("podman load")?;
    if !out.status.success() {
        bail!(
            "podman load: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // "Loaded image: localhost/local/runbb:1" (the name podman gave it).
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .map(|n| n.trim().to_string())
        .with_context(|| format!("podman load said {text:?}"))?;
    Ok(Some(name))
}

/// `--network none` as podman's (CNI cannot run in the box); `network`
/// false: berthctl's default for an image, the `berth` bridge network.
fn berth_run(ctx: &Ctx, network: bool) -> Result<()> {
    let mut c = berthctl(ctx);
    c.args(["run", "--rm"]);
    if !network {
        c.args(["--network", "none"]);
    }
    run_cmd(c.args([IMAGE, "true"]))
}

fn podman_run(name: &str) -> Result<()> {
    run_cmd(podman().args([
        "run",
        "--rm",
        "--network",
        "none",
        "--pids-limit",
        "-1",
        name,
        "true",
    ]))
}

/// The calls `berthctl run --rm` makes, each timed (ms, in STEPS' order).
fn berth_steps(ctx: &Ctx, id: &str) -> Result<Vec<f64>> {
    let b = &ctx.berth;
    let opts: HashMap<&str, Value> = HashMap::from([
        ("image", Value::from(IMAGE)),
        ("args", Value::from(vec!["true".to_string()])),
        ("network", Value::from("none")),
    ]);
    let mut t = Vec::with_capacity(STEPS.len());
    t.push(timed(|| b.create_with(id, Path::new(""), opts).map(drop))?);
    let mut fd = None;
    t.push(timed(|| {
        fd = Some(b.attach(id)?);
        Ok(())
    })?);
    t.push(timed(|| b.start(id))?);
    // berthctl relays the output to its end before it waits.
    let mut out = std::fs::File::from(fd.context("attach")?);
    std::io::copy(&mut out, &mut std::io::sink())?;
    let mut status = (0, 0);
    t.push(timed(|| {
        status = b.wait(id)?;
        Ok(())
    })?);
    t.push(timed(|| b.delete(id, true))?);
    if status != (0, 0) {
        bail!("{id} exited with {status:?}");
    }
    Ok(t)
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "image-run",
        "Image run: `run --rm IMAGE true` of a one-layer busybox image",
        Unit::Ms,
        "The client command from its exec to its exit: `berthctl run --rm --network none IMAGE true` \
         (CreateContainer with the image → overlay rootfs and config from the image, \
         AttachContainer, StartContainer, the output to its end, WaitContainer, \
         DeleteContainer) vs `podman run --rm --network none --pids-limit -1 IMAGE true` \
         (runc, systemd cgroups, overlay store on the bench's tmpfs); the same \
         docker-archive (static busybox, one layer) imported into both stores \
         beforehand, no network (podman's CNI cannot run in the box; \"berth, default \
         network\": berthctl's default bridge network for an image, for reference). \
         Interleaved. berth's steps: `berthctl version` (exec, \
         clap, the bus connection, one call, exit) and each call of a run timed on the \
         bench's own connection.",
    );
    let have_podman = ctx.engine("podman").is_some();
    let tar = crate::cri_env::make_image(&Path::new(WORK).join("image-runbb"), IMAGE, "null")?;
    let podman_name = load(ctx, &tar, have_podman)?;
    let mut tools = vec!["berth", NETWORK_TOOL, "berthctl version", STEPS_TOOL];
    if podman_name.is_some() {
        tools.push("podman");
    }
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
    let mut one = |tool: &str, i: usize| -> Result<f64> {
        match tool {
            "berth" => timed(|| berth_run(ctx, false)),
            NETWORK_TOOL => timed(|| berth_run(ctx, true)),
            "berthctl version" => timed(|| run_cmd(berthctl(ctx).arg("version"))),
            STEPS_TOOL => {
                let t = berth_steps(ctx, &format!("imgrun-steps-{i}"))?;
                if i < WARM_UP {
                    for (k, v) in t.iter().enumerate() {
                        steps[k].push(*v);
                    }
                }
                Ok(t.iter().sum())
            }
            _ => timed(|| podman_run(podman_name.as_deref().unwrap_or_default())),
        }
    };
    let measured = (|| {
        // Warm-up: page cache, the image's first overlay mount, podman's store.
        for t in &tools {
            one(t, WARM_UP)?;
            one(t, WARM_UP + 1)?;
        }
        interleave(&tools, ctx.iterations, &mut one)
    })();
    clean_up(ctx, podman_name.as_deref());
    for (tool, samples) in measured? {
        let variant = match tool.as_str() {
            STEPS_TOOL => SUM,
            "berthctl version" => STARTUP,
            _ => RUN,
        };
        s.push(&tool, variant, samples);
    }
    for (k, v) in steps.into_iter().enumerate() {
        s.push(STEPS_TOOL, STEPS[k], v);
    }
    let med = |s: &Section, t: &str, v: &str| s.find(t, v).and_then(|x| median(&x.samples));
    if let (Some(run), Some(calls), Some(up)) = (
        med(&s, "berth", RUN),
        med(&s, STEPS_TOOL, SUM),
        med(&s, "berthctl version", STARTUP),
    ) {
        s.note(format!(
            "berthctl run {run:.1} ms = its calls {calls:.1} ms + {:.1} ms of berthctl's own \
             (`berthctl version`, exec to exit with one call: {up:.1} ms)",
            run - calls
        ));
    }
    if let Some(r) = s.ratio("podman", RUN) {
        s.goal(
            "berthctl run --rm IMAGE true vs podman",
            "≤ 0.2× podman run --rm IMAGE true",
            format!("{r:.2}×"),
            r <= 0.2,
            "medians of the whole client command, both with --network none",
        );
    }
    Ok(s)
}

fn clean_up(ctx: &Ctx, podman_name: Option<&str>) {
    let _ = run_cmd(berthctl(ctx).args(["image", "rm", IMAGE]));
    if let Some(name) = podman_name {
        let _ = run_cmd(podman().args(["rmi", "-f", name]));
    }
}
