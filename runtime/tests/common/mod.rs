//! Shared by the runtime's integration tests: a busybox bundle on the host (in
//! the cargo target dir, which every box binds at the same path) and a handle
//! that runs `berth-runtime` inside a systemd box.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use berth_box::SystemdBox;
use serde_json::{json, Value};

pub const RUNTIME: &str = env!("CARGO_BIN_EXE_berth-runtime");

pub use berth_box::bundle::Bundle;

/// A bundle whose process runs `args`, from the config `berth-runtime spec`
/// writes (runc's defaults), non-terminal.
pub fn busybox_bundle(name: &str, args: &[&str]) -> Bundle {
    let mut config = serde_json::to_value(berth_init::spec::default_spec(false)).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(args);
    Bundle::create(name, config)
}

/// `berth-runtime` inside a box, with its own --root.
pub struct Rt<'a> {
    pub b: &'a SystemdBox,
    pub root: String,
    pub systemd: bool,
}

pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl<'a> Rt<'a> {
    pub fn new(b: &'a SystemdBox, systemd: bool) -> Self {
        Rt {
            b,
            root: format!("/run/berth-runtime-test-{}", berth_box::bundle::unique("r")),
            systemd,
        }
    }

    /// The full command line of `berth-runtime` with our --root (and driver).
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![RUNTIME.to_string(), "--root".into(), self.root.clone()];
        if self.systemd {
            v.push("--systemd-cgroup".into());
        }
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Runs a verb whose stdio must not be held by the container (anything but
    /// create/run): output collected.
    pub fn run(&self, args: &[&str]) -> Output {
        let argv = self.argv(args);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.b.exec(&refs).unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `create`, with the container's stdout/stderr going to `log` (a file in
    /// the box) so our pipe is not held open by the container.
    pub fn create(&self, id: &str, bundle: &Bundle, log: &str) -> Output {
        let argv = self.argv(&["create", id, "--bundle", bundle.path()]);
        let script = format!("exec {} >{log} 2>&1 </dev/null", shell_join(&argv));
        self.b.sh(&script).unwrap()
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status(id);
            if s == want {
                return;
            }
            assert!(Instant::now() < deadline, "{id} stayed {s}, wanted {want}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// No berth process, state dir or scope left for `id`.
pub fn assert_nothing_left(rt: &Rt, id: &str) {
    let dir = Path::new(&rt.root).join(id);
    let probe = rt.b.sh(&format!("test -e {}", dir.display())).unwrap();
    assert!(
        !probe.status.success(),
        "state dir {} left behind",
        dir.display()
    );
    let units =
        rt.b.sh_ok("systemctl list-units --all --no-legend 'berth-*' || true");
    assert!(
        !units.contains(&format!("berth-{id}.scope")),
        "scope left: {units}"
    );
}
