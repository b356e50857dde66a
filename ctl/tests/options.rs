//! Every berthctl verb refuses an option it does not know: exit 125 (podman's
//! code for its own failure) and the option named, never taken as an image
//! name or a command word. Walks the verbs `--help` lists, so a new verb is
//! covered without editing this file. No berthd needed: the command line is
//! refused before any D-Bus call.

use std::process::Command;

const BERTHCTL: &str = env!("CARGO_BIN_EXE_berthctl");
const MADE_UP: &str = "--no-such-option-xyz";

fn berthctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BERTHCTL)
        .args(args)
        // No bus: a verb that got past its options fails differently.
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .expect("running berthctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The verbs `berthctl [VERB…] --help` lists under "Commands:".
fn verbs(path: &[&str]) -> Vec<String> {
    let args: Vec<&str> = path.iter().copied().chain(["--help"]).collect();
    let (code, out, err) = berthctl(&args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .map(String::from)
        .collect()
}

fn walk(path: Vec<String>, found: &mut Vec<Vec<String>>) {
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    let subs = verbs(&refs);
    if subs.is_empty() {
        found.push(path);
        return;
    }
    for s in subs {
        let mut p = path.clone();
        p.push(s);
        walk(p, found);
    }
}

#[test]
fn every_verb_refuses_a_made_up_option_with_125_naming_it() {
    let mut all = Vec::new();
    walk(Vec::new(), &mut all);
    // The hidden verbs too.
    all.push(vec!["run-unit".into()]);
    all.push(vec!["man".into()]);
    assert!(all.len() >= 30, "too few verbs found: {all:?}");
    for verb in &all {
        let mut args: Vec<&str> = verb.iter().map(String::as_str).collect();
        args.push(MADE_UP);
        let (code, out, err) = berthctl(&args);
        assert_eq!(code, 125, "berthctl {args:?}: {out}{err}");
        assert!(
            err.contains(MADE_UP),
            "berthctl {args:?} does not name it: {err}"
        );
        assert!(out.is_empty(), "berthctl {args:?} printed {out}");
    }
}

#[test]
fn an_option_before_the_image_is_never_the_image() {
    // Options berthctl does not have are refused, never taken for an image.
    for args in [
        &["run", "--rm", "-Q", "/tmp:/x", "busybox", "true"][..],
        &["run", "--mount-x", "type=tmpfs,dst=/x", "busybox"],
        &["create", "--bogus", "busybox"],
    ] {
        let (code, _, err) = berthctl(args);
        assert_eq!(code, 125, "{args:?}: {err}");
        let option = args
            .iter()
            .find(|a| ["-Q", "--mount-x", "--bogus"].contains(a))
            .unwrap();
        assert!(err.contains(&format!("'{option}'")), "{args:?}: {err}");
    }
    // clap's "did you mean".
    let (code, _, err) = berthctl(&["run", "--detahc", "busybox"]);
    assert_eq!(code, 125);
    assert!(err.contains("--detach"), "{err}");
    // What follows the image is the command's, hyphens included: past the
    // command line, the failure is reaching berthd.
    let (code, _, err) = berthctl(&["run", "busybox", "ls", "-v", "--rm"]);
    assert_eq!(code, 125);
    assert!(!err.contains("unexpected argument"), "{err}");
    // --help and --version are not failures.
    assert_eq!(berthctl(&["--version"]).0, 0);
    assert_eq!(berthctl(&["ps", "--help"]).0, 0);
}
