//! The CNI protocol, caller side (CNI spec 1.0): each plugin of a conflist is
//! executed with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH
//! in its environment and its network config on stdin; ADD passes each
//! plugin's result to the next as `prevResult`, DEL walks the list backwards
//! with the cached result. A plugin fails with a non-zero exit and an error
//! object `{code, msg, details}` on stdout: its own words reach the user.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

/// The CNI version berth speaks (containernetworking-plugins ≥ 1.0 do too).
pub const CNI_VERSION: &str = "1.0.0";

/// Where plugins are looked for: Debian's package, then the upstream default.
pub const DEFAULT_PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI plugin {plugin:?} not found in {dirs} (install containernetworking-plugins)")]
    PluginMissing { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} {command} failed: {msg}{}", details_suffix(.details))]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
        details: String,
    },
    #[error("cannot run CNI plugin {plugin}: {source}")]
    Spawn {
        plugin: String,
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} printed no valid result: {why}")]
    BadOutput {
        plugin: String,
        command: &'static str,
        why: String,
    },
    #[error("network config: {0}")]
    Conflist(String),
}

fn details_suffix(d: &str) -> String {
    match d.is_empty() {
        true => String::new(),
        false => format!(" ({d})"),
    }
}

/// One container's attachment to one network: what every plugin call gets.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// Capability arguments (e.g. `portMappings`), passed to the plugins
    /// that declare them in `capabilities`.
    pub runtime_config: Map<String, Value>,
    pub plugin_dirs: Vec<PathBuf>,
}

#[derive(Clone, Copy)]
enum Verb {
    Add,
    Del,
    Check,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
            Verb::Check => "CHECK",
        }
    }
}

/// The plugins of `conflist`, with the list's name and version.
fn plugins(conflist: &Value) -> Result<(&str, &str, &Vec<Value>), CniError> {
    let name = conflist["name"]
        .as_str()
        .ok_or_else(|| CniError::Conflist("no \"name\"".into()))?;
    let version = conflist["cniVersion"].as_str().unwrap_or(CNI_VERSION);
    let list = conflist["plugins"]
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| CniError::Conflist(format!("{name}: no \"plugins\"")))?;
    Ok((name, version, list))
}

/// ADD: runs the chain in order; returns the last plugin's result.
pub fn add(conflist: &Value, inv: &Invocation) -> Result<Value, CniError> {
    let (name, version, list) = plugins(conflist)?;
    let mut prev: Option<Value> = None;
    for plugin in list {
        let conf = plugin_config(plugin, name, version, prev.as_ref(), inv)?;
        prev = Some(exec(Verb::Add, plugin, &conf, inv)?);
    }
    prev.ok_or_else(|| CniError::Conflist(format!("{name}: no \"plugins\"")))
}

/// DEL: runs the chain backwards with `cached` (the ADD result) as every
/// plugin's prevResult. Every plugin runs even when one fails (so a broken
/// portmap does not keep host-local's lease); the first error is returned.
pub fn del(conflist: &Value, inv: &Invocation, cached: Option<&Value>) -> Result<(), CniError> {
    let (name, version, list) = plugins(conflist)?;
    let mut first_err = None;
    for plugin in list.iter().rev() {
        let r = plugin_config(plugin, name, version, cached, inv)
            .and_then(|conf| exec(Verb::Del, plugin, &conf, inv));
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// CHECK: asks every plugin whether the attachment is still as `cached` says.
pub fn check(conflist: &Value, inv: &Invocation, cached: &Value) -> Result<(), CniError> {
    let (name, version, list) = plugins(conflist)?;
    for plugin in list {
        let conf = plugin_config(plugin, name, version, Some(cached), inv)?;
        exec(Verb::Check, plugin, &conf, inv)?;
    }
    Ok(())
}

/// The config one plugin reads on stdin: its own object, the list's name and
/// version, the previous result, and the capability arguments it declared.
fn plugin_config(
    plugin: &Value,
    name: &str,
    version: &str,
    prev: Option<&Value>,
    inv: &Invocation,
) -> Result<Value, CniError> {
    let mut conf = plugin
        .as_object()
        .cloned()
        .ok_or_else(|| CniError::Conflist(format!("{name}: a plugin is not an object")))?;
    conf.insert("name".into(), json!(name));
    conf.insert("cniVersion".into(), json!(version));
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let declared = plugin["capabilities"].as_object();
    let runtime: Map<String, Value> = inv
        .runtime_config
        .iter()
        .filter(|(k, _)| declared.is_some_and(|d| d.get(*k) == Some(&json!(true))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Ok(Value::Object(conf))
}

/// The plugin binary for `kind`, from the first directory that has it.
pub fn find_plugin(kind: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    // A type is a file name, never a path (the spec: "the name of the binary").
    let valid = !kind.is_empty() && !kind.contains('/') && kind != "." && kind != "..";
    valid
        .then(|| dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file()))
        .flatten()
        .ok_or_else(|| CniError::PluginMissing {
            plugin: kind.into(),
            dirs: join_dirs(dirs),
        })
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    dirs.join(":")
}

fn exec(verb: Verb, plugin: &Value, conf: &Value, inv: &Invocation) -> Result<Value, CniError> {
    let kind = plugin["type"].as_str().unwrap_or_default();
    let bin = find_plugin(kind, &inv.plugin_dirs)?;
    let stdin = serde_json::to_vec(conf).map_err(|e| CniError::Conflist(e.to_string()))?;
    let spawn_err = |source| CniError::Spawn {
        plugin: kind.into(),
        source,
    };
    let mut cmd = Command::new(&bin);
    cmd.env("CNI_COMMAND", verb.name())
        .env("CNI_CONTAINERID", &inv.container_id)
        .env("CNI_NETNS", &inv.netns)
        .env("CNI_IFNAME", &inv.ifname)
        .env("CNI_PATH", join_dirs(&inv.plugin_dirs))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Plugins run iptables and ip: give them a PATH when we were given none.
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut w) = child.stdin.take() {
        // A plugin that exits without reading gives EPIPE: its exit says why.
        let _ = w.write_all(&stdin);
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let err = parsed.unwrap_or_default();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let msg = err["msg"]
            .as_str()
            .map(String::from)
            .unwrap_or(match stderr.is_empty() {
                true => format!("exit status {}", out.status),
                false => stderr,
            });
        return Err(CniError::Plugin {
            plugin: kind.into(),
            command: verb.name(),
            code: err["code"].as_u64().unwrap_or(0),
            msg,
            details: err["details"].as_str().unwrap_or_default().into(),
        });
    }
    match verb {
        // DEL and CHECK print nothing on success.
        Verb::Del | Verb::Check => Ok(Value::Null),
        Verb::Add => parsed
            .filter(Value::is_object)
            .ok_or_else(|| CniError::BadOutput {
                plugin: kind.into(),
                command: verb.name(),
                why: String::from_utf8_lossy(&out.stdout)
                    .chars()
                    .take(200)
                    .collect(),
            }),
    }
}

/// VERSION of the plugin `kind`: its supported versions.
pub fn version(kind: &str, dirs: &[PathBuf]) -> Result<Vec<String>, CniError> {
    let bin = find_plugin(kind, dirs)?;
    let out = Command::new(&bin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut w) = c.stdin.take() {
                let _ = w.write_all(format!("{{\"cniVersion\":\"{CNI_VERSION}\"}}").as_bytes());
            }
            c.wait_with_output()
        })
        .map_err(|source| CniError::Spawn {
            plugin: kind.into(),
            source,
        })?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| CniError::BadOutput {
        plugin: kind.into(),
        command: "VERSION",
        why: e.to_string(),
    })?;
    Ok(v["supportedVersions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// The plugin directories: $CNI_PATH if set, else the defaults.
pub fn plugin_dirs() -> Vec<PathBuf> {
    match std::env::var("CNI_PATH") {
        Ok(p) if !p.is_empty() => p.split(':').map(PathBuf::from).collect(),
        _ => DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
    }
}

/// The first IPv4 (then any) address of an ADD result, with its gateway,
/// and the container interface's MAC.
pub fn addresses(result: &Value) -> Addresses {
    let ips = result["ips"].as_array().cloned().unwrap_or_default();
    let pick = |v4: bool| {
        ips.iter().find(|ip| {
            ip["address"]
                .as_str()
                .is_some_and(|a| a.contains('.') == v4)
        })
    };
    let field = |ip: Option<&Value>, k: &str| {
        ip.and_then(|ip| ip[k].as_str())
            .map(|s| s.split('/').next().unwrap_or(s).to_string())
            .unwrap_or_default()
    };
    let v4 = pick(true);
    let v6 = pick(false);
    // The interface inside the sandbox (the one with a "sandbox" key).
    let mac = result["interfaces"]
        .as_array()
        .and_then(|ifs| {
            ifs.iter()
                .find(|i| i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        })
        .and_then(|i| i["mac"].as_str())
        .unwrap_or_default()
        .to_string();
    Addresses {
        ipv4: field(v4, "address"),
        gateway: field(v4, "gateway"),
        ipv6: field(v6, "address"),
        mac,
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Addresses {
    pub ipv4: String,
    pub gateway: String,
    pub ipv6: String,
    pub mac: String,
}

/// Whether `p` is a plugin directory that exists (for a clear error early).
pub fn any_dir_exists(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| Path::new(d).is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Invocation {
        let mut rc = Map::new();
        rc.insert("portMappings".into(), json!([{"hostPort": 1}]));
        Invocation {
            container_id: "c".into(),
            netns: "/x".into(),
            ifname: "eth0".into(),
            runtime_config: rc,
            plugin_dirs: vec![],
        }
    }

    #[test]
    fn capability_args_go_only_to_plugins_that_declare_them() {
        let bridge = json!({"type": "bridge"});
        let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let c = plugin_config(&bridge, "n", "1.0.0", None, &inv()).unwrap();
        assert!(c.get("runtimeConfig").is_none());
        assert_eq!(c["name"], "n");
        let prev = json!({"ips": []});
        let c = plugin_config(&portmap, "n", "1.0.0", Some(&prev), &inv()).unwrap();
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
        assert_eq!(c["prevResult"], prev);
    }

    #[test]
    fn a_type_with_a_slash_is_no_plugin() {
        let dirs = vec![PathBuf::from("/usr/bin")];
        assert!(matches!(
            find_plugin("../bin/sh", &dirs),
            Err(CniError::PluginMissing { .. })
        ));
        assert!(matches!(
            find_plugin("", &dirs),
            Err(CniError::PluginMissing { .. })
        ));
    }

    #[test]
    fn addresses_take_the_sandbox_interface() {
        let r = json!({
            "interfaces": [{"name": "berth0", "mac": "aa"}, {"name": "eth0", "mac": "bb", "sandbox": "/n"}],
            "ips": [{"address": "fd00::5/64"}, {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}]
        });
        let a = addresses(&r);
        assert_eq!(a.ipv4, "10.1.0.5");
        assert_eq!(a.gateway, "10.1.0.1");
        assert_eq!(a.ipv6, "fd00::5");
        assert_eq!(a.mac, "bb");
    }
}
