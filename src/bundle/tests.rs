//! The spec edits (given spec + options → expected fields) and the write.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources, Mount, Spec};
use serde_json::json;

use super::edit::bare_linux;
use super::*;
use crate::error::Error;
use crate::options::CreateOptions;

fn spec(v: serde_json::Value) -> Spec {
    serde_json::from_value(v).unwrap()
}

fn applied(opts: &CreateOptions, mut s: Spec) -> Spec {
    apply(opts, &mut s, Path::new("/b"));
    s
}

const USER: &str = r#"{"uid": 0, "gid": 0}"#;

fn with_process(process: serde_json::Value) -> Spec {
    let mut p = process;
    p["user"] = serde_json::from_str(USER).unwrap();
    p["cwd"] = json!("/");
    spec(json!({"ociVersion": "1.0.2", "process": p, "root": {"path": "/r"}}))
}

#[test]
fn args_terminal_and_workdir_replace_the_processes() {
    let opts = CreateOptions {
        args: Some(vec!["echo".into(), "hi".into()]),
        terminal: Some(true),
        workdir: Some("/srv".into()),
        ..Default::default()
    };
    let s = applied(
        &opts,
        with_process(json!({"args": ["sh"], "terminal": false})),
    );
    let p = s.process().as_ref().unwrap();
    assert_eq!(
        p.args().as_deref(),
        Some(&["echo".to_string(), "hi".into()][..])
    );
    assert_eq!(p.terminal(), Some(true));
    assert_eq!(p.cwd(), Path::new("/srv"));
}

#[test]
fn env_entries_replace_their_names_and_come_last() {
    let opts = CreateOptions {
        env: vec!["A=2".into(), "B=3".into()],
        ..Default::default()
    };
    let s = applied(&opts, with_process(json!({"env": ["A=1", "PATH=/bin"]})));
    let env = s.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(env, ["PATH=/bin", "A=2", "B=3"]);
}

#[test]
fn notify_socket_binds_its_directory_and_sets_notify_socket() {
    let opts = CreateOptions {
        notify_socket: Some("/run/x/notify.sock".into()),
        ..Default::default()
    };
    let mut s = with_process(json!({"env": ["NOTIFY_SOCKET=/old"]}));
    let mut proc_mount = Mount::default();
    proc_mount.set_destination("/proc".into());
    s.set_mounts(Some(vec![proc_mount.clone()]));
    let s = applied(&opts, s);
    let env = s.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(env, ["NOTIFY_SOCKET=/run/berth-notify/notify.sock"]);
    let mounts = s.mounts().clone().unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0], proc_mount);
    assert_eq!(
        serde_json::to_value(&mounts[1]).unwrap(),
        json!({"destination": "/run/berth-notify", "type": "bind", "source": "/run/x",
               "options": ["bind", "nosuid", "nodev", "noexec"]})
    );
}

#[test]
fn resources_on_a_spec_without_linux_add_only_resources() {
    let opts = CreateOptions {
        memory: Some(64 << 20),
        cpus: Some(1.5),
        pids_limit: Some(20),
        ..Default::default()
    };
    let s = applied(&opts, with_process(json!({})));
    assert_eq!(
        serde_json::to_value(s.linux()).unwrap(),
        json!({"resources": {
            "memory": {"limit": 64 << 20},
            "cpu": {"period": 100_000, "quota": 150_000},
            "pids": {"limit": 20},
        }})
    );
}

#[test]
fn resources_keep_what_the_spec_had() {
    let opts = CreateOptions {
        memory: Some(1 << 20),
        cpus: Some(0.25),
        ..Default::default()
    };
    let mut s = crate::init_calls::spec::default_spec(false);
    let mut res = LinuxResources::default();
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(5)).set_reservation(Some(4));
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(512)).set_quota(Some(1));
    res.set_memory(Some(mem)).set_cpu(Some(cpu));
    s.linux_mut().as_mut().unwrap().set_resources(Some(res));
    let before = s.linux().clone().unwrap();
    let s = applied(&opts, s);
    let linux = s.linux().clone().unwrap();
    assert_eq!(linux.namespaces(), before.namespaces());
    assert_eq!(linux.masked_paths(), before.masked_paths());
    let res = linux.resources().clone().unwrap();
    let mem = res.memory().unwrap();
    assert_eq!((mem.limit(), mem.reservation()), (Some(1 << 20), Some(4)));
    let cpu = res.cpu().clone().unwrap();
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!((cpu.period(), cpu.quota()), (Some(100_000), Some(25_000)));
    assert_eq!(res.pids(), &None);
}

#[test]
fn a_relative_root_comes_to_mean_the_bundles() {
    let opts = CreateOptions::default();
    let s = applied(
        &opts,
        spec(json!({"root": {"path": "rootfs", "readonly": true}})),
    );
    let root = s.root().clone().unwrap();
    assert_eq!(
        (root.path().as_path(), root.readonly()),
        (Path::new("/b/rootfs"), Some(true))
    );
    let s = applied(&opts, spec(json!({"root": {"path": "/elsewhere"}})));
    assert_eq!(s.root().as_ref().unwrap().path(), Path::new("/elsewhere"));
    assert!(applied(&opts, spec(json!({}))).root().is_none());
}

#[test]
fn without_a_process_the_rest_still_applies() {
    let opts = CreateOptions {
        args: Some(vec!["sh".into()]),
        pids_limit: Some(3),
        ..Default::default()
    };
    let s = applied(&opts, spec(json!({"root": {"path": "rootfs"}})));
    assert!(s.process().is_none());
    let pids = s
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap()
        .pids();
    assert_eq!(pids.map(|p| p.limit()), Some(3));
}

#[test]
fn options_that_leave_the_spec_leave_it_but_for_an_explicit_env() {
    let opts = CreateOptions {
        stdin: true,
        log_unit: Some("x.service".into()),
        ..Default::default()
    };
    let s = crate::init_calls::spec::default_spec(false);
    let mut want = s.clone();
    want.root_mut()
        .as_mut()
        .unwrap()
        .set_path("/b/rootfs".into());
    assert_eq!(applied(&opts, s), want);
    let s = applied(&opts, with_process(json!({})));
    assert_eq!(s.process().as_ref().unwrap().env(), &Some(vec![]));
}

#[test]
fn a_bare_linux_section_is_empty() {
    assert_eq!(serde_json::to_value(bare_linux()).unwrap(), json!({}));
}

/// A bundle under the temp dir with a rootfs and `spec` as config.json,
/// and where its copy goes; removed on drop.
struct Fixture {
    root: PathBuf,
    bundle: PathBuf,
    copy: PathBuf,
}

impl Fixture {
    fn new(name: &str, spec: &Spec) -> Fixture {
        let root = std::env::temp_dir().join(format!("berthd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let bundle = root.join("bundle");
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(spec).unwrap(),
        )
        .unwrap();
        let copy = root.join("bundles/c1");
        Fixture { root, bundle, copy }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn write_from_leaves_the_users_bundle_and_writes_a_private_copy() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new(
        "bundle-write",
        &crate::init_calls::spec::default_spec(false),
    );
    let original = std::fs::read(f.bundle.join("config.json")).unwrap();
    let opts = CreateOptions {
        args: Some(vec!["true".into()]),
        ..Default::default()
    };
    assert_eq!(write_from(&opts, &f.bundle, &f.copy).unwrap(), f.copy);
    assert_eq!(
        std::fs::read(f.bundle.join("config.json")).unwrap(),
        original
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (mode(&f.copy), mode(&f.copy.join("config.json"))),
        (0o700, 0o600)
    );
    let names: Vec<_> = std::fs::read_dir(&f.copy)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.json"], "no temporary file left");
    let loaded = crate::init_calls::spec::load(&f.copy).unwrap();
    assert_eq!(loaded.rootfs, f.bundle.join("rootfs"));
    let args = loaded.spec.process().as_ref().unwrap().args().clone();
    assert_eq!(args, Some(vec!["true".to_string()]));
    // Again, over the first copy (a create retried under the same id).
    let opts = CreateOptions {
        args: Some(vec!["false".into()]),
        ..Default::default()
    };
    write_from(&opts, &f.bundle, &f.copy).unwrap();
    let loaded = crate::init_calls::spec::load(&f.copy).unwrap();
    assert_eq!(
        loaded.spec.process().as_ref().unwrap().args().clone(),
        Some(vec!["false".into()])
    );
}

#[test]
fn a_missing_config_is_an_invalid_argument_naming_it() {
    let f = Fixture::new(
        "bundle-missing",
        &crate::init_calls::spec::default_spec(false),
    );
    let gone = f.root.join("nowhere");
    match Error::from(write_from(&CreateOptions::default(), &gone, &f.copy).unwrap_err()) {
        Error::InvalidArgument(m) => {
            assert!(
                m.starts_with(&format!("{}/config.json: ", gone.display())),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_result_the_runtime_would_refuse_is_an_invalid_argument() {
    let mut s = crate::init_calls::spec::default_spec(false);
    s.set_process(None);
    let f = Fixture::new("bundle-invalid", &s);
    match Error::from(write_from(&CreateOptions::default(), &f.bundle, &f.copy).unwrap_err()) {
        Error::InvalidArgument(m) => assert_eq!(m, "config.json: process: missing"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unwritable_copy_is_internal() {
    let f = Fixture::new(
        "bundle-unwritable",
        &crate::init_calls::spec::default_spec(false),
    );
    // A file where the copy's directory should be.
    std::fs::create_dir_all(f.copy.parent().unwrap()).unwrap();
    std::fs::write(&f.copy, b"").unwrap();
    let spec = crate::init_calls::spec::default_spec(false);
    match Error::from(write_spec(&CreateOptions::default(), spec, &f.bundle, &f.copy).unwrap_err())
    {
        Error::Internal(m) => assert!(m.starts_with(&f.copy.display().to_string()), "{m}"),
        other => panic!("{other:?}"),
    }
}
