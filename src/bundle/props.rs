//! Property test: the typed edits do what the JSON edits they replaced did.
//! `json_apply` is that earlier code (src/overrides.rs, on serde_json::Value),
//! kept as the oracle: for any options and any spec shape, the two results
//! read back as the same spec.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxCpu, LinuxResources, Spec};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::options::props::{key, value};
use crate::options::CreateOptions;

/// Options as parse gives them, every spec-editing one likely (random
/// option maps are mostly refused by parse).
fn options() -> impl Strategy<Value = CreateOptions> {
    let env = prop::collection::vec("[A-Z]{1,3}=[a-z]{0,3}", 0..4);
    (
        prop::option::of(prop::collection::vec("[a-z/]{1,6}", 1..3)),
        env,
        prop::option::of(any::<bool>()),
        prop::option::of("/[a-z]{0,6}"),
        prop::option::of(0..=i64::MAX),
        prop::option::of(prop_oneof![Just(4096.0), Just(1e-9), 0.001..4096.0f64]),
        prop::option::of(any::<i64>()),
        prop::option::of(prop_oneof![
            Just("/n.sock".to_string()),
            "/[a-z]{1,4}/[a-z.]{1,6}"
        ]),
    )
        .prop_map(
            |(args, env, terminal, workdir, memory, cpus, pids_limit, notify_socket)| {
                CreateOptions {
                    args,
                    env,
                    terminal,
                    workdir,
                    memory,
                    cpus,
                    pids_limit,
                    notify_socket,
                    ..Default::default()
                }
            },
        )
}

fn json_apply(r: &CreateOptions, config: &mut Value, bundle: &Path) {
    if !config.is_object() {
        return;
    }
    if !config["process"].is_object() {
        config["process"] = json!({});
    }
    let process = &mut config["process"];
    if let Some(args) = &r.args {
        process["args"] = json!(args);
    }
    if let Some(t) = r.terminal {
        process["terminal"] = json!(t);
    }
    if let Some(w) = &r.workdir {
        process["cwd"] = json!(w);
    }
    let mut env: Vec<String> = process["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    r.env.iter().for_each(|e| old_set_env(&mut env, e));
    if let Some(sock) = &r.notify_socket {
        let sock = Path::new(sock);
        let name = sock.file_name().unwrap_or_default().to_string_lossy();
        old_set_env(&mut env, &format!("NOTIFY_SOCKET=/run/berth-notify/{name}"));
        let dir = sock.parent().unwrap_or(Path::new("/"));
        let mounts = &mut config["mounts"];
        if !mounts.is_array() {
            *mounts = json!([]);
        }
        mounts.as_array_mut().unwrap().push(json!({
            "destination": "/run/berth-notify",
            "type": "bind",
            "source": dir,
            "options": ["bind", "nosuid", "nodev", "noexec"],
        }));
    }
    config["process"]["env"] = json!(env);
    let mut resource = |path: [&str; 2], value: Value| {
        if !config["linux"].is_object() {
            config["linux"] = json!({});
        }
        let res = &mut config["linux"]["resources"];
        if !res.is_object() {
            *res = json!({});
        }
        if !res[path[0]].is_object() {
            res[path[0]] = json!({});
        }
        res[path[0]][path[1]] = value;
    };
    if let Some(m) = r.memory {
        resource(["memory", "limit"], json!(m));
    }
    if let Some(c) = r.cpus {
        resource(["cpu", "period"], json!(100_000u64));
        resource(["cpu", "quota"], json!((c * 100_000.0).round() as i64));
    }
    if let Some(p) = r.pids_limit {
        resource(["pids", "limit"], json!(p));
    }
    if let Some(root) = config["root"]["path"].as_str() {
        if !root.starts_with('/') {
            config["root"]["path"] = json!(bundle.join(root));
        }
    }
}

fn old_set_env(env: &mut Vec<String>, entry: &str) {
    let name = entry.split('=').next().unwrap_or_default();
    env.retain(|e| e.split('=').next() != Some(name));
    env.push(entry.to_string());
}

/// Specs of the shapes bundles have: with or without a process, its env,
/// a linux section, resources, mounts; a relative, absolute or no root.
fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        0..3u8,
        0..3u8,
        any::<bool>(),
        0..3u8,
        prop::collection::vec("[A-Z]{1,3}=[a-z]{0,3}", 0..4),
    )
        .prop_map(|(rootless, process, linux, mounts, root, env)| {
            let mut s = match rootless {
                true => Spec::rootless(1000, 1000),
                false => crate::init_calls::spec::default_spec(false),
            };
            let env = (process == 2).then_some(env);
            match (process, s.process_mut()) {
                (0, p) => *p = None,
                (_, Some(p)) => _ = p.set_env(env),
                _ => {}
            }
            let mut cpu = LinuxCpu::default();
            cpu.set_shares(Some(100)).set_period(Some(50_000));
            let mut res = LinuxResources::default();
            res.set_cpu(Some(cpu));
            match (linux, s.linux_mut()) {
                (0, l) => *l = None,
                (1, Some(l)) => _ = l.set_resources(None),
                (_, Some(l)) => _ = l.set_resources(Some(res)),
                _ => {}
            }
            if mounts {
                s.set_mounts(None);
            }
            match (root, s.root_mut()) {
                (0, r) => *r = None,
                (1, Some(r)) => _ = r.set_path("/abs/rootfs".into()),
                _ => {}
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any options the parser takes, on any spec shape: the typed edits
    /// give the spec the JSON edits gave. The one difference: no process
    /// stays no process (the JSON edits made an unreadable `{}` one); the
    /// load check refuses both.
    #[test]
    fn typed_edits_match_the_json_edits(
        opts in prop_oneof![
            options(),
            prop::collection::hash_map(key(), value(), 0..4)
                .prop_filter_map("refused", |o| CreateOptions::parse(&o).ok()),
        ],
        spec in spec(),
    ) {
        let bundle = Path::new("/bundle");
        let mut typed = spec.clone();
        super::apply(&opts, &mut typed, bundle);
        let mut old = serde_json::to_value(&spec).unwrap();
        json_apply(&opts, &mut old, bundle);
        match serde_json::from_value::<Spec>(old) {
            Ok(old) => prop_assert_eq!(typed, old),
            Err(e) => {
                prop_assert!(spec.process().is_none(), "{e}");
                prop_assert!(typed.process().is_none());
            }
        }
    }
}

#[test]
fn the_oracle_runs_on_an_example() {
    let opts = CreateOptions::parse(&HashMap::new()).unwrap();
    let mut v = json!({"root": {"path": "r"}});
    json_apply(&opts, &mut v, Path::new("/b"));
    assert_eq!(v["root"]["path"], json!("/b/r"));
}
