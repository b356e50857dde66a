//! The formats against lines and files as the code before these types wrote
//! them (`serde_json::json!`, so keys in sorted order), and against content
//! that is not a record.

use super::*;

#[test]
fn old_reports_parse() {
    let created = ShimReport::parse("{\"init_pid\":41,\"shim_pid\":40}\n").unwrap();
    assert_eq!(
        created,
        ShimReport::Created {
            init_pid: 41,
            shim_pid: 40,
            init_start: 0,
            shim_start: 0,
        }
    );
    let failed = ShimReport::parse(r#"{"error":"no rootfs","kind":"InvalidArgument"}"#);
    assert_eq!(
        failed.unwrap(),
        ShimReport::Failed {
            error: "no rootfs".into(),
            kind: FailureKind::InvalidArgument
        }
    );
    // The starter's own line when the shim died before reporting.
    let died = ShimReport::parse(r#"{"error":"the shim died during setup"}"#).unwrap();
    assert!(matches!(
        died,
        ShimReport::Failed {
            kind: FailureKind::Internal,
            ..
        }
    ));
}

#[test]
fn reports_round_trip() {
    for r in [
        ShimReport::Created {
            init_pid: 1,
            shim_pid: 2,
            init_start: 3,
            shim_start: 4,
        },
        ShimReport::Failed {
            error: "quote \" and newline \n".into(),
            kind: FailureKind::ControllerUnavailable,
        },
    ] {
        let line = r.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(ShimReport::parse(&line).unwrap(), r);
    }
}

#[test]
fn bad_reports_are_named_errors() {
    for line in [
        "",
        "segfault",
        r#"{"init_pid":41}"#,
        r#"{"init_pid":-1,"shim_pid":40}"#,
        r#"{"error":"x","kind":"Exploded"}"#,
    ] {
        let e = ShimReport::parse(line).unwrap_err();
        assert!(matches!(e, RecordError::Report { .. }), "{line}: {e}");
        assert!(e.to_string().contains(&format!("{line:?}")), "{e}");
    }
}

/// A file in a fresh directory under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn with(name: &str, text: Option<&str>) -> TempFile {
        let dir = std::env::temp_dir().join(format!("berth-proto-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("record.json");
        if let Some(text) = text {
            std::fs::write(&path, text).unwrap();
        }
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn old_records_read() {
    let exit = TempFile::with(
        "old-exit",
        Some(
            "{\"exit_code\":137,\"exit_signal\":9,\"exited_at_us\":1700000000000000,\"pid\":77}\n",
        ),
    );
    let want = ExitRecord {
        pid: 77,
        exit_code: 137,
        exit_signal: 9,
        exited_at_us: 1_700_000_000_000_000,
        oom_killed: false,
    };
    assert_eq!(read::<ExitRecord>(&exit.0).unwrap(), want);
    let shim = TempFile::with(
        "old-shim",
        Some("{\"init_pid\":77,\"pid\":76,\"start_time\":123456}\n"),
    );
    let want = ShimRecord {
        pid: 76,
        start_time: 123456,
        init_pid: 77,
    };
    assert_eq!(read::<ShimRecord>(&shim.0).unwrap(), want);
}

#[test]
fn malformed_exit_records_are_named_errors_not_zero() {
    for (name, text) in [
        ("empty", ""),
        ("torn", "{\"exit_code\":1"),
        ("no-code", r#"{"exit_signal":0,"exited_at_us":1,"pid":7}"#),
        (
            "string-code",
            r#"{"exit_code":"0","exit_signal":0,"exited_at_us":1,"pid":7}"#,
        ),
        (
            "null-code",
            r#"{"exit_code":null,"exit_signal":0,"exited_at_us":1,"pid":7}"#,
        ),
        ("array", "[]"),
    ] {
        let f = TempFile::with(name, Some(text));
        let e = read::<ExitRecord>(&f.0).unwrap_err();
        assert!(matches!(e, RecordError::Malformed { .. }), "{name}: {e}");
        assert!(e.to_string().contains("record.json is malformed"), "{e}");
    }
    let none = TempFile::with("missing", None);
    let e = read::<ExitRecord>(&none.0).unwrap_err();
    assert!(matches!(e, RecordError::Missing { .. }), "{e}");
}

#[test]
fn record_names_for_the_init_and_an_exec() {
    assert_eq!(record_names(None), ("shim.json".into(), "exit.json".into()));
    assert_eq!(
        record_names(Some("e1")),
        ("exec-e1.shim.json".into(), "exec-e1.exit.json".into())
    );
}
