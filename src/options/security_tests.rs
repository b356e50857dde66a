//! The security options' parsers, by hand.

use super::*;

#[test]
fn caps_by_any_spelling() {
    assert_eq!(parse_cap("cap_add", "sys_admin"), Ok(Capability::SysAdmin));
    assert_eq!(parse_cap("cap_add", "CAP_NET_RAW"), Ok(Capability::NetRaw));
    assert!(parse_cap("cap_add", "CAP_").is_err());
    let e = parse_cap("cap_drop", "SYS_NOPE").unwrap_err();
    assert_eq!(
        e.to_string(),
        "option cap_drop: unknown capability \"SYS_NOPE\""
    );
    assert!(cap_list("cap_add", &["all".into()]).unwrap().all);
}

#[test]
fn ulimits_and_sysctls() {
    assert_eq!(
        parse_ulimit("nofile=100:200"),
        Ok(("RLIMIT_NOFILE".into(), 100, 200))
    );
    assert_eq!(
        parse_ulimit("core=-1"),
        Ok(("RLIMIT_CORE".into(), u64::MAX, u64::MAX))
    );
    for bad in ["nofile", "nofile=2:1", "files=1", "nofile=x", "nofile=1:"] {
        assert!(parse_ulimit(bad).is_err(), "{bad}");
    }
    assert!(check_sysctl("kernel.shmmax", "1").is_ok());
    assert!(check_sysctl("net.ipv4.ip_forward", "1").is_ok());
    assert!(check_sysctl("fs.mqueue.msg_max", "1").is_ok());
    for host in [
        "kernel.pid_max",
        "vm.swappiness",
        "fs.file-max",
        "kernel.hostname",
    ] {
        let e = check_sysctl(host, "1").unwrap_err();
        assert!(e.to_string().contains("not namespaced"), "{e}");
    }
    assert!(check_sysctl("../../etc", "1").is_err());
    assert!(check_sysctl("net.x", "a\nb").is_err());
}

#[test]
fn security_opts() {
    let mut s = SecurityOptions::default();
    s.security_opt("no-new-privileges").unwrap();
    assert_eq!(s.no_new_privileges, Some(true));
    s.security_opt("no-new-privileges=false").unwrap();
    assert_eq!(s.no_new_privileges, Some(false));
    s.security_opt("seccomp=unconfined").unwrap();
    assert_eq!(s.seccomp, Some(Seccomp::Unconfined));
    s.security_opt("mask=/a:/b").unwrap();
    s.security_opt("unmask=ALL").unwrap();
    s.security_opt("label=disable").unwrap();
    s.security_opt("apparmor=unconfined").unwrap();
    assert_eq!(s.mask, ["/a", "/b"]);
    for bad in [
        "seccomp=/x.json",
        "apparmor=x",
        "mask=rel",
        "no-new-privileges=maybe",
    ] {
        assert!(s.security_opt(bad).is_err(), "{bad}");
    }
    assert!(is_group_name("wheel") && is_group_name("app_1"));
    assert!(!is_group_name("a:b") && !is_group_name("-x") && !is_group_name("a b"));
    assert_eq!(parse_signal("int"), Ok(2));
    assert_eq!(parse_signal("SIGUSR1"), Ok(10));
    assert!(parse_signal("SIGNOPE").is_err());
}

/// Every key, sent with a type it does not take: a short named refusal.
#[test]
fn wrong_types_are_refused_by_name() {
    use std::collections::HashMap;
    use zbus::zvariant::{OwnedValue, Value};
    for key in KEYS {
        let wrong = match *key {
            "sysctls" | "annotations" => Value::from(7u8),
            _ => Value::from(HashMap::from([("a".to_string(), "b".to_string())])),
        };
        let opts = HashMap::from([(key.to_string(), OwnedValue::try_from(wrong).unwrap())]);
        let e = super::super::CreateOptions::parse(&opts).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with(&format!("option {key}")), "{key}: {m}");
        assert!(m.len() < 512, "{key}: {m}");
    }
}
