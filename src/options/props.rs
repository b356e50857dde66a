//! Property tests: whatever a caller puts in CreateContainer's options,
//! parse never panics and accepts exactly the known keys with their types.

use super::*;
use proptest::prelude::*;
use zbus::zvariant::Value as V;

pub const KEYS: &[&str] = &[
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
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("..".to_string()),
        Just("/".to_string()),
        Just("=".to_string()),
        Just("A=1".to_string()),
        Just("/run/x/notify.sock".to_string()),
        Just("\0".to_string()),
        "[a-zA-Z0-9_./=:@-]{0,24}",
        any::<String>(),
        (1usize..70_000).prop_map(|n| "x".repeat(n)),
    ]
}

/// A D-Bus value of any of the types the options use, and others.
pub fn value() -> impl Strategy<Value = OwnedValue> {
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

pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        1 => text(),
    ]
}

/// What parse must say of one option, by hand.
fn accepted(key: &str, v: &OwnedValue) -> bool {
    let s = |v: &OwnedValue| String::try_from(v.try_clone().unwrap()).ok();
    let list = |v: &OwnedValue| Vec::<String>::try_from(v.try_clone().unwrap()).ok();
    match key {
        "labels" => HashMap::<String, String>::try_from(v.try_clone().unwrap()).is_ok_and(|m| {
            m.len() <= MAX_LABELS
                && m.iter()
                    .all(|(k, v)| !k.is_empty() && k.len() <= 256 && v.len() <= 4096)
        }),
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
    /// has the documented type and bounds; refused with a short message.
    #[test]
    fn one_option_is_accepted_exactly_as_documented(k in key(), v in value()) {
        let opts = HashMap::from([(k.clone(), v.try_clone().unwrap())]);
        match CreateOptions::parse(&opts) {
            Ok(_) => prop_assert!(accepted(&k, &v) && k != "user", "{k}: {v:?}"),
            Err(e) => {
                let m = e.to_string();
                prop_assert!(!accepted(&k, &v) || k == "user", "{k}: {v:?}: {m}");
                prop_assert!(m.len() < 512, "an error echoing its input: {} bytes", m.len());
            }
        }
    }
}
