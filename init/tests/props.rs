//! Property tests of what berth-init takes from outside: container ids
//! (`validate_id` accepts exactly the documented alphabet and length) and
//! config.json (`spec::load` never panics: arbitrary text, and valid configs
//! with fields set to values of any shape, either load or give a named
//! error). Case counts are modest for CI; PROPTEST_CASES raises them.

use std::path::{Path, PathBuf};

use berth_init::spec::{self, SpecError};
use proptest::prelude::*;
use serde_json::{json, Value};

/// The documented rule (docs/operations.md, "Limits found"): 1–128 bytes of
/// `[A-Za-z0-9_.+-]`, the first a letter or digit (so never `.` or `..`).
fn id_ok(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.+-".contains(c))
}

fn id_candidate() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.+-]{0,140}",
        "[A-Za-z0-9][A-Za-z0-9_.+-]{120,135}",
        "[a-z./ ]{0,6}",
        Just(".".to_string()),
        Just("..".to_string()),
        Just("a/../b".to_string()),
        Just("é".to_string()),
        "\\PC{0,20}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn validate_id_accepts_exactly_the_documented_ids(id in id_candidate()) {
        let got = berth_init::error::validate_id(&id);
        prop_assert_eq!(got.is_ok(), id_ok(&id), "{:?}: {:?}", id, got);
        if let Err(e) = got {
            prop_assert_eq!(e.kind(), berth_proto::FailureKind::InvalidArgument);
        }
    }
}

/// A bundle directory (with an empty rootfs) of its own per test.
struct TestBundle(PathBuf);

impl TestBundle {
    fn new(name: &str) -> TestBundle {
        let dir = std::env::temp_dir().join(format!("berth-props-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        TestBundle(dir)
    }

    fn load(&self, text: &str) -> Result<spec::Bundle, SpecError> {
        std::fs::write(self.0.join("config.json"), text).unwrap();
        spec::load(&self.0)
    }
}

impl Drop for TestBundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid config: runc's defaults, a plain command, root.path "rootfs".
fn base() -> Value {
    let mut v = serde_json::to_value(spec::default_spec(false)).unwrap();
    v["process"]["terminal"] = json!(false);
    v["process"]["args"] = json!(["sh", "-c", "true"]);
    v["root"]["path"] = json!("rootfs");
    v
}

/// Where mutations land: every part of the spec berth reads.
const FIELDS: &[&str] = &[
    "",
    "ociVersion",
    "root",
    "root/path",
    "root/readonly",
    "process",
    "process/args",
    "process/args/0",
    "process/cwd",
    "process/env",
    "process/env/0",
    "process/user",
    "process/user/uid",
    "process/user/additionalGids",
    "process/rlimits",
    "process/rlimits/0",
    "process/capabilities",
    "process/capabilities/bounding",
    "process/oomScoreAdj",
    "process/terminal",
    "process/noNewPrivileges",
    "process/consoleSize",
    "mounts",
    "mounts/0",
    "mounts/0/destination",
    "mounts/0/source",
    "mounts/0/type",
    "mounts/0/options",
    "mounts/9",
    "linux",
    "linux/namespaces",
    "linux/namespaces/0",
    "linux/namespaces/0/path",
    "linux/uidMappings",
    "linux/gidMappings",
    "linux/resources",
    "linux/resources/memory/limit",
    "linux/resources/cpu/quota",
    "linux/resources/cpu/period",
    "linux/resources/pids/limit",
    "linux/resources/devices",
    "linux/devices",
    "linux/maskedPaths",
    "linux/readonlyPaths",
    "linux/sysctl",
    "linux/seccomp",
    "linux/seccomp/syscalls",
    "linux/cgroupsPath",
    "linux/rootfsPropagation",
    "hooks",
    "hooks/prestart",
    "hooks/createRuntime/0",
    "hostname",
    "annotations",
];

/// Values that mean something to some field (and are wrong for most).
fn pointed_value() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(5000),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(""),
        json!(".."),
        json!("../.."),
        json!("/"),
        json!("relative/path"),
        json!("/proc/self/fd/7"),
        json!("src"),
        json!("rootfs"),
        json!("1.0.0"),
        json!("0.9"),
        json!("9.9.9"),
        json!("\u{0}"),
        json!("é🙂"),
        json!("x".repeat(300)),
        json!([]),
        json!([""]),
        json!(["=x"]),
        json!(["A=1", "NOEQUALS"]),
        json!(["CAP_BOGUS"]),
        json!(["CAP_SYS_ADMIN"]),
        json!([{"type": "bogus"}]),
        json!([{"type": "pid"}, {"type": "pid"}]),
        json!([{"type": "uts"}]),
        json!([{"type": "user", "path": "/proc/1/ns/user"}]),
        json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 1}]),
        json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
        json!({"destination": "../x", "type": "tmpfs"}),
        json!({"destination": "/x", "type": "bind", "source": "/nonexistent"}),
        json!({"destination": "/x", "type": "bind", "source": "src", "options": ["rbind", "bogus"]}),
        json!({"destination": "rel", "type": "proc", "source": "proc"}),
        json!({"path": "relative-hook"}),
        json!({"path": "/bin/true", "timeout": -1}),
        json!({"containerID": 0, "hostID": 0, "size": 0}),
        json!([{"containerID": 0, "hostID": 0, "size": u32::MAX}]),
        json!({"defaultAction": "SCMP_ACT_BOGUS"}),
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["nosuchcall"], "action": "SCMP_ACT_ERRNO"}]}),
        json!([{"allow": false, "access": "rwm", "type": "q"}]),
        json!({"net.ipv4.ip_forward": "1", "kernel.bogus": "x"}),
        json!({"a": {"b": []}}),
    ])
}

/// JSON of any shape.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Sets `value` at `field` (a `/`-path), making objects (or growing arrays)
/// on the way; the empty path replaces the whole config.
fn set(config: &mut Value, field: &str, value: Value) {
    if field.is_empty() {
        *config = value;
        return;
    }
    let mut at = config;
    for part in field.split('/') {
        at = match part.parse::<usize>() {
            Ok(i) => {
                if !at.is_array() {
                    *at = json!([]);
                }
                let a = at.as_array_mut().unwrap();
                while a.len() <= i {
                    a.push(json!({}));
                }
                &mut a[i]
            }
            Err(_) => {
                if !at.is_object() {
                    *at = json!({});
                }
                at.as_object_mut()
                    .unwrap()
                    .entry(part.to_string())
                    .or_insert(Value::Null)
            }
        };
    }
    *at = value;
}

/// An error names what is wrong: a field, a version, or where parsing
/// stopped; never an empty message.
fn check_named(e: &SpecError, bundle: &Path) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.is_empty());
    match e {
        SpecError::Invalid { field, message } => {
            prop_assert!(!field.is_empty() && !message.is_empty(), "{msg}")
        }
        SpecError::Parse { path, message } => {
            prop_assert_eq!(path, &bundle.join("config.json"));
            prop_assert!(!message.is_empty());
        }
        SpecError::Version(_) => {}
        other => prop_assert!(false, "unexpected {other:?}"),
    }
    Ok(())
}

#[test]
fn the_base_config_loads() {
    let b = TestBundle::new("base");
    b.load(&base().to_string()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// A valid config with 1–4 fields set to values of any shape (or ones
    /// that mean something elsewhere): loads, or a named error.
    #[test]
    fn mutated_configs_load_or_name_the_error(
        muts in prop::collection::vec(
            (
                prop::sample::select(FIELDS),
                prop_oneof![3 => pointed_value(), 1 => any_json()],
            ),
            1..5,
        )
    ) {
        thread_local!(static B: TestBundle = TestBundle::new(&format!("mut-{:?}", std::thread::current().id())));
        let mut config = base();
        for (field, value) in muts {
            set(&mut config, field, value);
        }
        B.with(|b| match b.load(&config.to_string()) {
            Ok(loaded) => {
                // What loads is what berth relies on.
                let p = loaded.spec.process().as_ref().unwrap();
                prop_assert!(!p.args().as_ref().unwrap()[0].is_empty());
                prop_assert!(p.cwd().is_absolute());
                prop_assert!(loaded.rootfs.is_absolute() && loaded.rootfs.is_dir());
                prop_assert!(loaded.rootfs.starts_with(b.0.canonicalize().unwrap()));
                Ok(())
            }
            Err(e) => check_named(&e, &b.0),
        })?;
    }

    /// Any text as config.json: a parse error naming the file, or (rarely)
    /// a spec that then validates or names its error — never a panic.
    #[test]
    fn arbitrary_text_never_panics(
        text in prop_oneof![
            any::<String>(),
            any_json().prop_map(|v| v.to_string()),
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]
    ) {
        thread_local!(static B: TestBundle = TestBundle::new(&format!("text-{:?}", std::thread::current().id())));
        B.with(|b| match b.load(&text) {
            Ok(_) => Ok(()),
            Err(e) => check_named(&e, &b.0),
        })?;
    }
}
