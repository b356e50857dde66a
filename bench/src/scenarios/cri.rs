//! Issue 19's CRI benchmark: pod start and teardown through the kubelet's
//! API, berth-cri against containerd's built-in CRI plugin, interleaved.
//! Both get the same requests from one tonic client (berth-cri's generated
//! types), the same CNI conflist and the same busybox image.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_cri::api::runtime_service_client::RuntimeServiceClient;
use berth_cri::api::*;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

use super::Ctx;
use crate::cri_env::{self, BERTH_CRI_SOCKET, IMAGE};
use crate::env::CONTAINERD_SOCKET;
use crate::measure::{median, ms, rotation, Section, Unit};

const POD_START: &str = "pod start";
const TEARDOWN: &str = "teardown";

/// One runtime's CRI endpoint.
pub(super) struct Endpoint {
    pub(super) tool: &'static str,
    pub(super) rt: RuntimeServiceClient<Channel>,
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "cri",
        "CRI: pod start, teardown and exec, berth-cri vs containerd's CRI plugin",
        Unit::Ms,
        "Through the CRI v1 gRPC API, as the kubelet drives it, one tonic client \
         per runtime. Pod start: RunPodSandbox (pod network from the same CNI \
         conflist: bridge + host-local + portmap, in the box's own network \
         namespace; cgroup parent a systemd slice) + CreateContainer + \
         StartContainer of a busybox `sleep` container, until ContainerStatus \
         says RUNNING. Teardown: StopPodSandbox + RemovePodSandbox. berth: \
         berth-cri (socket-activated) over berthd; containerd: its built-in CRI \
         plugin (runc with SystemdCgroup, through bench's runc-no-cpu wrapper that \
         drops the sandbox's CPU weight the box's cgroup tree cannot set; a \
         locally imported pause image). One warm-up pod each, not counted; the \
         runtimes take turns, the order rotating each round. Exec (issue 20): \
         into one running pod's container per runtime, `exec sync` is ExecSync \
         of `true` from the same client, `crictl exec` the command line \
         `crictl exec CONTAINER true` (Exec + its SPDY stream, a fresh crictl \
         process per call), interleaved the same way.",
    );
    if !Path::new(cri_env::CNI_BRIDGE).is_file() {
        s.note(format!(
            "not measured: no {} (apt install containernetworking-plugins): \
             neither runtime can give a pod its network",
            cri_env::CNI_BRIDGE
        ));
        return Ok(s);
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    cri_env::setup_berth(&ctx.env.src, &ctx.env.bin).context("setting up berth-cri")?;
    let mut endpoints = vec![Endpoint {
        tool: "berth",
        rt: connect(&tokio, Path::new(BERTH_CRI_SOCKET))?,
    }];
    match containerd(ctx, &tokio) {
        Ok(rt) => endpoints.push(Endpoint {
            tool: "containerd",
            rt,
        }),
        Err(e) => s.note(format!(
            "containerd's CRI not measured (berth-cri alone): {e:#}"
        )),
    }
    let measured = measure(ctx, &tokio, &mut endpoints, &mut s)
        .and_then(|()| super::cri_exec::measure(ctx, &tokio, &mut endpoints, &mut s));
    // What a failed round left behind (nothing when all went well).
    for e in &mut endpoints {
        if let Err(e) = tokio.block_on(remove_all(&mut e.rt)) {
            s.note(format!("cleanup: {e:#}"));
        }
    }
    measured?;
    cri_env::teardown_berth().context("stopping berth-cri")?;
    for variant in [POD_START, TEARDOWN] {
        if let Some(r) = s.ratio("containerd", variant) {
            s.goal(
                &format!("CRI {variant} vs containerd"),
                "≤ 0.3× containerd",
                format!("{r:.2}×"),
                r <= 0.3,
                "medians",
            );
        }
    }
    Ok(s)
}

/// Interleaved rounds: every runtime one pod start and one teardown a round.
fn measure(ctx: &Ctx, tokio: &Runtime, endpoints: &mut [Endpoint], s: &mut Section) -> Result<()> {
    // Warm-up, not counted: page cache, unit load paths, CNI's first bridge.
    for e in endpoints.iter_mut() {
        let (pod, _) = tokio.block_on(pod_start(&mut e.rt, &format!("warm-{}", e.tool)))?;
        tokio.block_on(teardown(&mut e.rt, &pod))?;
    }
    let mut start: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut down: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // Per call, for the notes: where each runtime's time goes.
    let mut calls: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    for (i, k) in rotation(endpoints.len(), ctx.iterations) {
        let e = &mut endpoints[k];
        let name = format!("pod-{}-{i}", e.tool);
        let t0 = Instant::now();
        let (pod, mut steps) = tokio
            .block_on(pod_start(&mut e.rt, &name))
            .with_context(|| format!("{}, round {i}: pod start", e.tool))?;
        start.entry(e.tool).or_default().push(ms(t0.elapsed()));
        let t0 = Instant::now();
        steps.extend(
            tokio
                .block_on(teardown(&mut e.rt, &pod))
                .with_context(|| format!("{}, round {i}: teardown", e.tool))?,
        );
        down.entry(e.tool).or_default().push(ms(t0.elapsed()));
        for (n, v) in steps.into_iter().enumerate() {
            calls.entry((e.tool, n)).or_default().push(v);
        }
    }
    for e in endpoints.iter() {
        let per_call: Vec<String> = CALLS
            .iter()
            .enumerate()
            .filter_map(|(n, call)| {
                let m = median(calls.get(&(e.tool, n))?)?;
                Some(format!("{call} {m:.1}"))
            })
            .collect();
        s.note(format!(
            "{}, median ms per call: {}",
            e.tool,
            per_call.join(", ")
        ));
    }
    for (variant, samples) in [(POD_START, start), (TEARDOWN, down)] {
        for (tool, v) in samples {
            s.push(tool, variant, v);
        }
    }
    Ok(())
}

/// Stops and removes every pod the runtime lists.
async fn remove_all(rt: &mut RuntimeServiceClient<Channel>) -> Result<()> {
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items;
    for p in pods {
        teardown(rt, &p.id).await?;
    }
    Ok(())
}

fn connect(tokio: &Runtime, sock: &Path) -> Result<RuntimeServiceClient<Channel>> {
    let ch = tokio
        .block_on(berth_cri::connect(sock))
        .with_context(|| format!("connecting to {}", sock.display()))?;
    let mut rt = RuntimeServiceClient::new(ch);
    tokio
        .block_on(rt.version(VersionRequest::default()))
        .with_context(|| format!("Version on {}", sock.display()))?;
    Ok(rt)
}

/// containerd's CRI, ready to run pods: images imported, its network
/// condition true (it loads the CNI config asynchronously).
fn containerd(ctx: &Ctx, tokio: &Runtime) -> Result<RuntimeServiceClient<Channel>> {
    if !ctx.env.peers.contains(&"containerd") {
        bail!("containerd is not running here (see the report's missing peers)");
    }
    cri_env::setup_containerd().context("importing the images")?;
    let mut rt = connect(tokio, Path::new(CONTAINERD_SOCKET))?;
    let t0 = Instant::now();
    loop {
        let st = tokio
            .block_on(rt.status(StatusRequest { verbose: false }))?
            .into_inner();
        let conds = st.status.map(|s| s.conditions).unwrap_or_default();
        if conds.iter().all(|c| c.status) {
            return Ok(rt);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("its Status is not ready after 10 s: {conds:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/var/log/pods/bench_{name}"),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "kubepods-besteffort-podbench.slice".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "sleep".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        args: vec!["1000000".into()],
        log_path: "sleep.log".into(),
        ..Default::default()
    }
}

/// The calls timed one by one (pod_start's three, teardown's two).
const CALLS: [&str; 5] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer (until RUNNING)",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// RunPodSandbox + CreateContainer + StartContainer, until RUNNING; the
/// pod's id and each step's ms.
pub(super) async fn pod_start(
    rt: &mut RuntimeServiceClient<Channel>,
    name: &str,
) -> Result<(String, Vec<f64>)> {
    let cfg = pod_config(name);
    let mut t0 = Instant::now();
    let mut steps = Vec::new();
    let mut lap = |steps: &mut Vec<f64>| {
        steps.push(ms(t0.elapsed()));
        t0 = Instant::now();
    };
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    lap(&mut steps);
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config()),
            sandbox_config: Some(cfg),
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id;
    lap(&mut steps);
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .context("StartContainer")?;
    let started = Instant::now();
    loop {
        let st = rt
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .context("ContainerStatus")?
            .into_inner()
            .status
            .unwrap_or_default();
        if st.state == ContainerState::ContainerRunning as i32 {
            lap(&mut steps);
            return Ok((pod, steps));
        }
        if st.state == ContainerState::ContainerExited as i32 || started.elapsed().as_secs() > 10 {
            bail!("container {id} not running: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// StopPodSandbox + RemovePodSandbox; each step's ms.
pub(super) async fn teardown(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
) -> Result<Vec<f64>> {
    let t0 = Instant::now();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .context("StopPodSandbox")?;
    let stopped = ms(t0.elapsed());
    let t1 = Instant::now();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .context("RemovePodSandbox")?;
    Ok(vec![stopped, ms(t1.elapsed())])
}
