//! tests/cri.rs' client side: a CRI client over the box's socket (the
//! generated types berth-cri serves), and the configs the scenario uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_cri::api::image_service_client::ImageServiceClient;
use berth_cri::api::runtime_service_client::RuntimeServiceClient;
use berth_cri::api::*;
use tonic::transport::Channel;
use tonic::Code;

pub const CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"crinet","plugins":[
 {"type":"bridge","bridge":"cni-cri0","isGateway":true,"ipMasq":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.77.0.0/24"}]],"dataDir":"/run/cri-test-ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

/// A box for a CRI test: berthd installed, the busybox image imported,
/// CONFLIST in /etc/cni/net.d and berth-cri's socket started (this build's
/// binary in the packaged units). None — the test skips, saying why —
/// without a box or without the CNI plugins.
pub fn cri_box(test: &str) -> Option<berth_box::SystemdBox> {
    use crate::common::*;
    let b = berth_box::up_or_skip(test)?;
    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        assert!(
            std::env::var_os("BERTH_REQUIRE_BOX").is_none(),
            "containernetworking-plugins is missing (scripts/deps installs it)"
        );
        println!("SKIP {test}: no CNI plugins in /usr/lib/cni");
        return None;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let cri_bin = PathBuf::from(BERTHD).with_file_name("berth-cri");
    assert!(
        cri_bin.exists(),
        "{} is not built (cargo build -p berth-cri)",
        cri_bin.display()
    );
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    b.sh_ok(&format!(
        "mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-crinet.conflist <<'EOF'\n{CONFLIST}\nEOF\n\
         cp {root}/units/berth-cri.socket /run/systemd/system/ && \
         sed 's|^ExecStart=.*|ExecStart={}|' {root}/units/berth-cri.service > /run/systemd/system/berth-cri.service && \
         systemctl daemon-reload && systemctl start berth-cri.socket",
        cri_bin.display()
    ));
    Some(b)
}

pub const SLICE: &str = "kubepods-besteffort-podt1.slice";

pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub im: ImageServiceClient<Channel>,
}

pub async fn connect(b: &berth_box::SystemdBox) -> Cri {
    let sock = PathBuf::from(format!("/proc/{}/root/run/berth/cri.sock", b.init_pid()));
    let ch = berth_cri::connect(&sock)
        .await
        .expect("connect to berth-cri");
    Cri {
        rt: RuntimeServiceClient::new(ch.clone()),
        im: ImageServiceClient::new(ch),
    }
}

pub fn pod_config(name: &str, host_network: bool) -> PodSandboxConfig {
    let node = NamespaceMode::Node as i32;
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/var/log/pods/{name}"),
        port_mappings: match host_network {
            true => vec![],
            false => vec![PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 18080,
                host_ip: String::new(),
            }],
        },
        labels: HashMap::from([("app".into(), name.into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: SLICE.into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: if host_network { node } else { 0 },
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(name: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "local/bb:1".into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        envs: vec![KeyValue {
            key: "WHO".into(),
            value: name.into(),
        }],
        ..Default::default()
    }
}

impl Cri {
    pub async fn run_pod(&mut self, cfg: &PodSandboxConfig) -> Result<String, tonic::Status> {
        let r = RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        };
        Ok(self
            .rt
            .run_pod_sandbox(r)
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        cfg: &PodSandboxConfig,
        c: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let r = CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(c),
            sandbox_config: Some(cfg.clone()),
        };
        Ok(self.rt.create_container(r).await?.into_inner().container_id)
    }

    pub async fn start(&mut self, id: &str) {
        let r = StartContainerRequest {
            container_id: id.into(),
        };
        self.rt.start_container(r).await.expect("StartContainer");
    }

    pub async fn status(&mut self, id: &str) -> Result<ContainerStatus, tonic::Status> {
        let r = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        Ok(self
            .rt
            .container_status(r)
            .await?
            .into_inner()
            .status
            .unwrap_or_default())
    }

    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<ExecSyncResponse, tonic::Status> {
        let r = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        Ok(self.rt.exec_sync(r).await?.into_inner())
    }

    pub async fn out(&mut self, id: &str, cmd: &[&str]) -> String {
        let r = self.exec(id, cmd, 10).await.expect("ExecSync");
        assert_eq!(
            r.exit_code,
            0,
            "{cmd:?}: {}",
            String::from_utf8_lossy(&r.stdout)
        );
        String::from_utf8_lossy(&r.stdout).trim().to_string()
    }

    pub async fn wait_state(&mut self, id: &str, want: ContainerState) -> ContainerStatus {
        let t = Instant::now();
        loop {
            let s = self.status(id).await.expect("ContainerStatus");
            if s.state == want as i32 {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{id} never {want:?}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (pods, containers) as listed, sorted: what a restart must keep.
    pub async fn listing(&mut self) -> (Vec<(String, i32)>, Vec<(String, String, i32)>) {
        let pods = self
            .rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .unwrap();
        let mut p: Vec<_> = pods
            .into_inner()
            .items
            .into_iter()
            .map(|p| (p.id, p.state))
            .collect();
        p.sort();
        let cs = self
            .rt
            .list_containers(ListContainersRequest { filter: None })
            .await
            .unwrap();
        let mut c: Vec<_> = cs
            .into_inner()
            .containers
            .into_iter()
            .map(|c| (c.id, c.pod_sandbox_id, c.state))
            .collect();
        c.sort();
        (p, c)
    }
}

pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    r.expect_err("want an error").code()
}
