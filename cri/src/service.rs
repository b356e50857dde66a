//! The gRPC edge: RuntimeService and ImageService, each call handed to its
//! module; errors become statuses here and only here.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::runtime_service_server::RuntimeService;
use crate::api::*;
use crate::error::CriError;
use crate::state::Cri;

#[derive(Clone)]
pub struct Service(pub Arc<Cri>);

type R<T> = Result<Response<T>, Status>;
pub type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn ok<T>(v: T) -> R<T> {
    Ok(Response::new(v))
}

fn unimplemented<T>(what: &str) -> R<T> {
    Err(Status::unimplemented(format!(
        "{what} is not implemented by berth-cri"
    )))
}

/// The API version and the runtime's, as containerd answers them.
pub const API_VERSION: &str = "v1";

#[tonic::async_trait]
impl RuntimeService for Service {
    async fn version(&self, _r: Request<VersionRequest>) -> R<VersionResponse> {
        ok(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "berth".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: API_VERSION.into(),
        })
    }

    async fn run_pod_sandbox(&self, r: Request<RunPodSandboxRequest>) -> R<RunPodSandboxResponse> {
        let id = crate::pods::run(&self.0, r.into_inner()).await?;
        ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> R<StopPodSandboxResponse> {
        crate::pods::stop(&self.0, &r.into_inner().pod_sandbox_id).await?;
        ok(StopPodSandboxResponse {})
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> R<RemovePodSandboxResponse> {
        crate::pods::remove(&self.0, &r.into_inner().pod_sandbox_id).await?;
        ok(RemovePodSandboxResponse {})
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> R<PodSandboxStatusResponse> {
        let p = crate::pods::get(&self.0, &r.into_inner().pod_sandbox_id).await?;
        ok(PodSandboxStatusResponse {
            status: Some(crate::pods::status(&p)),
            info: HashMap::new(),
            containers_statuses: Vec::new(),
            timestamp: crate::store::now_ns(),
        })
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> R<ListPodSandboxResponse> {
        ok(ListPodSandboxResponse {
            items: crate::pods::list(&self.0, r.into_inner().filter)?,
        })
    }

    type StreamPodSandboxesStream = Boxed<StreamPodSandboxesResponse>;
    async fn stream_pod_sandboxes(
        &self,
        r: Request<StreamPodSandboxesRequest>,
    ) -> R<Self::StreamPodSandboxesStream> {
        let items = crate::pods::list(&self.0, r.into_inner().filter)?;
        let one = StreamPodSandboxesResponse {
            pod_sandboxes: items,
        };
        ok(Box::pin(tokio_stream::once(Ok(one))))
    }

    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> R<CreateContainerResponse> {
        let id = crate::containers::create(&self.0, r.into_inner()).await?;
        ok(CreateContainerResponse { container_id: id })
    }

    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> R<StartContainerResponse> {
        crate::containers::start(&self.0, &r.into_inner().container_id).await?;
        ok(StartContainerResponse {})
    }

    async fn stop_container(&self, r: Request<StopContainerRequest>) -> R<StopContainerResponse> {
        let r = r.into_inner();
        crate::containers::stop(&self.0, &r.container_id, r.timeout).await?;
        ok(StopContainerResponse {})
    }

    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> R<RemoveContainerResponse> {
        crate::containers::remove(&self.0, &r.into_inner().container_id).await?;
        ok(RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> R<ListContainersResponse> {
        ok(ListContainersResponse {
            containers: crate::containers::list(&self.0, r.into_inner().filter).await?,
        })
    }

    type StreamContainersStream = Boxed<StreamContainersResponse>;
    async fn stream_containers(
        &self,
        r: Request<StreamContainersRequest>,
    ) -> R<Self::StreamContainersStream> {
        let containers = crate::containers::list(&self.0, r.into_inner().filter).await?;
        let one = StreamContainersResponse { containers };
        ok(Box::pin(tokio_stream::once(Ok(one))))
    }

    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> R<ContainerStatusResponse> {
        let s = crate::containers::status(&self.0, &r.into_inner().container_id).await?;
        ok(ContainerStatusResponse {
            status: Some(s),
            info: HashMap::new(),
        })
    }

    async fn update_container_resources(
        &self,
        r: Request<UpdateContainerResourcesRequest>,
    ) -> R<UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        crate::update::update(&self.0, &r.container_id, r.linux).await?;
        ok(UpdateContainerResourcesResponse {})
    }

    async fn reopen_container_log(
        &self,
        r: Request<ReopenContainerLogRequest>,
    ) -> R<ReopenContainerLogResponse> {
        let id = r.into_inner().container_id;
        let rec = crate::containers::get(&self.0, &id)?;
        if rec.log_path.is_empty() {
            return Err(Status::failed_precondition(format!(
                "container {id} has no log path"
            )));
        }
        self.0
            .manager()
            .await?
            .reopen_container_log(&id)
            .await
            .map_err(CriError::from)?;
        // The monitor reopens on its next wake-up: wait for the new file,
        // so the kubelet finds it when we answer.
        let path = std::path::PathBuf::from(&rec.log_path);
        for _ in 0..100 {
            if path.exists() {
                return ok(ReopenContainerLogResponse {});
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Err(Status::internal(format!(
            "the monitor of {id} did not reopen {}",
            path.display()
        )))
    }

    async fn exec_sync(&self, r: Request<ExecSyncRequest>) -> R<ExecSyncResponse> {
        ok(crate::exec::exec_sync(&self.0, r.into_inner()).await?)
    }

    async fn exec(&self, r: Request<ExecRequest>) -> R<ExecResponse> {
        ok(crate::stream::exec(&self.0, r.into_inner()).await?)
    }

    async fn attach(&self, r: Request<AttachRequest>) -> R<AttachResponse> {
        ok(crate::stream::attach(&self.0, r.into_inner()).await?)
    }

    async fn port_forward(&self, r: Request<PortForwardRequest>) -> R<PortForwardResponse> {
        ok(crate::stream::port_forward(&self.0, r.into_inner()).await?)
    }

    async fn container_stats(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> R<ContainerStatsResponse> {
        let s = crate::stats::stats_of(&self.0, &r.into_inner().container_id).await?;
        ok(ContainerStatsResponse { stats: Some(s) })
    }

    async fn list_container_stats(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> R<ListContainerStatsResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let filter = ContainerFilter {
            id: f.id,
            state: None,
            pod_sandbox_id: f.pod_sandbox_id,
            label_selector: f.label_selector,
        };
        let mut stats = Vec::new();
        for c in crate::containers::list(&self.0, Some(filter)).await? {
            stats.push(crate::stats::stats_of(&self.0, &c.id).await?);
        }
        ok(ListContainerStatsResponse { stats })
    }

    type StreamContainerStatsStream = Boxed<StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        _r: Request<StreamContainerStatsRequest>,
    ) -> R<Self::StreamContainerStatsStream> {
        unimplemented("StreamContainerStats")
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> R<PodSandboxStatsResponse> {
        let s = crate::stats::pod_stats(&self.0, &r.into_inner().pod_sandbox_id).await?;
        ok(PodSandboxStatsResponse { stats: Some(s) })
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> R<ListPodSandboxStatsResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let filter = PodSandboxFilter {
            id: f.id,
            state: None,
            label_selector: f.label_selector,
        };
        let mut stats = Vec::new();
        for p in crate::pods::list(&self.0, Some(filter))? {
            stats.push(crate::stats::pod_stats(&self.0, &p.id).await?);
        }
        ok(ListPodSandboxStatsResponse { stats })
    }

    type StreamPodSandboxStatsStream = Boxed<StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        _r: Request<StreamPodSandboxStatsRequest>,
    ) -> R<Self::StreamPodSandboxStatsStream> {
        unimplemented("StreamPodSandboxStats")
    }

    async fn update_runtime_config(
        &self,
        r: Request<UpdateRuntimeConfigRequest>,
    ) -> R<UpdateRuntimeConfigResponse> {
        let cidr = r
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        *self.0.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()) = cidr;
        ok(UpdateRuntimeConfigResponse {})
    }

    async fn status(&self, r: Request<StatusRequest>) -> R<StatusResponse> {
        let runtime = match self.0.manager().await {
            Ok(m) => m
                .info()
                .await
                .map(drop)
                .map_err(|e| berth_client::describe(&e)),
            Err(e) => Err(e.to_string()),
        };
        let network = self.0.sandboxes.network_ready();
        let cond = |kind: &str, r: Result<(), String>, reason: &str| RuntimeCondition {
            r#type: kind.into(),
            status: r.is_ok(),
            reason: if r.is_ok() {
                String::new()
            } else {
                reason.into()
            },
            message: r.err().unwrap_or_default(),
        };
        let mut info = HashMap::new();
        if r.into_inner().verbose {
            let cidr = self
                .0
                .pod_cidr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "cgroupDriver": "systemd",
                    "cniConfDir": self.0.sandboxes.cni_conf_dir,
                    "podCIDR": cidr,
                    // critest's rootfsPath() tests idmapped mounts on this
                    // directory's parent: where the pods' idmapped files are.
                    "stateDir": self.0.sandboxes.run_dir.join("pods"),
                })
                .to_string(),
            );
        }
        ok(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![
                    cond("RuntimeReady", runtime, "BerthdUnreachable"),
                    cond("NetworkReady", network, "NetworkPluginNotReady"),
                ],
            }),
            info,
            runtime_handlers: vec![RuntimeHandler {
                name: String::new(),
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: true,
                }),
            }],
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: false,
                user_namespaces_host_network: false,
            }),
        })
    }

    async fn checkpoint_container(
        &self,
        _r: Request<CheckpointContainerRequest>,
    ) -> R<CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream = Boxed<ContainerEventResponse>;
    async fn get_container_events(
        &self,
        _r: Request<GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        let rx = self.0.events.subscribe();
        let s = tokio_stream::wrappers::BroadcastStream::new(rx);
        let s = tokio_stream::StreamExt::filter_map(s, |e| e.ok().map(Ok));
        ok(Box::pin(s))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<ListMetricDescriptorsRequest>,
    ) -> R<ListMetricDescriptorsResponse> {
        ok(ListMetricDescriptorsResponse::default())
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<ListPodSandboxMetricsRequest>,
    ) -> R<ListPodSandboxMetricsResponse> {
        ok(ListPodSandboxMetricsResponse::default())
    }

    type StreamPodSandboxMetricsStream = Boxed<StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _r: Request<StreamPodSandboxMetricsRequest>,
    ) -> R<Self::StreamPodSandboxMetricsStream> {
        unimplemented("StreamPodSandboxMetrics")
    }

    async fn runtime_config(&self, _r: Request<RuntimeConfigRequest>) -> R<RuntimeConfigResponse> {
        ok(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Systemd as i32,
            }),
        })
    }

    async fn update_pod_sandbox_resources(
        &self,
        r: Request<UpdatePodSandboxResourcesRequest>,
    ) -> R<UpdatePodSandboxResourcesResponse> {
        // The kubelet sets the pod slice's own limits itself (its systemd
        // cgroup driver); the runtime is only told, as containerd's CRI is
        // (which passes it on to NRI plugins, and berth has none).
        crate::pods::get(&self.0, &r.into_inner().pod_sandbox_id).await?;
        ok(UpdatePodSandboxResourcesResponse {})
    }
}
