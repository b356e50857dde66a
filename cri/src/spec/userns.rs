//! The pod's user namespace as the CRI asks for it
//! (`NamespaceOption.userns_options`), checked as containerd checks it:
//! NODE (or none) is the host's; POD is a namespace of the pod's own with
//! exactly one uid and one gid mapping, each mapping id 0; CONTAINER and
//! TARGET are refused. Also what a container of such a pod gets in its
//! spec: the pod's namespace by path, its mappings, idmapped pod files.

use oci_spec::runtime::{LinuxIdMappingBuilder, Spec};

use crate::api::{IdMapping, NamespaceMode, PodSandboxConfig};
use crate::error::{CriError, Result};
use crate::pod_userns::IdMap;

/// A POD-mode user namespace: its (uid, gid) mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodUserns {
    pub uid: IdMap,
    pub gid: IdMap,
}

/// The pod's user namespace: None for the host's.
pub fn of_pod(cfg: &PodSandboxConfig) -> Result<Option<PodUserns>> {
    let sc = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let opts = sc.and_then(|s| s.namespace_options.as_ref());
    let Some(u) = opts.and_then(|o| o.userns_options.as_ref()) else {
        return Ok(None);
    };
    let bad = |m: String| Err(CriError::InvalidArgument(m));
    match NamespaceMode::try_from(u.mode) {
        Ok(NamespaceMode::Node) => {
            if !u.uids.is_empty() || !u.gids.is_empty() {
                return bad("user namespace mode NODE takes no uid/gid mappings".into());
            }
            return Ok(None);
        }
        Ok(NamespaceMode::Pod) => {}
        Ok(other) => {
            return bad(format!(
                "user namespace mode {}: only NODE and POD are supported",
                other.as_str_name()
            ))
        }
        Err(_) => return bad(format!("user namespace mode {}: unknown", u.mode)),
    }
    let one = |what: &str, maps: &[IdMapping]| -> Result<IdMap> {
        let [m] = maps else {
            return Err(CriError::InvalidArgument(format!(
                "user namespace mode POD: want exactly one {what} mapping, got {}",
                maps.len()
            )));
        };
        if m.container_id != 0 {
            return Err(CriError::InvalidArgument(format!(
                "user namespace mode POD: the {what} mapping must map id 0 (it starts at {})",
                m.container_id
            )));
        }
        if m.length == 0 || m.host_id.checked_add(m.length).is_none() {
            return Err(CriError::InvalidArgument(format!(
                "user namespace mode POD: {what} mapping 0 {} {}: bad range",
                m.host_id, m.length
            )));
        }
        Ok((m.container_id, m.host_id, m.length))
    };
    let userns = PodUserns {
        uid: one("uid", &u.uids)?,
        gid: one("gid", &u.gids)?,
    };
    // The kubelet never asks for these together (a pod in the host's
    // network, IPC or pid namespace cannot own its user namespace's).
    let o = opts.cloned().unwrap_or_default();
    let node = NamespaceMode::Node as i32;
    if o.network == node || o.ipc == node || o.pid == node {
        return bad(
            "user namespace mode POD cannot go with the host's network, IPC or pid namespace"
                .into(),
        );
    }
    Ok(Some(userns))
}

/// The container's side: linux.uidMappings/gidMappings as the pod's (the
/// namespace itself is joined by path, see linux.rs).
pub(super) fn set_mappings(spec: &mut Spec, u: &PodUserns) -> Result<()> {
    let map = |(inside, host, len): IdMap| {
        LinuxIdMappingBuilder::default()
            .container_id(inside)
            .host_id(host)
            .size(len)
            .build()
            .map(|m| vec![m])
            .map_err(|e| CriError::Internal(e.to_string()))
    };
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    linux
        .set_uid_mappings(Some(map(u.uid)?))
        .set_gid_mappings(Some(map(u.gid)?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, UserNamespace,
    };

    fn pod(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> PodSandboxConfig {
        pod_ns(NamespaceOption {
            userns_options: Some(UserNamespace {
                mode: mode as i32,
                uids,
                gids,
            }),
            ..Default::default()
        })
    }

    fn pod_ns(ns: NamespaceOption) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn map(c: u32, h: u32, l: u32) -> IdMapping {
        IdMapping {
            container_id: c,
            host_id: h,
            length: l,
        }
    }

    fn invalid(cfg: &PodSandboxConfig) -> bool {
        matches!(of_pod(cfg), Err(CriError::InvalidArgument(_)))
    }

    #[test]
    fn node_and_none_are_the_hosts() {
        assert_eq!(of_pod(&PodSandboxConfig::default()).unwrap(), None);
        assert_eq!(
            of_pod(&pod(NamespaceMode::Node, vec![], vec![])).unwrap(),
            None
        );
        assert!(invalid(&pod(
            NamespaceMode::Node,
            vec![map(0, 1000, 10)],
            vec![]
        )));
    }

    #[test]
    fn pod_mode_takes_one_mapping_of_id_0_each() {
        let one = vec![map(0, 1000, 100000)];
        let u = of_pod(&pod(NamespaceMode::Pod, one.clone(), one.clone())).unwrap();
        assert_eq!(
            u,
            Some(PodUserns {
                uid: (0, 1000, 100000),
                gid: (0, 1000, 100000)
            })
        );
        let two = vec![map(0, 1000, 100000), map(0, 2000, 100000)];
        assert!(invalid(&pod(NamespaceMode::Pod, two, one.clone())));
        assert!(invalid(&pod(NamespaceMode::Pod, one.clone(), vec![])));
        assert!(invalid(&pod(
            NamespaceMode::Pod,
            vec![map(1, 1000, 10)],
            one.clone()
        )));
        assert!(invalid(&pod(
            NamespaceMode::Pod,
            vec![map(0, 1000, 0)],
            one.clone()
        )));
        assert!(invalid(&pod(
            NamespaceMode::Pod,
            vec![map(0, u32::MAX, 2)],
            one
        )));
    }

    #[test]
    fn container_target_and_host_namespaces_are_refused() {
        assert!(invalid(&pod(NamespaceMode::Container, vec![], vec![])));
        assert!(invalid(&pod(NamespaceMode::Target, vec![], vec![])));
        let one = vec![map(0, 1000, 100000)];
        let mut ns = NamespaceOption {
            userns_options: Some(UserNamespace {
                mode: NamespaceMode::Pod as i32,
                uids: one.clone(),
                gids: one,
            }),
            ..Default::default()
        };
        ns.network = NamespaceMode::Node as i32;
        assert!(invalid(&pod_ns(ns)));
    }

    #[test]
    fn a_containers_spec_gets_the_mappings() {
        let u = PodUserns {
            uid: (0, 1000, 100000),
            gid: (0, 2000, 5),
        };
        let mut spec = Spec::default();
        set_mappings(&mut spec, &u).unwrap();
        let l = spec.linux().as_ref().unwrap();
        let g = &l.gid_mappings().as_ref().unwrap()[0];
        assert_eq!((g.container_id(), g.host_id(), g.size()), (0, 2000, 5));
        assert_eq!(l.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
    }
}
