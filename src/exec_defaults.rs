//! ExecContainer's process: what the caller gave, and for what it left out
//! the container's own process (podman exec's habit: same user,
//! capabilities, no_new_privs, rlimits, cwd; env merged, the caller's
//! entries winning).
//!
//! The merge is made on JSON, not on oci-spec's `Process`: which keys the
//! caller *gave* decides what is inherited, and the typed `Process` cannot
//! tell an absent `user` or `cwd` (required fields there) from a given one.

use std::path::Path;
use std::sync::Arc;

use oci_spec::runtime::Process;
use serde_json::{json, Value};

use crate::bundle::set_env;
use crate::daemon::brief;

/// The keys an exec takes from the container's process when not given.
const INHERITED: [&str; 8] = [
    "user",
    "cwd",
    "capabilities",
    "noNewPrivileges",
    "rlimits",
    "apparmorProfile",
    "selinuxLabel",
    "oomScoreAdj",
];

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("process_json: {0}")]
    Json(serde_json::Error),
    #[error("process_json must be a JSON object")]
    NotObject,
    #[error("process_json: cwd {0:?} must be an absolute path")]
    RelativeCwd(String),
    #[error("process_json: args must name the program to run")]
    NoProgram,
}

impl From<ExecError> for crate::error::Error {
    fn from(e: ExecError) -> Self {
        crate::error::Error::InvalidArgument(e.to_string())
    }
}

/// The process to exec: `process_json` completed from `base`, the
/// container's own process ([`container_process`]; Null: nothing is
/// inherited).
pub fn exec_process(process_json: &str, base: &Value) -> Result<Process, ExecError> {
    let mut given: Value = serde_json::from_str(process_json).map_err(ExecError::Json)?;
    if !given.is_object() {
        return Err(ExecError::NotObject);
    }
    inherit(&mut given, base);
    let process: Process = serde_json::from_value(given).map_err(ExecError::Json)?;
    // What the runtime would only find out inside the container.
    if !process.cwd().is_absolute() {
        return Err(ExecError::RelativeCwd(
            brief(&process.cwd().to_string_lossy()).into(),
        ));
    }
    match process.args() {
        Some(a) if a.first().is_some_and(|p| !p.is_empty()) => Ok(process),
        _ => Err(ExecError::NoProgram),
    }
}

/// The `process` of config.json in `config_dir` (Null if unreadable): the
/// rest of the spec — a seccomp profile of hundreds of syscall names, the
/// mounts — is skipped by the parser, not built into a tree.
pub fn container_process(config_dir: &Path) -> Value {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        process: Value,
    }
    std::fs::read(config_dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<Spec>(&t).ok())
        .map(|s| s.process)
        .unwrap_or_default()
}

/// The containers' own processes, read from their config.json at their
/// first exec and kept (as runc keeps the create's config in its state):
/// a probe every few seconds no longer reads and parses the spec each time.
/// Keyed by id and creation time, so a new container of an old id reads
/// its own; an unreadable one is read again next time.
#[derive(Default)]
pub struct Bases(std::sync::Mutex<std::collections::HashMap<String, (u64, Arc<Value>)>>);

impl Bases {
    /// Container `id`'s process (made at `created_at`), `load`ed if not kept.
    pub fn get(&self, id: &str, created_at: u64, load: impl FnOnce() -> Value) -> Arc<Value> {
        let kept = self.0.lock().ok().and_then(|m| m.get(id).cloned());
        if let Some((_, base)) = kept.filter(|(at, _)| *at == created_at) {
            return base;
        }
        let base = Arc::new(load());
        if !base.is_null() {
            if let Ok(mut m) = self.0.lock() {
                m.insert(id.to_string(), (created_at, base.clone()));
            }
        }
        base
    }

    /// Container `id` is gone.
    pub fn forget(&self, id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }
}

/// Completes the caller's process object `given` from `base` (the
/// container's process; anything else inherits nothing).
fn inherit(given: &mut Value, base: &Value) {
    for key in INHERITED {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A bundle dir under the temp dir holding `config`, removed on drop.
    struct Dir(std::path::PathBuf);
    impl Dir {
        fn with(name: &str, config: &Value) -> Dir {
            let d = std::env::temp_dir().join(format!("berthd-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("config.json"), config.to_string()).unwrap();
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn err(json: &str) -> String {
        exec_process(json, &Value::Null).unwrap_err().to_string()
    }

    #[test]
    fn inherit_takes_what_the_caller_left_out_and_merges_env() {
        let mut exec = json!({"args": ["sh"], "env": ["A=9"]});
        inherit(
            &mut exec,
            &json!({"user": {"uid": 5, "gid": 5}, "env": ["A=1", "P=/bin"], "noNewPrivileges": true}),
        );
        assert_eq!(exec["user"]["uid"], json!(5));
        assert_eq!(exec["env"], json!(["P=/bin", "A=9"]));
        assert_eq!(exec["noNewPrivileges"], json!(true));
        assert_eq!(exec["cwd"], json!("/"));
    }

    #[test]
    fn the_callers_keys_win_over_the_containers() {
        let dir = Dir::with(
            "exec-given",
            &json!({"process": {"user": {"uid": 5, "gid": 5}, "cwd": "/srv",
                    "env": ["PATH=/bin"], "noNewPrivileges": true, "args": ["init"]}}),
        );
        let p = exec_process(
            r#"{"args": ["ls"], "user": {"uid": 7, "gid": 8}, "cwd": "/tmp", "noNewPrivileges": false}"#,
            &container_process(&dir.0),
        )
        .unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.no_new_privileges(), Some(false));
        assert_eq!(p.env().as_deref(), Some(&["PATH=/bin".to_string()][..]));
        assert_eq!(p.args().as_deref(), Some(&["ls".to_string()][..]));
    }

    #[test]
    fn the_container_fills_in_user_cwd_and_more() {
        let dir = Dir::with(
            "exec-inherit",
            &json!({"process": {"user": {"uid": 5, "gid": 6}, "cwd": "/srv",
                    "apparmorProfile": "p", "oomScoreAdj": 100, "args": ["init"]}}),
        );
        let p = exec_process(r#"{"args": ["ls"]}"#, &container_process(&dir.0)).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (5, 6));
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!(p.apparmor_profile().as_deref(), Some("p"));
        assert_eq!(p.oom_score_adj(), Some(100));
    }

    #[test]
    fn without_a_config_the_caller_gives_the_user_and_cwd_is_slash() {
        let none = container_process(Path::new("/nonexistent-berth-bundle"));
        assert!(none.is_null());
        let p = exec_process(r#"{"args": ["ls"], "user": {"uid": 1, "gid": 2}}"#, &none).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1, 2));
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!(
            err(r#"{"args": ["ls"]}"#),
            "process_json: missing field `user`"
        );
    }

    #[test]
    fn bad_process_json_is_named() {
        assert!(err("{").starts_with("process_json: "), "{}", err("{"));
        assert_eq!(err("[1]"), "process_json must be a JSON object");
        assert_eq!(
            err(r#"{"args": ["ls"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}"#),
            "process_json: cwd \"rel\" must be an absolute path"
        );
        let no_program = "process_json: args must name the program to run";
        assert_eq!(err(r#"{"user": {"uid": 0, "gid": 0}}"#), no_program);
        assert_eq!(
            err(r#"{"args": [""], "user": {"uid": 0, "gid": 0}}"#),
            no_program
        );
        assert!(err(r#"{"args": "ls"}"#).starts_with("process_json: "));
    }

    /// JSON of any shape, a few levels deep, with the process's keys likely.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(&["args", "env", "cwd", "user", "uid", "gid"][..])
                        .prop_map(String::from),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// ExecContainer's process_json: any text, no panic; what passes
        /// has an absolute cwd and a program.
        #[test]
        fn exec_process_never_panics(text in prop_oneof![any::<String>(), json_value().prop_map(|v| v.to_string())]) {
            match exec_process(&text, &Value::Null) {
                Ok(p) => prop_assert!(p.cwd().is_absolute() && !p.args().as_ref().unwrap()[0].is_empty()),
                Err(e) => prop_assert!(e.to_string().starts_with("process_json")),
            }
        }
    }

    #[test]
    fn a_containers_process_is_read_once_and_a_new_one_of_its_id_anew() {
        let bases = Bases::default();
        let mut loads = 0;
        let mut get = |at| {
            bases.get("c1", at, || {
                loads += 1;
                json!({"cwd": format!("/{at}")})
            })
        };
        assert_eq!(get(1)["cwd"], "/1");
        assert_eq!(get(1)["cwd"], "/1");
        assert_eq!(get(2)["cwd"], "/2", "a new container of the same id");
        assert_eq!(loads, 2);
        bases.forget("c1");
        assert_eq!(bases.get("c1", 2, || Value::Null), Arc::new(Value::Null));
        // Nothing kept of an unreadable one: read again next time.
        assert_eq!(bases.get("c1", 2, || json!({})), Arc::new(json!({})));
    }
}
