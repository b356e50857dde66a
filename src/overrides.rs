//! CreateContainer's options: labels, and what podman users pass on the
//! command line — args, env, terminal, workdir, resources — applied to a copy
//! of the bundle's config.json (the user's bundle is never written).
//!
//! The copy lives in `<state dir>/bundles/<id>/config.json`, its root.path made
//! absolute so it still names the original rootfs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use zbus::zvariant::OwnedValue;

use crate::daemon::brief;
use crate::error::{Error, Result};

/// Limits on what a caller may send (D-Bus allows messages of many MiB).
const MAX_LABELS: usize = 256;
const MAX_LIST: usize = 4096;
const MAX_STRING: usize = 64 * 1024;

/// What CreateContainer's `a{sv}` options asked for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CreateRequest {
    pub labels: BTreeMap<String, String>,
    pub args: Option<Vec<String>>,
    pub env: Vec<String>,
    pub terminal: Option<bool>,
    pub workdir: Option<String>,
    /// Bytes.
    pub memory: Option<i64>,
    /// CPUs (1.5 = 150 % of one CPU), as a CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    /// A host socket the container's sd_notify messages go to: its directory
    /// is bound at /run/berth-notify and NOTIFY_SOCKET set.
    pub notify_socket: Option<String>,
    /// Give the container a stdin fed by attach clients.
    pub stdin: bool,
    /// File the container's logs under this unit too (`journalctl -u`).
    pub log_unit: Option<String>,
    /// Create from this image (the bundle argument is then empty).
    pub image: Option<String>,
    /// `uid[:gid]` or `name[:group]` (images only: names resolve in the image).
    pub user: Option<String>,
}

pub const KNOWN: &str = "labels, args, env, terminal, workdir, memory, cpus, pids_limit, \
                         notify_socket, stdin, log_unit, image, user";

/// An `a{sv}` option's value as `T`, or InvalidArgument naming the key and
/// the D-Bus type it must have (`want`). Every method's options use it.
pub fn get<T>(key: &str, value: &OwnedValue, want: &str) -> Result<T>
where
    T: TryFrom<OwnedValue>,
{
    value
        .try_clone()
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| Error::InvalidArgument(format!("option {key} must be {want}")))
}

fn check_string(key: &str, s: &str) -> Result<()> {
    if s.len() > MAX_STRING {
        return Err(Error::InvalidArgument(format!(
            "option {key}: strings are limited to {MAX_STRING} bytes"
        )));
    }
    Ok(())
}

fn check_list(key: &str, list: &[String]) -> Result<()> {
    if list.len() > MAX_LIST {
        return Err(Error::InvalidArgument(format!(
            "option {key}: at most {MAX_LIST} entries"
        )));
    }
    list.iter().try_for_each(|s| check_string(key, s))
}

impl CreateRequest {
    pub fn parse(options: &HashMap<String, OwnedValue>) -> Result<CreateRequest> {
        let mut r = CreateRequest::default();
        for (key, value) in options {
            match key.as_str() {
                "labels" => {
                    let map: HashMap<String, String> = get(key, value, "a{ss}")?;
                    if map.len() > MAX_LABELS
                        || map
                            .iter()
                            .any(|(k, v)| k.is_empty() || k.len() > 256 || v.len() > 4096)
                    {
                        return Err(Error::InvalidArgument(format!(
                            "labels: at most {MAX_LABELS}, keys 1-256 bytes, values up to 4096 bytes"
                        )));
                    }
                    r.labels = map.into_iter().collect();
                }
                "args" => {
                    let args: Vec<String> = get(key, value, "as")?;
                    check_list(key, &args)?;
                    if args.is_empty() {
                        return Err(Error::InvalidArgument(
                            "option args must not be empty".into(),
                        ));
                    }
                    r.args = Some(args);
                }
                "env" => {
                    let env: Vec<String> = get(key, value, "as")?;
                    check_list(key, &env)?;
                    if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
                        return Err(Error::InvalidArgument(format!(
                            "option env: {:?} is not NAME=VALUE",
                            brief(bad)
                        )));
                    }
                    r.env = env;
                }
                "terminal" => r.terminal = Some(get(key, value, "b")?),
                "stdin" => r.stdin = get(key, value, "b")?,
                "workdir" => {
                    let w: String = get(key, value, "s")?;
                    check_string(key, &w)?;
                    if !w.starts_with('/') {
                        return Err(Error::InvalidArgument(format!(
                            "option workdir {:?} must be an absolute path",
                            brief(&w)
                        )));
                    }
                    r.workdir = Some(w);
                }
                "memory" => {
                    let m: u64 = get(key, value, "t (bytes)")?;
                    r.memory = Some(i64::try_from(m).map_err(|_| {
                        Error::InvalidArgument(format!("option memory {m} is too large"))
                    })?);
                }
                "cpus" => {
                    let c: f64 = get(key, value, "d")?;
                    if !(c.is_finite() && c > 0.0 && c <= 4096.0) {
                        return Err(Error::InvalidArgument(format!(
                            "option cpus {c} must be > 0 and ≤ 4096"
                        )));
                    }
                    r.cpus = Some(c);
                }
                "pids_limit" => r.pids_limit = Some(get(key, value, "x")?),
                "notify_socket" => {
                    let s: String = get(key, value, "s")?;
                    check_string(key, &s)?;
                    let p = Path::new(&s);
                    if !p.is_absolute() || p.file_name().is_none() {
                        return Err(Error::InvalidArgument(format!(
                            "option notify_socket {:?} must be an absolute socket path",
                            brief(&s)
                        )));
                    }
                    r.notify_socket = Some(s);
                }
                "image" | "user" => {
                    let v: String = get(key, value, "s")?;
                    if v.is_empty() || v.len() > 1024 {
                        return Err(Error::InvalidArgument(format!(
                            "option {key} must be 1-1024 bytes"
                        )));
                    }
                    match key.as_str() {
                        "image" => r.image = Some(v),
                        _ => r.user = Some(v),
                    }
                }
                "log_unit" => {
                    let u: String = get(key, value, "s")?;
                    let ok = !u.is_empty()
                        && u.len() <= 256
                        && u.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"@.-_:\\".contains(&b));
                    if !ok {
                        return Err(Error::InvalidArgument(format!(
                            "option log_unit {:?} is not a unit name",
                            brief(&u)
                        )));
                    }
                    r.log_unit = Some(u);
                }
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown option {:?} (known: {KNOWN})",
                        brief(other)
                    )))
                }
            }
        }
        if r.user.is_some() && r.image.is_none() {
            return Err(Error::InvalidArgument(
                "option user goes with image (a bundle's config.json says its user)".into(),
            ));
        }
        Ok(r)
    }

    /// Whether the spec needs a rewritten copy.
    pub fn changes_spec(&self) -> bool {
        self.args.is_some()
            || !self.env.is_empty()
            || self.terminal.is_some()
            || self.workdir.is_some()
            || self.memory.is_some()
            || self.cpus.is_some()
            || self.pids_limit.is_some()
            || self.notify_socket.is_some()
    }

    /// Applies the request to a config.json value.
    pub fn apply(&self, config: &mut Value, bundle: &Path) {
        // Not a JSON object: nothing to apply to (indexing it would panic);
        // loading the result names what is wrong with it.
        if !config.is_object() {
            return;
        }
        if !config["process"].is_object() {
            config["process"] = json!({});
        }
        let process = &mut config["process"];
        if let Some(args) = &self.args {
            process["args"] = json!(args);
        }
        if let Some(t) = self.terminal {
            process["terminal"] = json!(t);
        }
        if let Some(w) = &self.workdir {
            process["cwd"] = json!(w);
        }
        let mut env = strings(&process["env"]);
        self.env.iter().for_each(|e| set_env(&mut env, e));
        if let Some(sock) = &self.notify_socket {
            let sock = Path::new(sock);
            let name = sock.file_name().unwrap_or_default().to_string_lossy();
            set_env(&mut env, &format!("NOTIFY_SOCKET=/run/berth-notify/{name}"));
            let dir = sock.parent().unwrap_or(Path::new("/"));
            let mounts = &mut config["mounts"];
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            if let Some(m) = mounts.as_array_mut() {
                m.push(json!({
                    "destination": "/run/berth-notify",
                    "type": "bind",
                    "source": dir,
                    "options": ["bind", "nosuid", "nodev", "noexec"],
                }));
            }
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
        if let Some(m) = self.memory {
            resource(["memory", "limit"], json!(m));
        }
        if let Some(c) = self.cpus {
            resource(["cpu", "period"], json!(100_000u64));
            resource(["cpu", "quota"], json!((c * 100_000.0).round() as i64));
        }
        if let Some(p) = self.pids_limit {
            resource(["pids", "limit"], json!(p));
        }
        // The copy sits elsewhere: a relative rootfs must still mean the
        // bundle's.
        if let Some(root) = config["root"]["path"].as_str() {
            if !root.starts_with('/') {
                config["root"]["path"] = json!(bundle.join(root));
            }
        }
    }

    /// Writes the rewritten config.json into `dir` (created 0700) and returns
    /// `dir`, the bundle to create from.
    pub fn write_bundle(&self, bundle: &Path, dir: &Path) -> Result<PathBuf> {
        let text = std::fs::read_to_string(bundle.join("config.json")).map_err(|e| {
            Error::InvalidArgument(format!("{}/config.json: {e}", bundle.display()))
        })?;
        let config: Value = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        self.write_config(config, bundle, dir)
    }

    /// Applies the request to `config` (relative paths meaning `bundle`'s)
    /// and writes it as `dir`/config.json; returns `dir`.
    pub fn write_config(&self, mut config: Value, bundle: &Path, dir: &Path) -> Result<PathBuf> {
        self.apply(&mut config, bundle);
        let internal = |e: std::io::Error| Error::Internal(format!("{}: {e}", dir.display()));
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(internal)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join("config.json"))
            .map_err(internal)?;
        use std::io::Write;
        f.write_all(config.to_string().as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(internal)?;
        // Check the result as the runtime will read it.
        berth_init::spec::load(dir).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(dir.to_owned())
    }
}

/// The strings of a JSON array (others skipped; not an array: none).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `NAME=VALUE` in an env list: any earlier NAME goes, the entry is last.
fn set_env(env: &mut Vec<String>, entry: &str) {
    let name = entry.split('=').next().unwrap_or_default();
    env.retain(|e| e.split('=').next() != Some(name));
    env.push(entry.to_string());
}

/// An exec's process: what the caller gave, and for what it left out the
/// container's own process (podman exec's habit: same user, capabilities,
/// no_new_privs, rlimits, cwd; env merged, the caller's entries winning).
pub fn exec_process(process_json: &str, config_dir: &Path) -> Result<oci_spec::runtime::Process> {
    let mut given: Value = serde_json::from_str(process_json)
        .map_err(|e| Error::InvalidArgument(format!("process_json: {e}")))?;
    if !given.is_object() {
        return Err(Error::InvalidArgument(
            "process_json must be a JSON object".into(),
        ));
    }
    let config: Value = std::fs::read_to_string(config_dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    inherit(&mut given, &config["process"]);
    let process: oci_spec::runtime::Process = serde_json::from_value(given)
        .map_err(|e| Error::InvalidArgument(format!("process_json: {e}")))?;
    // What the runtime would only find out inside the container.
    if !process.cwd().is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "process_json: cwd {:?} must be an absolute path",
            brief(&process.cwd().to_string_lossy())
        )));
    }
    match process.args() {
        Some(a) if a.first().is_some_and(|p| !p.is_empty()) => Ok(process),
        _ => Err(Error::InvalidArgument(
            "process_json: args must name the program to run".into(),
        )),
    }
}

fn inherit(given: &mut Value, base: &Value) {
    for key in [
        "user",
        "cwd",
        "capabilities",
        "noNewPrivileges",
        "rlimits",
        "apparmorProfile",
        "selinuxLabel",
        "oomScoreAdj",
    ] {
        if given.get(key).is_none() && !base[key].is_null() {
            given[key] = base[key].clone();
        }
    }
    let mut env = strings(&base["env"]);
    strings(&given["env"])
        .iter()
        .for_each(|e| set_env(&mut env, e));
    given["env"] = json!(env);
    if given.get("cwd").is_none() {
        given["cwd"] = json!("/");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value as V;

    fn opts(pairs: Vec<(&str, V<'static>)>) -> HashMap<String, OwnedValue> {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), OwnedValue::try_from(v).unwrap()))
            .collect()
    }

    #[test]
    fn parse_names_bad_options() {
        let err = |o| match CreateRequest::parse(&o) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(opts(vec![("colour", V::from("red"))])).contains("unknown option \"colour\""));
        assert!(err(opts(vec![("args", V::from("sh"))])).contains("args must be as"));
        assert!(err(opts(vec![("env", V::from(vec!["NOEQUALS"]))])).contains("NAME=VALUE"));
        assert!(err(opts(vec![("cpus", V::from(-1.0))])).contains("cpus"));
        assert!(err(opts(vec![("workdir", V::from("rel"))])).contains("absolute"));
        assert!(err(opts(vec![("log_unit", V::from("a b"))])).contains("unit name"));
        let huge = "x".repeat(MAX_STRING + 1);
        assert!(err(opts(vec![("args", V::from(vec![huge]))])).contains("limited"));
    }

    #[test]
    fn apply_overrides_args_env_resources_and_root() {
        let r = CreateRequest::parse(&opts(vec![
            ("args", V::from(vec!["echo", "hi"])),
            ("env", V::from(vec!["A=2", "B=3"])),
            ("memory", V::from(64u64 << 20)),
            ("cpus", V::from(1.5)),
            ("pids_limit", V::from(20i64)),
            ("notify_socket", V::from("/run/x/notify.sock")),
        ]))
        .unwrap();
        assert!(r.changes_spec());
        let mut c = json!({"root": {"path": "rootfs"}, "process": {"env": ["A=1", "PATH=/bin"]}});
        r.apply(&mut c, Path::new("/b"));
        assert_eq!(c["process"]["args"], json!(["echo", "hi"]));
        assert_eq!(
            c["process"]["env"],
            json!([
                "PATH=/bin",
                "A=2",
                "B=3",
                "NOTIFY_SOCKET=/run/berth-notify/notify.sock"
            ])
        );
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], json!(64 << 20));
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], json!(150_000));
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], json!(20));
        assert_eq!(c["mounts"][0]["source"], json!("/run/x"));
        assert_eq!(c["root"]["path"], json!("/b/rootfs"));
        let mut exec = json!({"args": ["sh"], "env": ["A=9"]});
        inherit(
            &mut exec,
            &json!({"user": {"uid": 5, "gid": 5}, "env": ["A=1", "P=/bin"], "noNewPrivileges": true}),
        );
        assert_eq!(exec["user"]["uid"], json!(5));
        assert_eq!(exec["env"], json!(["P=/bin", "A=9"]));
        assert_eq!(exec["noNewPrivileges"], json!(true));
        assert_eq!(exec["cwd"], json!("/"));
        let plain = CreateRequest::parse(&opts(vec![("stdin", V::from(true))])).unwrap();
        assert!(!plain.changes_spec());
    }
}

/// Property tests: whatever a caller puts in CreateContainer's options, and
/// whatever the config.json they apply to holds, parse and apply never
/// panic; parse accepts exactly the known keys with their types.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use zbus::zvariant::Value as V;

    const KEYS: &[&str] = &[
        "labels",
        "args",
        "env",
        "terminal",
        "workdir",
        "memory",
        "cpus",
        "pids_limit",
        "notify_socket",
        "stdin",
        "log_unit",
        "image",
        "user",
    ];

    /// Strings a hostile caller sends: empty, paths, `..`, NUL, unicode,
    /// `=`-games, long.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("..".to_string()),
            Just("/".to_string()),
            Just("=".to_string()),
            Just("A=1".to_string()),
            Just("/run/x/notify.sock".to_string()),
            Just("\0".replace("\\0", "\0")),
            "[a-zA-Z0-9_./=:@-]{0,24}",
            any::<String>(),
            (1usize..70_000).prop_map(|n| "x".repeat(n)),
        ]
    }

    /// A D-Bus value of any of the types the options use, and others.
    fn value() -> impl Strategy<Value = OwnedValue> {
        let v = prop_oneof![
            text().prop_map(V::from),
            any::<bool>().prop_map(V::from),
            any::<u64>().prop_map(V::from),
            any::<i64>().prop_map(V::from),
            any::<u32>().prop_map(V::from),
            any::<i32>().prop_map(V::from),
            any::<u8>().prop_map(V::from),
            prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(-0.0),
                Just(1e-300),
                Just(4096.0),
                Just(4096.000001)
            ]
            .prop_map(V::from),
            prop::collection::vec(text(), 0..6).prop_map(V::from),
            (0usize..5000).prop_map(|n| V::from(vec!["a".to_string(); n])),
            prop::collection::hash_map(text(), text(), 0..6).prop_map(V::from),
            (0usize..300).prop_map(|n| {
                V::from(
                    (0..n)
                        .map(|i| (format!("k{i}"), "v".to_string()))
                        .collect::<HashMap<_, _>>(),
                )
            }),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(V::from),
            text().prop_map(|s| V::Value(Box::new(V::from(s)))),
        ];
        v.prop_map(|v| OwnedValue::try_from(v).unwrap())
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(KEYS).prop_map(String::from),
            1 => text(),
        ]
    }

    /// JSON of any shape, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        prop::sample::select(
                            &[
                                "process",
                                "args",
                                "env",
                                "linux",
                                "resources",
                                "memory",
                                "root",
                                "path",
                                "mounts",
                                "cpu",
                                "pids",
                            ][..]
                        )
                        .prop_map(String::from),
                        text()
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// What parse must say of one option, by hand.
    fn accepted(key: &str, v: &OwnedValue) -> bool {
        let s = |v: &OwnedValue| String::try_from(v.try_clone().unwrap()).ok();
        let list = |v: &OwnedValue| Vec::<String>::try_from(v.try_clone().unwrap()).ok();
        match key {
            "labels" => {
                HashMap::<String, String>::try_from(v.try_clone().unwrap()).is_ok_and(|m| {
                    m.len() <= MAX_LABELS
                        && m.iter()
                            .all(|(k, v)| !k.is_empty() && k.len() <= 256 && v.len() <= 4096)
                })
            }
            "args" => list(v).is_some_and(|a| {
                !a.is_empty() && a.len() <= MAX_LIST && a.iter().all(|s| s.len() <= MAX_STRING)
            }),
            "env" => list(v).is_some_and(|a| {
                a.len() <= MAX_LIST
                    && a.iter()
                        .all(|e| e.len() <= MAX_STRING && e.contains('=') && !e.starts_with('='))
            }),
            "terminal" | "stdin" => bool::try_from(v.try_clone().unwrap()).is_ok(),
            "workdir" => s(v).is_some_and(|w| w.len() <= MAX_STRING && w.starts_with('/')),
            "memory" => u64::try_from(v.try_clone().unwrap()).is_ok_and(|m| m <= i64::MAX as u64),
            "cpus" => f64::try_from(v.try_clone().unwrap())
                .is_ok_and(|c| c.is_finite() && c > 0.0 && c <= 4096.0),
            "pids_limit" => i64::try_from(v.try_clone().unwrap()).is_ok(),
            "notify_socket" => s(v).is_some_and(|p| {
                p.len() <= MAX_STRING && p.starts_with('/') && Path::new(&p).file_name().is_some()
            }),
            "image" => s(v).is_some_and(|x| !x.is_empty() && x.len() <= 1024),
            "log_unit" => s(v).is_some_and(|u| {
                !u.is_empty()
                    && u.len() <= 256
                    && u.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"@.-_:\\".contains(&b))
            }),
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// One option: accepted exactly when its key is known and its value
        /// has the documented type and bounds; refused as InvalidArgument.
        #[test]
        fn one_option_is_accepted_exactly_as_documented(k in key(), v in value()) {
            let opts = HashMap::from([(k.clone(), v.try_clone().unwrap())]);
            match CreateRequest::parse(&opts) {
                Ok(_) => prop_assert!(accepted(&k, &v) && k != "user", "{k}: {v:?}"),
                Err(Error::InvalidArgument(m)) => {
                    prop_assert!(!accepted(&k, &v) || k == "user", "{k}: {v:?}: {m}");
                    prop_assert!(m.len() < 512, "an error echoing its input: {} bytes", m.len());
                }
                Err(e) => prop_assert!(false, "{k}: not InvalidArgument: {e:?}"),
            }
        }

        /// Any option map, applied to any JSON: no panic; an object stays
        /// an object with the args, env and resources asked for.
        #[test]
        fn parse_and_apply_never_panic(
            opts in prop::collection::hash_map(key(), value(), 0..8),
            mut config in json_value(),
        ) {
            let Ok(req) = CreateRequest::parse(&opts) else {
                return Ok(());
            };
            let _ = req.changes_spec();
            let was_object = config.is_object();
            req.apply(&mut config, Path::new("/bundle"));
            if was_object {
                prop_assert!(config["process"].is_object());
                prop_assert!(config["process"]["env"].is_array());
                if let Some(args) = &req.args {
                    prop_assert_eq!(&config["process"]["args"], &json!(args));
                }
                if let Some(m) = req.memory {
                    prop_assert_eq!(&config["linux"]["resources"]["memory"]["limit"], &json!(m));
                }
                for e in &req.env {
                    prop_assert!(config["process"]["env"].as_array().unwrap().contains(&json!(e)));
                }
            }
        }

        /// ExecContainer's process_json: any text, no panic; not a JSON
        /// object → InvalidArgument.
        #[test]
        fn exec_process_never_panics(text in prop_oneof![any::<String>(), json_value().prop_map(|v| v.to_string())]) {
            match exec_process(&text, Path::new("/nonexistent-berth-bundle")) {
                Ok(p) => prop_assert!(p.cwd().is_absolute() && !p.args().as_ref().unwrap()[0].is_empty()),
                Err(Error::InvalidArgument(_)) => {}
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }
    }
}
