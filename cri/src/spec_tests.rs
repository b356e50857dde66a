//! The CRI → OCI rules that need no system: args vs the image's entrypoint
//! and cmd, env, user, capabilities, namespaces, seccomp, bad input.

use std::path::PathBuf;

use oci_spec::runtime::{Capability, LinuxNamespaceType};

use crate::api::*;
use crate::spec::{build, ImageConfig, PodPaths, SECCOMP_ANNOTATION};

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/ep".into()],
        cmd: vec!["default".into()],
        env: vec!["PATH=/bin".into(), "A=image".into()],
        workdir: "/work".into(),
        user: "app".into(),
        ..Default::default()
    }
}

fn pod() -> PodPaths {
    PodPaths {
        dir: PathBuf::from("/run/berth/cri/pods/p"),
        host_network: false,
        host_ipc: false,
        host_pid: false,
        userns: None,
    }
}

fn cfg() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

fn with_sc(sc: LinuxContainerSecurityContext) -> ContainerConfig {
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(sc),
        }),
        ..cfg()
    }
}

fn args(c: &ContainerConfig) -> Vec<String> {
    let (s, _) = build(c, &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    s.process().as_ref().unwrap().args().clone().unwrap()
}

#[test]
fn command_replaces_the_entrypoint_and_args_the_cmd() {
    assert_eq!(args(&cfg()), ["/ep", "default"]);
    let c = ContainerConfig {
        args: vec!["x".into()],
        ..cfg()
    };
    assert_eq!(args(&c), ["/ep", "x"]);
    let c = ContainerConfig {
        command: vec!["sh".into()],
        args: vec!["-c".into(), "true".into()],
        ..cfg()
    };
    assert_eq!(args(&c), ["sh", "-c", "true"]);
}

#[test]
fn env_cwd_user_from_the_config_over_the_image() {
    let mut c = with_sc(LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 1000 }),
        run_as_group: Some(Int64Value { value: 5 }),
        supplemental_groups: vec![7],
        ..Default::default()
    });
    c.envs = vec![KeyValue {
        key: "A".into(),
        value: "config".into(),
    }];
    let (s, user) = build(&c, &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    let p = s.process().as_ref().unwrap();
    assert_eq!(p.env().clone().unwrap(), ["PATH=/bin", "A=config"]);
    assert_eq!(p.cwd(), &PathBuf::from("/work"));
    assert_eq!(user.as_deref(), Some("1000:5"));
    assert_eq!(p.user().additional_gids().clone().unwrap(), [7]);
    // No user asked: the image's, resolved by berthd.
    let (_, user) = build(&cfg(), &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    assert_eq!(user.as_deref(), Some("app"));
}

#[test]
fn capabilities_add_drop_and_privileged() {
    let c = with_sc(LinuxContainerSecurityContext {
        capabilities: Some(crate::api::Capability {
            add_capabilities: vec!["SYS_ADMIN".into()],
            drop_capabilities: vec!["CAP_CHOWN".into()],
            add_ambient_capabilities: vec![],
        }),
        ..Default::default()
    });
    let (s, _) = build(&c, &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    let caps = s
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    let eff = caps.effective().clone().unwrap();
    assert!(eff.contains(&Capability::SysAdmin) && !eff.contains(&Capability::Chown));
    let c = with_sc(LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    });
    let (s, _) = build(&c, &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    let eff = s
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert!(eff
        .effective()
        .clone()
        .unwrap()
        .contains(&Capability::SysAdmin));
    assert!(s.linux().as_ref().unwrap().masked_paths().is_none());
    let bad = with_sc(LinuxContainerSecurityContext {
        capabilities: Some(crate::api::Capability {
            add_capabilities: vec!["NOPE".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(build(&bad, &PodSandboxConfig::default(), &pod(), &image(), None).is_err());
}

#[test]
fn namespaces_join_the_pods_by_path() {
    let (s, _) = build(&cfg(), &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
    let path = |t| {
        ns.iter()
            .find(|n| n.typ() == t)
            .and_then(|n| n.path().clone())
    };
    assert_eq!(
        path(LinuxNamespaceType::Network),
        Some("/run/berth/cri/pods/p/net".into())
    );
    assert_eq!(
        path(LinuxNamespaceType::Ipc),
        Some("/run/berth/cri/pods/p/ipc".into())
    );
    assert_eq!(
        path(LinuxNamespaceType::Uts),
        Some("/run/berth/cri/pods/p/uts".into())
    );
    assert!(ns
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none()));
    let host = PodPaths {
        host_network: true,
        host_ipc: true,
        ..pod()
    };
    let (s, _) = build(&cfg(), &PodSandboxConfig::default(), &host, &image(), None).unwrap();
    let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
    assert!(!ns.iter().any(|n| matches!(
        n.typ(),
        LinuxNamespaceType::Network | LinuxNamespaceType::Ipc | LinuxNamespaceType::Uts
    )));
}

#[test]
fn seccomp_profiles() {
    let sc = |t: i32| {
        with_sc(LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: t,
                localhost_ref: "relative.json".into(),
            }),
            ..Default::default()
        })
    };
    let (s, _) = build(&sc(0), &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    let ann = s.annotations().clone().unwrap();
    assert_eq!(
        ann.get(SECCOMP_ANNOTATION).map(String::as_str),
        Some("runtime/default")
    );
    let (s, _) = build(&sc(1), &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    assert!(!s
        .annotations()
        .clone()
        .unwrap()
        .contains_key(SECCOMP_ANNOTATION));
    assert!(build(&sc(2), &PodSandboxConfig::default(), &pod(), &image(), None).is_err());
}

#[test]
fn bad_input_is_refused() {
    let empty = ImageConfig::default();
    assert!(build(&cfg(), &PodSandboxConfig::default(), &pod(), &empty, None).is_err());
    let c = ContainerConfig {
        working_dir: "rel".into(),
        ..cfg()
    };
    assert!(build(&c, &PodSandboxConfig::default(), &pod(), &image(), None).is_err());
    let c = ContainerConfig {
        envs: vec![KeyValue {
            key: "A=B".into(),
            value: "x".into(),
        }],
        ..cfg()
    };
    assert!(build(&c, &PodSandboxConfig::default(), &pod(), &image(), None).is_err());
}

#[test]
fn a_userns_pods_container_joins_it_and_idmaps_the_pod_files() {
    let u = crate::spec::userns::PodUserns {
        uid: (0, 1000, 100000),
        gid: (0, 1000, 100000),
    };
    let paths = PodPaths {
        userns: Some(u),
        ..pod()
    };
    let (s, _) = build(&cfg(), &PodSandboxConfig::default(), &paths, &image(), None).unwrap();
    let linux = s.linux().as_ref().unwrap();
    let user = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::User)
        .expect("a user namespace");
    assert_eq!(
        user.path().as_deref(),
        Some("/run/berth/cri/pods/p/user".as_ref())
    );
    assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
    for dest in [
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/dev/shm",
    ] {
        let m = s
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == std::path::Path::new(dest));
        let opts = m.and_then(|m| m.options().clone()).unwrap_or_default();
        assert!(opts.iter().any(|o| o == "idmap"), "{dest}: {opts:?}");
    }
    // Without a user namespace: no idmap, no user namespace.
    let (s, _) = build(&cfg(), &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
    assert!(!s.mounts().iter().flatten().any(|m| m
        .options()
        .iter()
        .flatten()
        .any(|o| o == "idmap")));
}

#[test]
fn recursive_read_only_mounts_and_their_rules() {
    let dir = std::env::temp_dir();
    let with = |readonly, prop: MountPropagation| ContainerConfig {
        mounts: vec![Mount {
            host_path: dir.display().to_string(),
            container_path: "/mnt".into(),
            readonly,
            recursive_read_only: true,
            propagation: prop as i32,
            ..Default::default()
        }],
        ..cfg()
    };
    let p = PodSandboxConfig::default();
    let (s, _) = build(
        &with(true, MountPropagation::PropagationPrivate),
        &p,
        &pod(),
        &image(),
        None,
    )
    .unwrap();
    let m = s
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == std::path::Path::new("/mnt"))
        .unwrap();
    let opts = m.options().clone().unwrap();
    assert!(
        opts.iter().any(|o| o == "rro") && opts.iter().any(|o| o == "ro"),
        "{opts:?}"
    );
    for (readonly, prop) in [
        (false, MountPropagation::PropagationPrivate),
        (true, MountPropagation::PropagationHostToContainer),
        (true, MountPropagation::PropagationBidirectional),
    ] {
        let r = build(&with(readonly, prop), &p, &pod(), &image(), None);
        assert!(
            matches!(r, Err(crate::error::CriError::InvalidArgument(_))),
            "{readonly} {prop:?}"
        );
    }
}

#[test]
fn a_bidirectional_mount_makes_the_root_shared_a_host_to_container_one_slave() {
    let root = |props: &[i32]| {
        let c = ContainerConfig {
            mounts: props
                .iter()
                .enumerate()
                .map(|(i, p)| Mount {
                    container_path: format!("/m{i}"),
                    host_path: std::env::temp_dir().to_string_lossy().into_owned(),
                    propagation: *p,
                    ..Default::default()
                })
                .collect(),
            ..cfg()
        };
        let (s, _) = build(&c, &PodSandboxConfig::default(), &pod(), &image(), None).unwrap();
        s.linux().as_ref().unwrap().rootfs_propagation().clone()
    };
    assert_eq!(root(&[]), None);
    assert_eq!(root(&[0]), None);
    assert_eq!(root(&[1]).as_deref(), Some("rslave"));
    assert_eq!(root(&[1, 2]).as_deref(), Some("rshared"));
}
