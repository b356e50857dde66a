//! Issue 20's exec benchmark, in the cri scenario: exec of `true` into a
//! running container through the CRI, berth-cri against containerd's CRI
//! plugin, interleaved. Two variants:
//! - `exec sync`: ExecSync from the scenario's tonic client (the call to
//!   its reply, the exit code in it);
//! - `crictl exec`: the `crictl exec CONTAINER true` command line as a user
//!   runs it (crictl 1.36: the Exec RPC, then its URL's SPDY stream to the
//!   exit), a fresh process per call as for the other peers' CLIs. Measured
//!   when a crictl is found: $BERTH_BENCH_CRICTL, else `crictl` on PATH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use berth_cri::api::runtime_service_client::RuntimeServiceClient;
use berth_cri::api::*;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

use super::cri::{pod_start, teardown, Endpoint};
use super::Ctx;
use crate::cri_env::BERTH_CRI_SOCKET;
use crate::env::CONTAINERD_SOCKET;
use crate::measure::{ms, Section};

pub const EXEC_SYNC: &str = "exec sync";
pub const CRICTL_EXEC: &str = "crictl exec";

/// Times both variants, each runtime exec'ing into one pod's container.
pub(super) fn measure(
    ctx: &Ctx,
    tokio: &Runtime,
    endpoints: &mut [Endpoint],
    s: &mut Section,
) -> Result<()> {
    let crictl = crictl();
    if crictl.is_none() {
        s.note("crictl exec not measured: no crictl ($BERTH_BENCH_CRICTL or PATH)");
    }
    let mut targets = Vec::new();
    for e in endpoints.iter_mut() {
        let (pod, _) = tokio.block_on(pod_start(&mut e.rt, &format!("exec-{}", e.tool)))?;
        let cid = tokio.block_on(container_of(&mut e.rt, &pod))?;
        targets.push((pod, cid));
    }
    let measured = (|| -> Result<()> {
        let mut samples: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
        // Round 0 is a warm-up, not counted; the order rotates each round.
        let n = endpoints.len();
        for round in 0..=ctx.iterations {
            for j in 0..n {
                let k = (round + j) % n;
                let e = &mut endpoints[k];
                let cid = &targets[k].1;
                let t0 = Instant::now();
                tokio
                    .block_on(exec_sync_true(&mut e.rt, cid))
                    .with_context(|| format!("{}: ExecSync", e.tool))?;
                let sync = ms(t0.elapsed());
                let cli = match &crictl {
                    Some(c) => Some(crictl_exec_true(c, socket(e.tool), cid)?),
                    None => None,
                };
                if round > 0 {
                    samples.entry((e.tool, EXEC_SYNC)).or_default().push(sync);
                    if let Some(v) = cli {
                        samples.entry((e.tool, CRICTL_EXEC)).or_default().push(v);
                    }
                }
            }
        }
        for ((tool, variant), v) in samples {
            s.push(tool, variant, v);
        }
        Ok(())
    })();
    for (e, (pod, _)) in endpoints.iter_mut().zip(&targets) {
        if let Err(err) = tokio.block_on(teardown(&mut e.rt, pod)) {
            s.note(format!("{}: removing the exec pod: {err:#}", e.tool));
        }
    }
    measured?;
    for variant in [EXEC_SYNC, CRICTL_EXEC] {
        if let Some(r) = s.ratio("containerd", variant) {
            s.goal(
                &format!("CRI {variant} of `true` vs containerd"),
                "≤ 0.5× containerd",
                format!("{r:.2}×"),
                r <= 0.5,
                "medians",
            );
        }
    }
    Ok(())
}

fn socket(tool: &str) -> &'static str {
    match tool {
        "berth" => BERTH_CRI_SOCKET,
        _ => CONTAINERD_SOCKET,
    }
}

fn crictl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_BENCH_CRICTL") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("crictl"))
        .find(|p| p.is_file())
}

/// The pod's one container.
async fn container_of(rt: &mut RuntimeServiceClient<Channel>, pod: &str) -> Result<String> {
    let items = rt
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod.into(),
                ..Default::default()
            }),
        })
        .await
        .context("ListContainers")?
        .into_inner()
        .containers;
    match items.as_slice() {
        [c] => Ok(c.id.clone()),
        _ => bail!("pod {pod} has {} containers, 1 expected", items.len()),
    }
}

async fn exec_sync_true(rt: &mut RuntimeServiceClient<Channel>, cid: &str) -> Result<()> {
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: cid.into(),
            cmd: vec!["true".into()],
            timeout: 10,
        })
        .await?
        .into_inner();
    if r.exit_code != 0 {
        bail!("true exited {}", r.exit_code);
    }
    Ok(())
}

/// `crictl exec CID true`, timed from its start to its exit (ms).
fn crictl_exec_true(crictl: &Path, sock: &str, cid: &str) -> Result<f64> {
    let endpoint = format!("unix://{sock}");
    let t0 = Instant::now();
    let out = Command::new(crictl)
        .args([
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
        ])
        .args(["--timeout", "10s", "exec", cid, "true"])
        .output()
        .with_context(|| format!("running {}", crictl.display()))?;
    let took = ms(t0.elapsed());
    if !out.status.success() {
        bail!(
            "crictl exec into {cid} on {sock}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}
