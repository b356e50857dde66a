//! Each option accepted with its value; each wrong type and each broken
//! rule refused with its own error and the message callers see.

use super::*;
use zbus::zvariant::Value as V;

fn opts(pairs: Vec<(&str, V<'static>)>) -> HashMap<String, OwnedValue> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), OwnedValue::try_from(v).unwrap()))
        .collect()
}

fn one(key: &str, v: V<'static>) -> Result<CreateOptions, OptionError> {
    CreateOptions::parse(&opts(vec![(key, v)]))
}

fn err(key: &str, v: V<'static>) -> OptionError {
    one(key, v).unwrap_err()
}

#[test]
fn no_options_ask_for_nothing() {
    let o = CreateOptions::parse(&HashMap::new()).unwrap();
    assert_eq!(o, CreateOptions::default());
    assert!(!o.changes_spec());
}

#[test]
fn each_option_is_taken() {
    let labels = HashMap::from([("a".to_string(), "1".to_string())]);
    let o = one("labels", V::from(labels)).unwrap();
    assert_eq!(o.labels, BTreeMap::from([("a".into(), "1".into())]));
    let o = one("args", V::from(vec!["echo", "hi"])).unwrap();
    assert_eq!(o.args, Some(vec!["echo".into(), "hi".into()]));
    let o = one("env", V::from(vec!["A=1", "B="])).unwrap();
    assert_eq!(o.env, vec!["A=1".to_string(), "B=".into()]);
    assert_eq!(
        one("terminal", V::from(false)).unwrap().terminal,
        Some(false)
    );
    assert!(one("stdin", V::from(true)).unwrap().stdin);
    let o = one("workdir", V::from("/srv")).unwrap();
    assert_eq!(o.workdir.as_deref(), Some("/srv"));
    assert_eq!(
        one("memory", V::from(1u64 << 30)).unwrap().memory,
        Some(1 << 30)
    );
    assert_eq!(one("cpus", V::from(0.5)).unwrap().cpus, Some(0.5));
    assert_eq!(one("cpus", V::from(4096.0)).unwrap().cpus, Some(4096.0));
    assert_eq!(
        one("pids_limit", V::from(-1i64)).unwrap().pids_limit,
        Some(-1)
    );
    let o = one("notify_socket", V::from("/run/x/n.sock")).unwrap();
    assert_eq!(o.notify_socket.as_deref(), Some("/run/x/n.sock"));
    let o = one("log_unit", V::from("my-app@1.service")).unwrap();
    assert_eq!(o.log_unit.as_deref(), Some("my-app@1.service"));
    let o = one("image", V::from("alpine")).unwrap();
    assert_eq!(o.image.as_deref(), Some("alpine"));
    let o = CreateOptions::parse(&opts(vec![
        ("image", V::from("alpine")),
        ("user", V::from("1000:1000")),
    ]))
    .unwrap();
    assert_eq!(o.user.as_deref(), Some("1000:1000"));
}

#[test]
fn a_wrong_type_names_the_option_and_its_type() {
    for (key, v, want) in [
        ("labels", V::from("a=1"), "a{ss}"),
        ("args", V::from("sh"), "as"),
        ("env", V::from("A=1"), "as"),
        ("terminal", V::from("yes"), "b"),
        ("stdin", V::from(1u32), "b"),
        ("workdir", V::from(vec!["/"]), "s"),
        ("memory", V::from(-1i64), "t (bytes)"),
        ("cpus", V::from(2u64), "d"),
        ("pids_limit", V::from(5u64), "x"),
        ("notify_socket", V::from(true), "s"),
        ("log_unit", V::from(1i32), "s"),
        ("image", V::from(1i32), "s"),
        ("user", V::from(1000u32), "s"),
    ] {
        let e = err(key, v);
        assert_eq!(
            e,
            OptionError::WrongType {
                key: key.into(),
                want
            },
            "{key}"
        );
        assert_eq!(e.to_string(), format!("option {key} must be {want}"));
    }
}

#[test]
fn labels_are_bounded() {
    let msg = "labels: at most 256, keys 1-256 bytes, values up to 4096 bytes";
    let too_many: HashMap<String, String> = (0..=MAX_LABELS)
        .map(|i| (format!("k{i}"), String::new()))
        .collect();
    for map in [
        too_many,
        HashMap::from([(String::new(), "v".to_string())]),
        HashMap::from([("k".repeat(257), "v".to_string())]),
        HashMap::from([("k".to_string(), "v".repeat(4097))]),
    ] {
        let e = err("labels", V::from(map));
        assert_eq!(
            (e.clone(), e.to_string().as_str()),
            (OptionError::Labels, msg)
        );
    }
}

#[test]
fn lists_and_strings_are_bounded() {
    let e = err("args", V::from(vec!["x"; MAX_LIST + 1]));
    assert_eq!(e.to_string(), "option args: at most 4096 entries");
    let e = err("env", V::from(vec!["A=1"; MAX_LIST + 1]));
    assert_eq!(e, OptionError::ListTooLong { key: "env".into() });
    let huge = "x".repeat(MAX_STRING + 1);
    let e = err("args", V::from(vec![huge.clone()]));
    assert_eq!(
        e.to_string(),
        "option args: strings are limited to 65536 bytes"
    );
    let e = err("workdir", V::from(format!("/{huge}")));
    assert_eq!(
        e,
        OptionError::StringTooLong {
            key: "workdir".into()
        }
    );
    let e = err("notify_socket", V::from(format!("/{huge}")));
    assert_eq!(
        e,
        OptionError::StringTooLong {
            key: "notify_socket".into()
        }
    );
}

#[test]
fn each_bad_value_is_named() {
    let cases: Vec<(&str, V<'static>, OptionError, &str)> = vec![
        ("args", V::from(Vec::<String>::new()), OptionError::EmptyArgs,
         "option args must not be empty"),
        ("env", V::from(vec!["A=1", "NOEQUALS"]), OptionError::EnvEntry("NOEQUALS".into()),
         "option env: \"NOEQUALS\" is not NAME=VALUE"),
        ("env", V::from(vec!["=1"]), OptionError::EnvEntry("=1".into()),
         "option env: \"=1\" is not NAME=VALUE"),
        ("workdir", V::from("rel"), OptionError::RelativeWorkdir("rel".into()),
         "option workdir \"rel\" must be an absolute path"),
        ("memory", V::from(u64::MAX), OptionError::MemoryTooLarge(u64::MAX),
         "option memory 18446744073709551615 is too large"),
        ("cpus", V::from(-1.0), OptionError::CpusOutOfRange(-1.0),
         "option cpus -1 must be > 0 and ≤ 4096"),
        ("cpus", V::from(0.0), OptionError::CpusOutOfRange(0.0),
         "option cpus 0 must be > 0 and ≤ 4096"),
        ("cpus", V::from(4096.5), OptionError::CpusOutOfRange(4096.5),
         "option cpus 4096.5 must be > 0 and ≤ 4096"),
        ("notify_socket", V::from("rel.sock"), OptionError::NotifySocket("rel.sock".into()),
         "option notify_socket \"rel.sock\" must be an absolute socket path"),
        ("notify_socket", V::from("/"), OptionError::NotifySocket("/".into()),
         "option notify_socket \"/\" must be an absolute socket path"),
        ("image", V::from(""), OptionError::NameLength { key: "image".into() },
         "option image must be 1-1024 bytes"),
        ("log_unit", V::from("a b"), OptionError::LogUnit("a b".into()),
         "option log_unit \"a b\" is not a unit name"),
        ("log_unit", V::from(""), OptionError::LogUnit("".into()),
         "option log_unit \"\" is not a unit name"),
        ("colour", V::from("red"), OptionError::Unknown("colour".into()),
         "unknown option \"colour\" (known: labels, args, env, terminal, workdir, memory, cpus, \
          pids_limit, notify_socket, stdin, log_unit, image, user, network, ports, hostname, dns, dns_search, add_hosts, listen_fds, listen_fdnames, spec, slice, log_path)"),
    ];
    for (key, v, want, msg) in cases {
        let e = err(key, v);
        assert_eq!(e, want, "{key}");
        assert_eq!(e.to_string(), msg);
    }
    // NaN is not equal to itself: its message is the check.
    let e = err("cpus", V::from(f64::NAN));
    assert_eq!(e.to_string(), "option cpus NaN must be > 0 and ≤ 4096");
    let e = err("user", V::from("x".repeat(1025)));
    assert_eq!(e.to_string(), "option user must be 1-1024 bytes");
}

#[test]
fn user_needs_an_image() {
    let e = err("user", V::from("1000"));
    assert_eq!(e, OptionError::UserWithoutImage);
    assert_eq!(
        e.to_string(),
        "option user goes with image (a bundle's config.json says its user)"
    );
}

#[test]
fn a_long_value_is_quoted_briefly() {
    let e = err("colour".repeat(20_000).as_str(), V::from("red"));
    assert!(e.to_string().len() < 512, "{e}");
    let e = err("workdir", V::from("r".repeat(60_000)));
    assert!(e.to_string().contains("… (60000 bytes)"), "{e}");
}

#[test]
fn errors_reach_the_bus_as_invalid_argument() {
    match crate::error::Error::from(OptionError::EmptyArgs) {
        crate::error::Error::InvalidArgument(m) => {
            assert_eq!(m, "option args must not be empty")
        }
        other => panic!("{other:?}"),
    }
    let v = OwnedValue::try_from(V::from("x")).unwrap();
    match get::<bool>("follow", &v, "b") {
        Err(crate::error::Error::InvalidArgument(m)) => {
            assert_eq!(m, "option follow must be b")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_options_that_edit_the_spec_ask_for_a_copy() {
    for (key, v) in [
        ("args", V::from(vec!["sh"])),
        ("env", V::from(vec!["A=1"])),
        ("terminal", V::from(false)),
        ("workdir", V::from("/")),
        ("memory", V::from(1u64)),
        ("cpus", V::from(1.0)),
        ("pids_limit", V::from(1i64)),
        ("notify_socket", V::from("/run/n.sock")),
    ] {
        assert!(one(key, v).unwrap().changes_spec(), "{key}");
    }
    let labels = HashMap::from([("a".to_string(), "1".to_string())]);
    for (key, v) in [
        ("labels", V::from(labels)),
        ("stdin", V::from(true)),
        ("log_unit", V::from("x.service")),
        ("image", V::from("alpine")),
    ] {
        assert!(!one(key, v).unwrap().changes_spec(), "{key}");
    }
}

#[test]
fn network_options_are_checked_and_named() {
    let e = err("network", V::from("a b"));
    assert_eq!(e, OptionError::Network("a b".into()));
    assert!(e.to_string().contains("want none, host, container:<id>"));
    assert_eq!(
        err("network", V::from("container:")),
        OptionError::Network("container:".into())
    );
    let e = err("ports", V::from(vec!["70000:80"]));
    assert!(
        matches!(
            e,
            OptionError::Port(berth_net::PortError::OutOfRange { .. })
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with("option ports: port \"70000:80\": 70000 is out of range"));
    assert!(matches!(
        err("hostname", V::from("-x")),
        OptionError::NetFile(_)
    ));
    assert!(matches!(
        err("dns", V::from(vec!["nine"])),
        OptionError::NetFile(_)
    ));
    assert!(matches!(
        err("add_hosts", V::from(vec!["noip"])),
        OptionError::NetFile(_)
    ));
    // Ports with a network that has none to publish from.
    let opts = HashMap::from([
        (
            "network".to_string(),
            OwnedValue::try_from(V::from("host")).unwrap(),
        ),
        (
            "ports".to_string(),
            OwnedValue::try_from(V::from(vec!["1:1"])).unwrap(),
        ),
    ]);
    let e = CreateOptions::parse(&opts).unwrap_err();
    assert!(matches!(e, OptionError::Conflict(_)), "{e}");
    // podman's and docker's names for the default network.
    let opts = HashMap::from([(
        "network".to_string(),
        OwnedValue::try_from(V::from("bridge")).unwrap(),
    )]);
    let r = CreateOptions::parse(&opts).unwrap();
    assert_eq!(r.net.network, Some(net::NetworkMode::Named("berth".into())));
}
