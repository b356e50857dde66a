use super::*;

fn config(text: &str) -> UnitConfig {
    unit_config::parse(Path::new("t.toml"), text).unwrap()
}

#[test]
fn a_unit_with_its_dependencies_and_links() {
    let c = config(
        "image = \"x\"\n[unit]\ndescription = \"The web\"\nafter = [\"db\", \"network-online.target\"]\n\
         requires = [\"db\"]\n[install]\nwanted_by = [\"multi-user.target\"]\n",
    );
    let (text, links) = render(
        "web",
        Path::new("/etc/berth/containers/web.toml"),
        &c,
        Path::new("/usr/bin/berthctl"),
    )
    .unwrap();
    for line in [
        "Description=The web",
        "SourcePath=/etc/berth/containers/web.toml",
        "After=berth-db.service",
        "After=network-online.target",
        "Requires=berth-db.service",
        "Conflicts=berth@web.service",
        "ExecStart=/usr/bin/berthctl run-unit web",
        "Type=notify",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert_eq!(links, [("multi-user.target".to_string(), "wants")]);
}

#[test]
fn names_that_could_inject_are_refused() {
    for bad in ["a b", "x\nExecStartPre=/bin/evil", "", "-x", "a+b"] {
        let c = UnitConfig {
            unit: unit_config::UnitSection {
                after: vec![bad.into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(
            render("web", Path::new("w.toml"), &c, Path::new("/b")).is_err(),
            "{bad:?}"
        );
    }
    let c = config("image = \"x\"\n[unit]\ndescription = \"two\\nlines\"\n");
    assert!(render("web", Path::new("w.toml"), &c, Path::new("/b")).is_err());
    assert!(render(
        "a+b",
        Path::new("a+b.toml"),
        &config("image = \"x\"\n"),
        Path::new("/b")
    )
    .is_err());
}

#[test]
fn a_bad_file_is_skipped_and_the_others_generated() {
    let dir = std::env::temp_dir().join(format!("berth-gen-{}", std::process::id()));
    let (conf, out) = (dir.join("conf"), dir.join("out"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        conf.join("ok.toml"),
        "image = \"x\"\n[install]\nwanted_by = [\"multi-user.target\"]\n",
    )
    .unwrap();
    std::fs::write(conf.join("bad.toml"), "image = \"x\"\n\nnope = 1\n").unwrap();
    std::fs::write(conf.join("README"), "not a container").unwrap();
    let o = generate(&conf, &out, Path::new("/usr/bin/berthctl"));
    assert_eq!(o.written, ["berth-ok.service"]);
    assert_eq!(o.failed.len(), 1);
    assert_eq!(o.failed[0].1.line(), Some(3), "{}", o.failed[0].1);
    assert!(out.join("berth-ok.service").exists());
    assert!(!out.join("berth-bad.service").exists());
    let link = out.join("multi-user.target.wants/berth-ok.service");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../berth-ok.service")
    );
    assert!(link.exists(), "the link resolves");
    std::fs::remove_dir_all(&dir).unwrap();
}
