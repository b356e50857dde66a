//! berth-cri's user namespaces and recursive read-only mounts, in a box,
//! against the real berthd, systemd and kernel: a pod with a user namespace
//! of its own (CRI UserNamespace POD, `0 1000 100000`) whose container sees
//! that mapping, the pod's pinned namespace, its hostname, and its pod files
//! (idmapped) owned by its root both ways; NODE mode shows the host's mapping; the bad
//! userns requests are InvalidArgument and leave nothing; an `rro` mount's
//! submount is read-only, a plain `ro` one's is not; rro's rules.

mod common;
#[allow(unused_imports)]
use common::*;

#[allow(dead_code)]
mod cri_client;
use cri_client::*;

use berth_cri::api::*;
use tonic::Code;

#[test]
fn cri_user_namespaces_and_rro_mounts() {
    let Some(b) = cri_box("cri_userns") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cri = connect(&b).await;
        features(&mut cri).await;
        pod_userns(&b, &mut cri).await;
        node_userns(&b, &mut cri).await;
        bad_userns(&b, &mut cri).await;
        rro(&b, &mut cri).await;
    });
}

fn mapping(host: u32, len: u32) -> Vec<IdMapping> {
    vec![IdMapping {
        container_id: 0,
        host_id: host,
        length: len,
    }]
}

/// A pod with no ports (several run at once) and the given userns options.
fn pod_with(name: &str, userns: Option<UserNamespace>) -> PodSandboxConfig {
    let mut cfg = pod_config(name, false);
    cfg.port_mappings.clear();
    let ns = cfg
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("pod_config has namespace options");
    ns.userns_options = userns;
    cfg
}

async fn features(cri: &mut Cri) {
    let st = cri
        .rt
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let f = st.runtime_handlers[0].features.unwrap();
    assert!(f.user_namespaces && f.recursive_read_only_mounts, "{f:?}");
    // critest's rootfsPath(): the parent of config.stateDir takes idmaps.
    let cfg: serde_json::Value = serde_json::from_str(&st.info["config"]).unwrap();
    assert_eq!(cfg["stateDir"], "/run/berth/cri/pods", "{cfg}");
}

async fn pod_userns(b: &berth_box::SystemdBox, cri: &mut Cri) {
    let cfg = pod_with(
        "uns",
        Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: mapping(1000, 100000),
            gids: mapping(1000, 100000),
        }),
    );
    let pod = cri
        .run_pod(&cfg)
        .await
        .expect("RunPodSandbox with POD userns");
    let dir = format!("/run/berth/cri/pods/{pod}");
    let c = cri
        .create(&pod, &cfg, container_config("u1", &["sleep", "1000"]))
        .await
        .expect("CreateContainer in a userns pod");
    cri.start(&c).await;
    cri.wait_state(&c, ContainerState::ContainerRunning).await;
    // The mapping as critest checks it (`\s+0\s+1000\s+100000`).
    let map = cri.out(&c, &["cat", "/proc/self/uid_map"]).await;
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields, ["0", "1000", "100000"], "uid_map: {map:?}");
    let gmap = cri.out(&c, &["cat", "/proc/self/gid_map"]).await;
    assert_eq!(gmap.split_whitespace().collect::<Vec<_>>(), fields);
    // The pod's pinned namespace, not one of the container's own.
    let inside = cri
        .out(&c, &["busybox", "readlink", "/proc/self/ns/user"])
        .await;
    let pinned = b
        .sh_ok(&format!("stat -L -c %i {dir}/user"))
        .trim()
        .to_string();
    assert_eq!(inside, format!("user:[{pinned}]"));
    // Its UTS namespace (owned by the pod's user namespace) has its name.
    assert_eq!(cri.out(&c, &["hostname"]).await, "uns");
    // The pod's files are idmapped: the host root's files are root's
    // inside (unmapped they would be nobody's, 65534), and what the
    // container's root (host uid 1000) writes into the pod's /dev/shm is
    // stored as the host's root's — the idmap maps both ways.
    let owners = cri
        .out(
            &c,
            &[
                "sh",
                "-c",
                "echo x > /dev/shm/f && busybox stat -c '%u:%g' /dev/shm/f /etc/hosts /etc/resolv.conf",
            ],
        )
        .await;
    assert_eq!(owners.split_whitespace().collect::<Vec<_>>(), ["0:0"; 3]);
    let host_owner = b.sh_ok(&format!("stat -c '%u:%g' {dir}/shm/f"));
    assert_eq!(host_owner.trim(), "0:0");
    // The rootfs is not idmapped (overlayfs takes no idmap; docs/cri.md):
    // the host root's image files are nobody's here.
    let r = cri
        .exec(&c, &["busybox", "stat", "-c", "%u", "/bin/busybox"], 10)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "65534");

    cri.rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    cri.rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    let left = b.sh_ok(&format!(
        "ls -d {dir} 2>/dev/null; grep -c {pod} /proc/self/mountinfo || true"
    ));
    assert_eq!(left.trim(), "0", "left after RemovePodSandbox: {left}");
}

async fn node_userns(b: &berth_box::SystemdBox, cri: &mut Cri) {
    let cfg = pod_with(
        "unode",
        Some(UserNamespace {
            mode: NamespaceMode::Node as i32,
            ..Default::default()
        }),
    );
    let pod = cri
        .run_pod(&cfg)
        .await
        .expect("RunPodSandbox with NODE userns");
    let c = cri
        .create(&pod, &cfg, container_config("n1", &["sleep", "1000"]))
        .await
        .unwrap();
    cri.start(&c).await;
    cri.wait_state(&c, ContainerState::ContainerRunning).await;
    let inside = cri.out(&c, &["cat", "/proc/self/uid_map"]).await;
    let host = b.sh_ok("cat /proc/self/uid_map");
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(norm(&inside), norm(&host));
    assert!(!b
        .sh_ok(&format!("ls /run/berth/cri/pods/{pod}"))
        .contains("user"));
    cri.rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    cri.rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
}

async fn bad_userns(b: &berth_box::SystemdBox, cri: &mut Cri) {
    let before = b.sh_ok("ls /run/berth/cri/pods | wc -l");
    let two = vec![mapping(1000, 100000)[0], mapping(2000, 100000)[0]];
    let not_zero = vec![IdMapping {
        container_id: 1,
        host_id: 1000,
        length: 100000,
    }];
    let cases = [
        (NamespaceMode::Pod, two.clone(), two),
        (NamespaceMode::Pod, not_zero.clone(), not_zero),
        (NamespaceMode::Pod, vec![], vec![]),
        (NamespaceMode::Container, vec![], vec![]),
        (NamespaceMode::Target, vec![], vec![]),
    ];
    for (i, (mode, uids, gids)) in cases.into_iter().enumerate() {
        let cfg = pod_with(
            &format!("bad{i}"),
            Some(UserNamespace {
                mode: mode as i32,
                uids,
                gids,
            }),
        );
        assert_eq!(
            code(cri.run_pod(&cfg).await),
            Code::InvalidArgument,
            "case {i}"
        );
    }
    // POD with the host's network: refused too.
    let mut host_net = pod_with(
        "badnet",
        Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: mapping(1000, 100000),
            gids: mapping(1000, 100000),
        }),
    );
    host_net
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .unwrap()
        .network = NamespaceMode::Node as i32;
    assert_eq!(code(cri.run_pod(&host_net).await), Code::InvalidArgument);
    let pods = cri
        .rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert!(pods.items.is_empty(), "a refused pod was kept: {pods:?}");
    assert_eq!(b.sh_ok("ls /run/berth/cri/pods | wc -l"), before);
}

async fn rro(b: &berth_box::SystemdBox, cri: &mut Cri) {
    // A host directory with a tmpfs mounted inside, as critest makes it.
    b.sh_ok("mkdir -p /tmp/rro/tmpfs && mount -t tmpfs none /tmp/rro/tmpfs");
    let cfg = pod_with("rro", None);
    let pod = cri.run_pod(&cfg).await.unwrap();
    let with = |name: &str, readonly: bool, rro: bool, prop: MountPropagation| {
        let mut c = container_config(name, &["sleep", "1000"]);
        c.mounts = vec![Mount {
            host_path: "/tmp/rro".into(),
            container_path: "/mnt".into(),
            readonly,
            recursive_read_only: rro,
            propagation: prop as i32,
            ..Default::default()
        }];
        c
    };
    let private = MountPropagation::PropagationPrivate;
    let r = cri
        .create(&pod, &cfg, with("r1", true, true, private))
        .await
        .unwrap();
    let plain = cri
        .create(&pod, &cfg, with("r2", true, false, private))
        .await
        .unwrap();
    for c in [&r, &plain] {
        cri.start(c).await;
        cri.wait_state(c, ContainerState::ContainerRunning).await;
    }
    let touch = "busybox touch /mnt/tmpfs/f 2>&1; echo rc=$?";
    let rro_out = cri.out(&r, &["sh", "-c", touch]).await;
    assert!(
        rro_out.contains("Read-only file system") && rro_out.ends_with("rc=1"),
        "rro submount writable: {rro_out}"
    );
    // ro alone: the mount is read-only, its submount is not.
    assert!(cri
        .out(&plain, &["sh", "-c", touch])
        .await
        .ends_with("rc=0"));
    let top = cri
        .out(
            &plain,
            &["sh", "-c", "busybox touch /mnt/x 2>&1; echo rc=$?"],
        )
        .await;
    assert!(top.ends_with("rc=1"), "{top}");
    // The rules: rro is read-only and private.
    for (name, readonly, prop) in [
        ("bad1", false, private),
        ("bad2", true, MountPropagation::PropagationHostToContainer),
        ("bad3", true, MountPropagation::PropagationBidirectional),
    ] {
        let e = cri
            .create(&pod, &cfg, with(name, readonly, true, prop))
            .await;
        assert_eq!(code(e), Code::InvalidArgument, "{name}");
    }
    cri.rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    cri.rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    b.sh_ok("umount /tmp/rro/tmpfs");
}
