//! The benchmark harness itself works: berth-bench (this build's debug
//! binaries) runs a small pass of its scenarios in a box, berth and whatever
//! peers the machine has (CI installs runc, podman and containerd — the
//! last two for runtime/tests/peers), and writes a report, a chart and the
//! samples.
//! Figures are not checked — benchmarks are not timed tests — only that
//! every scenario measured berth and the files say so.

use std::path::PathBuf;
use std::time::Duration;

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

#[test]
fn bench_harness_runs_every_scenario_small() {
    if berth_box::up_or_skip("bench_harness_runs_every_scenario_small").is_none() {
        return;
    }
    // As bench/run boots it: the bench's work dir (podman's overlay store
    // among it) on a tmpfs, since overlay upper dirs cannot sit on the
    // box's overlay root.
    let mut opts = berth_box::BoxOptions::default();
    opts.tmpfs.push(PathBuf::from("/var/lib/berth-bench"));
    let b = berth_box::SystemdBox::up(opts).expect("a box with the bench's tmpfs");
    let bin = PathBuf::from(BERTHD).with_file_name("");
    let bench = bin.join("berth-bench");
    assert!(
        bench.is_file(),
        "{} missing: build the workspace (cargo test --workspace builds it)",
        bench.display()
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (src, bin_s, out_s) = (
        env!("CARGO_MANIFEST_DIR").to_string(),
        bin.display().to_string(),
        out.display().to_string(),
    );
    let run = b
        .exec_timeout(
            &[
                &bench.display().to_string(),
                "--src",
                &src,
                "--bin",
                &bin_s,
                "--out",
                &out_s,
                "--iterations",
                "2",
                "--concurrency",
                "3",
                "--scale",
                "6",
                "--command",
                "cargo test --test bench_smoke",
            ],
            Duration::from_secs(600),
        )
        .expect("berth-bench ran");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "berth-bench failed: {}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    let samples: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("samples.json")).expect("samples.json"))
            .expect("samples.json is JSON");
    let chart = std::fs::read_to_string(out.join("chart.svg")).expect("chart.svg");
    std::fs::remove_dir_all(&out).expect("removing the output");

    assert!(chart.starts_with("<svg"), "chart.svg is not an SVG");
    assert!(report.contains("## Goals"), "{report}");
    let sections = samples.as_array().expect("a list of sections");
    for id in ["lifecycle", "exec", "first-line", "network", "image-run"] {
        let s = sections
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no section {id} in samples.json"));
        let berth = s["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|x| x["tool"] == "berth")
            .unwrap_or_else(|| panic!("{id}: berth not measured"));
        let n = berth["samples"].as_array().map_or(0, |v| v.len());
        assert!(n >= 2, "{id}: {n} berth samples, 2 asked");
        let title = s["title"].as_str().expect("title");
        assert!(
            report.contains(&format!("## {title}")),
            "{id} missing in report.md"
        );
    }
    // The scale scenarios ran at 6 containers and left nothing (they fail
    // the run otherwise, see bench/src/scenarios/scale.rs).
    assert!(
        sections.len() > 3,
        "only {} sections: the scale scenarios did not report",
        sections.len()
    );
    if which("runc") {
        assert!(
            report.contains("| serial | runc |"),
            "runc not measured:\n{report}"
        );
    } else {
        println!("runc is not installed here: berth measured alone");
    }
    // The cri scenario: berth-cri always (when pods can have a network),
    // containerd's CRI plugin beside it when containerd is installed (or
    // the report names why not).
    if std::path::Path::new("/usr/lib/cni/bridge").is_file() {
        assert!(
            report.contains("| pod start | berth |") && report.contains("| teardown | berth |"),
            "cri: berth-cri not measured:\n{report}"
        );
        // Issue 20's exec round trip: ExecSync always, crictl's when found.
        assert!(
            report.contains("| exec sync | berth |"),
            "cri: berth-cri's exec not measured:\n{report}"
        );
        if which("containerd") {
            assert!(
                report.contains("| pod start | containerd |")
                    || report.contains("containerd's CRI not measured"),
                "cri: containerd neither measured nor a reason given:\n{report}"
            );
        }
    } else {
        println!("no CNI plugins here: the cri scenario measured nothing");
    }
    b.down().expect("box down");
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
