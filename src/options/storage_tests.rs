//! The storage options' syntax: podman's accepted, every broken rule
//! refused with its own error.

use super::*;
use crate::options::CreateOptions;
use std::collections::HashMap;
use zbus::zvariant::Value as V;

fn parse(pairs: Vec<(&str, V<'static>)>) -> Result<CreateOptions, OptionError> {
    let map: HashMap<String, OwnedValue> = pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), OwnedValue::try_from(v).unwrap()))
        .collect();
    CreateOptions::parse(&map)
}

#[test]
fn volume_entries() {
    let m = parse_volume("/srv/a:/a:ro,nosuid,z").unwrap();
    assert_eq!(m.source, Source::Bind("/srv/a".into()));
    assert_eq!((m.dest.as_str(), m.readonly), ("/a", true));
    assert_eq!(m.options, vec!["nosuid".to_string()]);
    let m = parse_volume("data:/var/lib/../db/:nocopy").unwrap();
    assert_eq!(m.source, Source::Volume("data".into()));
    assert_eq!((m.dest.as_str(), m.nocopy), ("/var/db", true));
    for (bad, want) in [
        ("/a", MountError::Syntax("/a".into())),
        (":/a", MountError::Syntax(":/a".into())),
        ("a:b:c:d", MountError::Syntax("a:b:c:d".into())),
        ("./x:/a", MountError::RelativeSource("./x:/a".into())),
        ("x/y:/a", MountError::RelativeSource("x/y:/a".into())),
        ("bad!:/a", MountError::VolumeName("bad!".into())),
        ("v:a", MountError::RelativeDest("a".into())),
        ("v:/", MountError::ForbiddenDest("/".into())),
        ("v:/proc", MountError::ForbiddenDest("/proc".into())),
        (
            "v:/x/../proc/sys",
            MountError::ForbiddenDest("/x/../proc/sys".into()),
        ),
    ] {
        assert_eq!(parse_volume(bad), Err(want), "{bad}");
    }
    assert!(matches!(
        parse_volume("/a:/b:U"),
        Err(MountError::UnknownOption { option, .. }) if option == "U"
    ));
    // /procfoo is not /proc.
    assert!(parse_volume("v:/procfoo").is_ok());
    let m = parse_volume("/srv/a:/a:rro").unwrap();
    assert!(m.readonly);
    assert_eq!(m.options, vec!["rro".to_string()]);
}

#[test]
fn mount_and_tmpfs_entries() {
    let m = parse_mount("type=bind,src=/s,dst=/d,ro,bind-propagation=rslave").unwrap();
    assert_eq!(m.source, Source::Bind("/s".into()));
    assert!(m.readonly);
    assert_eq!(m.options, vec!["rslave".to_string()]);
    let m = parse_mount("type=volume,source=v,target=/d,readonly=false,volume-nocopy").unwrap();
    assert_eq!(
        (m.source, m.readonly, m.nocopy),
        (Source::Volume("v".into()), false, true)
    );
    let m = parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1777").unwrap();
    assert_eq!(m.options, vec!["size=64m".to_string(), "mode=1777".into()]);
    for bad in [
        "type=nfs,dst=/x",
        "type=bind,dst=/x",
        "type=tmpfs,src=/x,dst=/x",
        "src=/x,dst=/x",
    ] {
        assert!(
            matches!(parse_mount(bad), Err(MountError::MountSyntax(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        parse_mount("type=tmpfs,dst=/t,tmpfs-size=lots"),
        Err(MountError::UnknownOption { .. })
    ));
    assert!(matches!(
        parse_mount("type=bind,src=rel,dst=/x"),
        Err(MountError::RelativeSource(_))
    ));
    let t = parse_tmpfs("/t:size=10%,mode=700,uid=1,noexec,ro").unwrap();
    assert!(t.readonly);
    assert_eq!(t.options, ["size=10%", "mode=700", "uid=1", "noexec"]);
    for bad in ["/t:size=", "/t:mode=9", "/t:size=1mm", "/t:rm -rf"] {
        assert!(parse_tmpfs(bad).is_err(), "{bad}");
    }
}

#[test]
fn options_add_up_and_clash() {
    let o = parse(vec![
        ("volumes", V::from(vec!["v:/a", "/s:/b"])),
        ("tmpfs", V::from(vec!["/c"])),
        ("mounts", V::from(vec!["type=volume,src=v,dst=/d"])),
        ("read_only", V::from(true)),
        ("shm_size", V::from(1u64 << 20)),
    ])
    .unwrap();
    assert_eq!(o.storage.mounts.len(), 4);
    assert_eq!(o.storage.volume_names(), vec!["v".to_string()]);
    assert!(o.storage.read_only && o.storage.shm_size == Some(1 << 20));
    let e = parse(vec![
        ("volumes", V::from(vec!["/s:/a/"])),
        ("tmpfs", V::from(vec!["/a"])),
    ])
    .unwrap_err();
    assert_eq!(e.to_string(), "destination \"/a\" is mounted twice");
    let e = parse(vec![("shm_size", V::from(0u64))]).unwrap_err();
    assert_eq!(e, OptionError::Mount(MountError::ShmSize));
    let e = parse(vec![("volumes", V::from("v:/a"))]).unwrap_err();
    assert!(matches!(e, OptionError::WrongType { .. }), "{e}");
}

#[test]
fn device_entries() {
    let d = parse_device("/dev/fuse").unwrap();
    assert_eq!(
        (d.host.as_str(), d.path.as_str(), d.access.as_str()),
        ("/dev/fuse", "/dev/fuse", "rwm")
    );
    let d = parse_device("/dev/sda:r").unwrap();
    assert_eq!((d.path.as_str(), d.access.as_str()), ("/dev/sda", "r"));
    let d = parse_device("/dev/sda:/dev/xvda:rw").unwrap();
    assert_eq!((d.path.as_str(), d.access.as_str()), ("/dev/xvda", "rw"));
    for bad in [
        "dev/sda",
        "/dev/sda:xvda",
        "/dev/sda:/dev/x:rwx",
        "/dev/sda:/dev/x:rr",
        "/a:/b:r:w",
        "/dev/sda:/",
    ] {
        assert!(parse_device(bad).is_err(), "{bad}");
    }
}
