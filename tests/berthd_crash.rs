//! Crash consistency: berthd (a real systemd service in a box, Restart=on-failure)
//! is SIGKILLed at pseudo-random moments while concurrent clients create,
//! start and delete containers; systemd restarts it. After every restart:
//!
//! - every container ListContainers names fully exists — its object on the
//!   bus, and created/running: its scope active, its shim alive, its state
//!   dir there (with the exec FIFO exactly while created); stopped: an exit
//!   recorded, no shim left — and nothing exists that it does not name: no
//!   berth scope, shim, /run/berth dir or rewritten bundle of another id;
//! - a container that exited while berthd was down reports its real exit code
//!   (WaitContainer), and one that kept running keeps its pid;
//! - everything can then be deleted, leaving nothing at all.
//!
//! Seeded (several seeds, each a sequence of rounds) so a failure can be
//! replayed: BERTH_CRASH_SEEDS=7,9 runs those. The default run takes at most
//! ~60 s; BERTH_SOAK=1 runs more seeds and clients for BERTH_SOAK_SECS
//! (default 600). Each round prints what it did.

mod common;
#[allow(unused_imports)]
use common::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_box::SystemdBox;
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, Value};

fn berthd(b: &SystemdBox) {
    // systemd's start limit must not stop the frequent restarts.
    install_berthd(
        b,
        "mkdir -p /run/systemd/system/berthd.service.d && \\
         printf '[Unit]\\nStartLimitIntervalSec=0\\n' > /run/systemd/system/berthd.service.d/crash-test.conf &&",
    );
}

/// What the test expects of each container it asked for.
#[derive(Default)]
struct Ledger {
    /// id → the exit code its process ends with by itself.
    code: HashMap<String, i32>,
    /// ids a delete was sent for (their exit may be SIGKILL's, or "shim died"
    /// when berthd was killed in the middle of the delete).
    deleted: BTreeSet<String>,
}

#[derive(Default)]
struct Counts {
    ops: AtomicUsize,
    ok: AtomicUsize,
    failed: AtomicUsize,
}

/// One client: create (with its own command) → maybe start → maybe delete,
/// until `stop`. Errors (berthd gone, or busy being restarted) are expected:
/// the client goes on with a fresh id.
fn client(
    b: &SystemdBox,
    bundle: String,
    tag: String,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    counts: Arc<Counts>,
) {
    let c = patient_bus(b);
    let mut n = 0;
    let count = |r: bool| {
        counts.ops.fetch_add(1, Ordering::Relaxed);
        if r {
            counts.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
        }
        r
    };
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("{tag}-{n}");
        let code = rng.below(100) as i32;
        let sleep = ["0", "0.1", "0.4", "1", "2", "30"][rng.below(6)];
        ledger.lock().unwrap().code.insert(id.clone(), code);
        let mut opts: HashMap<String, Value> = HashMap::new();
        opts.insert(
            "args".into(),
            Value::from(vec![
                "sh".to_string(),
                "-c".to_string(),
                format!("sleep {sleep}; exit {code}"),
            ]),
        );
        let created = call::<OwnedObjectPath>(&c, "CreateContainer", &(&id, &bundle, opts));
        if !count(created.is_ok()) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if rng.chance(80) && !count(call::<()>(&c, "StartContainer", &(&id,)).is_ok()) {
            continue;
        }
        if rng.chance(50) {
            ledger.lock().unwrap().deleted.insert(id.clone());
            count(call::<()>(&c, "DeleteContainer", &(&id, true)).is_ok());
        }
    }
}

/// The box's view: berth units (name → active state), shim and monitor
/// processes (container id → pids), /run/berth dirs, rewritten bundles,
/// monitors' sub-cgroups.
struct World {
    units: BTreeMap<String, String>,
    shims: BTreeMap<String, Vec<u32>>,
    dirs: BTreeSet<String>,
    fifos: BTreeSet<String>,
    bundles: BTreeSet<String>,
    /// Sub-cgroups of berthd-monitors.scope (one per container).
    cgroups: BTreeSet<String>,
}

fn world(b: &SystemdBox) -> World {
    let out = b.sh_ok(
        "systemctl list-units --all --no-legend --plain 'berth-*.scope' | while read u l a s rest; do echo \"unit $u $a\"; done; \
         for p in /proc/[0-9]*; do \
           c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue; \
           case \"$c\" in berth-monitor\\ *|*/berth-shim\\ *) echo \"proc ${p#/proc/} $c\";; esac; \
         done; \
         for d in /run/berth/*/; do [ -d \"$d\" ] && echo \"dir $(basename $d)\"; [ -p \"$d/exec.fifo\" ] && echo \"fifo $(basename $d)\"; done; \
         for d in /var/lib/berth/bundles/*/; do [ -d \"$d\" ] && echo \"bundle $(basename $d)\"; done; \
         for d in /sys/fs/cgroup/berth.slice/berthd-monitors.scope/*/; do [ -d \"$d\" ] && echo \"cgroup $(basename $d)\"; done; true",
    );
    let mut w = World {
        units: BTreeMap::new(),
        shims: BTreeMap::new(),
        dirs: BTreeSet::new(),
        fifos: BTreeSet::new(),
        bundles: BTreeSet::new(),
        cgroups: BTreeSet::new(),
    };
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"unit") if f.len() >= 3 => {
                w.units.insert(f[1].to_string(), f[2].to_string());
            }
            Some(&"proc") if f.len() >= 3 => {
                let pid: u32 = f[1].parse().unwrap();
                // berth-monitor INIT DIR RECORD ID …; berth-shim … --id ID …
                let id = if f[2] == "berth-monitor" {
                    // An exec's monitor (record exec-…) belongs to its container too.
                    f.get(6).map(|s| s.to_string())
                } else {
                    f.iter()
                        .position(|a| *a == "--id")
                        .and_then(|i| f.get(i + 1))
                        .map(|s| s.to_string())
                };
                if let Some(id) = id {
                    w.shims.entry(id).or_default().push(pid);
                }
            }
            Some(&"dir") if f.len() >= 2 => {
                w.dirs.insert(f[1].to_string());
            }
            Some(&"fifo") if f.len() >= 2 => {
                w.fifos.insert(f[1].to_string());
            }
            Some(&"bundle") if f.len() >= 2 => {
                w.bundles.insert(f[1].to_string());
            }
            Some(&"cgroup") if f.len() >= 2 => {
                w.cgroups.insert(f[1].to_string());
            }
            _ => {}
        }
    }
    w
}

/// The container a berth unit belongs to: berth-<id>.scope, berth-shim-<id>.scope.
fn unit_owner(unit: &str) -> Option<String> {
    let base = unit.strip_suffix(".scope")?;
    let id = base
        .strip_prefix("berth-shim-")
        .or_else(|| base.strip_prefix("berth-"))?;
    Some(id.to_string())
}

/// Everything that does not hold between berthd's list and the box; empty
/// when consistent.
fn violations(
    c: &zbus::blocking::Connection,
    b: &SystemdBox,
    ledger: &Ledger,
    keep: &BTreeSet<String>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let list: List = match call(c, "ListContainers", &()) {
        Ok(l) => l,
        Err(e) => return vec![format!("ListContainers: {e}")],
    };
    let w = world(b);
    let listed: BTreeMap<String, (String, String)> = list
        .into_iter()
        .map(|(id, s, p)| (id, (s, p.to_string())))
        .collect();
    for (id, (status, path)) in &listed {
        let alive = matches!(status.as_str(), "created" | "running" | "paused");
        // Its object is on the bus and says the same (or has since stopped).
        match try_prop(c, path, "Status").map(|v| String::try_from(v).unwrap_or_default()) {
            Ok(s) if s == *status || s == "stopped" => {}
            Ok(s) => bad.push(format!("{id}: listed {status}, object says {s}")),
            Err(e) => bad.push(format!("{id}: listed {status}, no object: {e}")),
        }
        let scope = w.units.get(&format!("berth-{id}.scope"));
        let shim = w.shims.get(id);
        if alive {
            if scope.map(String::as_str) != Some("active") {
                bad.push(format!("{id}: {status} but its scope is {scope:?}"));
            }
            if shim.is_none() {
                bad.push(format!("{id}: {status} but no shim"));
            }
            if !w.dirs.contains(id) {
                bad.push(format!("{id}: {status} but no /run/berth/{id}"));
            }
            let fifo = w.fifos.contains(id);
            if (status == "created") != fifo {
                bad.push(format!("{id}: {status} but exec.fifo present: {fifo}"));
            }
        } else if status == "stopped" {
            if let Some(pids) = shim {
                bad.push(format!("{id}: stopped but shim {pids:?} alive"));
            }
            let exited = try_prop(c, path, "ExitedAt")
                .ok()
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0);
            if exited == 0 {
                bad.push(format!("{id}: stopped without an exit time"));
            }
            let code = try_prop(c, path, "ExitCode")
                .ok()
                .and_then(|v| i32::try_from(v).ok());
            let want = ledger.code.get(id).copied();
            let by_delete = ledger.deleted.contains(id) && matches!(code, Some(137) | Some(-1));
            if !keep.contains(id) && code != want && !by_delete {
                bad.push(format!(
                    "{id}: exit code {code:?}, its process exits with {want:?}"
                ));
            }
        } else {
            bad.push(format!("{id}: status {status}"));
        }
    }
    // A created container's init has not exec'd yet (it is still the shim's
    // fork); a running one's has: a start cut short must not leave a running
    // process listed as created (or the reverse).
    let mut pids = Vec::new();
    for (id, (status, path)) in &listed {
        if matches!(status.as_str(), "created" | "running") {
            if let Ok(pid) = try_prop(c, path, "Pid").and_then(|v| Ok(u32::try_from(v)?)) {
                pids.push((id, status, pid));
            }
        }
    }
    let script: String = pids
        .iter()
        .map(|(_, _, p)| format!("echo {p} $(readlink /proc/{p}/exe);"))
        .collect();
    let exes = b.sh_ok(&format!("{script} true"));
    for ((id, status, pid), line) in pids.iter().zip(exes.lines()) {
        let exe = line.split_once(' ').map(|x| x.1).unwrap_or_default();
        let still_shim = exe.ends_with("/berth-shim");
        if exe.is_empty() {
            continue; // exited meanwhile: the exit is on its way
        }
        if (status.as_str() == "created") != still_shim {
            bad.push(format!("{id}: {status}, but its init {pid} is {exe}"));
        }
    }
    for unit in w.units.keys().filter(|u| u.ends_with(".scope")) {
        match unit_owner(unit) {
            Some(id) if listed.contains_key(&id) => {}
            _ => bad.push(format!("orphan unit {unit} ({})", w.units[unit])),
        }
    }
    for (id, pids) in &w.shims {
        if !listed.contains_key(id) {
            bad.push(format!("orphan shim {pids:?} of {id}"));
        }
    }
    for d in &w.dirs {
        if !listed.contains_key(d) {
            bad.push(format!("stale /run/berth/{d}"));
        }
    }
    for d in &w.bundles {
        if !listed.contains_key(d) {
            bad.push(format!("stale bundle /var/lib/berth/bundles/{d}"));
        }
    }
    for d in &w.cgroups {
        if !listed.contains_key(d) {
            bad.push(format!("stale cgroup berthd-monitors.scope/{d}"));
        }
    }
    bad
}

/// Consistency is reached once berthd has seen what happened while it was
/// down (shims' exits arrive through pidfds, a monitor drains its streams for
/// up to 2 s): violations must all be gone within a few seconds.
fn assert_consistent(
    c: &zbus::blocking::Connection,
    b: &SystemdBox,
    ledger: &Ledger,
    keep: &BTreeSet<String>,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let bad = violations(c, b, ledger, keep);
        if bad.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: inconsistent after the restart:\n  {}\njournal:\n{}",
                bad.join("\n  "),
                b.sh_ok("journalctl -u berthd -n 40 --no-pager -o cat || true")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Plan {
    seeds: Vec<u64>,
    clients: usize,
    budget: Duration,
}

fn plan() -> Plan {
    let soak = std::env::var_os("BERTH_SOAK").is_some_and(|v| v == "1");
    let seeds = match std::env::var("BERTH_CRASH_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) if soak => (1..=20).collect(),
        Err(_) => vec![1, 2, 3],
    };
    let secs = if soak {
        std::env::var("BERTH_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600)
    } else {
        45
    };
    Plan {
        seeds,
        clients: if soak { 16 } else { 8 },
        budget: Duration::from_secs(secs),
    }
}

#[test]
fn kill_9_during_concurrent_lifecycles_loses_nothing() {
    let Some(b) = berth_box::up_or_skip("kill_9_during_concurrent_lifecycles") else {
        return;
    };
    let started = Instant::now();
    let plan = plan();
    berthd(&b);
    let b = Arc::new(b);
    let c = patient_bus(&b);
    let bundle = busybox_bundle("crash", &["sleep", "300"]);
    let mut slow_bundle = busybox_bundle("crash-slow", &["sleep", "300"]);
    slow_bundle.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "2"]}]
    });
    slow_bundle.save();
    let mut hooker_bundle = busybox_bundle("crash-hook", &["sleep", "300"]);
    hooker_bundle.config["hooks"] = json!({
        "startContainer": [{"path": "/bin/sleep", "args": ["sleep", "2"]}]
    });
    hooker_bundle.save();
    let mut starter_bundle = busybox_bundle("crash-start", &["sleep", "300"]);
    starter_bundle.config["hooks"] = json!({
        "poststart": [{"path": "/bin/sleep", "args": ["sleep", "2"]}]
    });
    starter_bundle.save();
    let per_seed = plan.budget / plan.seeds.len() as u32;
    let (mut rounds, mut ops, mut exits_while_down, mut starts_retried) = (0, 0, 0, 0);
    for &seed in &plan.seeds {
        let mut rng = Rng::new(seed);
        let seed_end = Instant::now() + per_seed;
        let mut round = 0u32;
        while round == 0 || Instant::now() < seed_end {
            round += 1;
            rounds += 1;
            let ledger = Arc::new(Mutex::new(Ledger::default()));
            let counts = Arc::new(Counts::default());
            let stop = Arc::new(AtomicBool::new(false));
            // Creates `id` (expected to exit 0), then starts it on a thread
            // of its own: a StartContainer in flight at the kill.
            let create_then_start_in_flight = |id: &String, bundle: &berth_box::bundle::Bundle| {
                ledger.lock().unwrap().code.insert(id.clone(), 0);
                let opts = HashMap::<String, Value>::new();
                let _: OwnedObjectPath =
                    call(&c, "CreateContainer", &(id, bundle.path(), opts)).unwrap();
                let (b, id) = (b.clone(), id.clone());
                std::thread::spawn(move || {
                    call::<()>(&patient_bus(&b), "StartContainer", &(&id,)).is_ok()
                })
            };
            // A container that keeps running through the crash.
            let keeper = format!("keep-{seed}-{round}");
            let _: OwnedObjectPath = call(
                &c,
                "CreateContainer",
                &(&keeper, bundle.path(), HashMap::<String, Value>::new()),
            )
            .unwrap();
            let () = call(&c, "StartContainer", &(&keeper,)).unwrap();
            let keeper_path = format!("/io/berth/Berth1/container/{}", keeper.replace('-', "_2d"));
            let keeper_pid = u32::try_from(try_prop(&c, &keeper_path, "Pid").unwrap()).unwrap();
            let threads: Vec<_> = (0..plan.clients)
                .map(|t| {
                    let (b, stop, ledger, counts) =
                        (b.clone(), stop.clone(), ledger.clone(), counts.clone());
                    let bundle = bundle.path().to_string();
                    let rng = Rng::new(rng.next());
                    let tag = format!("c{seed}-{round}-{t}");
                    std::thread::spawn(move || client(&b, bundle, tag, rng, stop, ledger, counts))
                })
                .collect();
            // Load for a while, then a witness that exits while berthd is
            // down (it sleeps less than RestartSec), then kill -9.
            std::thread::sleep(Duration::from_millis(100 + rng.below(1400) as u64));
            let witness = format!("w{seed}-{round}");
            let witness_code = 1 + (round % 100) as i32;
            ledger
                .lock()
                .unwrap()
                .code
                .insert(witness.clone(), witness_code);
            let mut opts: HashMap<String, Value> = HashMap::new();
            opts.insert(
                "args".into(),
                Value::from(vec![
                    "sh".to_string(),
                    "-c".to_string(),
                    format!("sleep 0.3; exit {witness_code}"),
                ]),
            );
            let witness_ok =
                call::<OwnedObjectPath>(&c, "CreateContainer", &(&witness, bundle.path(), opts))
                    .is_ok()
                    && call::<()>(&c, "StartContainer", &(&witness,)).is_ok();
            // A start that is sure to be in flight at the kill: its process
            // runs, but the poststart hook (run by berthd's start) is slow.
            let starter = format!("start{seed}-{round}");
            let start_call = create_then_start_in_flight(&starter, &starter_bundle);
            // A start the kill cuts short before the process is let go: a
            // startContainer hook (run by the init, inside) holds it back.
            let hooker = format!("hook{seed}-{round}");
            let hook_call = create_then_start_in_flight(&hooker, &hooker_bundle);
            // The start is past the exec (Start removes the FIFO then) and
            // in its poststart hook.
            let fifo_gone = Instant::now() + Duration::from_secs(10);
            while b
                .sh(&format!("test -e /run/berth/{starter}/exec.fifo"))
                .unwrap()
                .status
                .success()
            {
                assert!(Instant::now() < fifo_gone, "{starter} was never started");
                std::thread::sleep(Duration::from_millis(20));
            }
            // A create that is sure to be in flight across the restart: its
            // createRuntime hook (run by the shim) outlasts RestartSec.
            let slow = format!("slow{seed}-{round}");
            ledger.lock().unwrap().code.insert(slow.clone(), 0);
            let slow_call = {
                let (b, slow, path) = (b.clone(), slow.clone(), slow_bundle.path().to_string());
                std::thread::spawn(move || {
                    let c = patient_bus(&b);
                    call::<OwnedObjectPath>(
                        &c,
                        "CreateContainer",
                        &(&slow, &path, HashMap::<String, Value>::new()),
                    )
                    .is_ok()
                })
            };
            std::thread::sleep(Duration::from_millis(150));
            let pid = main_pid(&b);
            b.sh_ok(&format!("kill -9 {pid}"));
            // The clients keep calling into the gap for a moment.
            std::thread::sleep(Duration::from_millis(rng.below(300) as u64));
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                t.join().unwrap();
            }
            assert!(!slow_call.join().unwrap(), "the slow create was answered");
            assert!(!start_call.join().unwrap(), "the slow start was answered");
            let hook_answered = hook_call.join().unwrap();
            let down = match rng.chance(30) {
                // An operator restarting it at once, not waiting for RestartSec.
                true => {
                    b.sh_ok("systemctl start berthd");
                    wait_back(&b, &c, pid)
                }
                false => wait_back(&b, &c, pid),
            };
            // Let the slow create's shim finish (or give up) before judging.
            std::thread::sleep(Duration::from_millis(2500).saturating_sub(down));
            let ledger = ledger.lock().unwrap();
            let keep: BTreeSet<String> = [keeper.clone()].into();
            let what = format!("seed {seed} round {round}");
            assert_consistent(&c, &b, &ledger, &keep, &what);
            // The keeper still runs, the same process.
            assert_eq!(
                String::try_from(try_prop(&c, &keeper_path, "Status").unwrap()).unwrap(),
                "running",
                "{what}: keeper"
            );
            assert_eq!(
                u32::try_from(try_prop(&c, &keeper_path, "Pid").unwrap()).unwrap(),
                keeper_pid,
                "{what}: keeper pid"
            );
            // The start cut short: its process runs, and says so.
            let starter_path =
                format!("/io/berth/Berth1/container/{}", starter.replace('-', "_2d"));
            assert_eq!(
                String::try_from(try_prop(&c, &starter_path, "Status").unwrap()).unwrap(),
                "running",
                "{what}: a start cut short by the kill"
            );
            // The start cut short before the exec: still created (its init
            // waits for the next Start), and that Start works.
            let hooker_path = format!("/io/berth/Berth1/container/{}", hooker.replace('-', "_2d"));
            let hooker_status =
                String::try_from(try_prop(&c, &hooker_path, "Status").unwrap()).unwrap();
            match (hook_answered, hooker_status.as_str()) {
                (false, "created") => {
                    let () = call(&c, "StartContainer", &(&hooker,))
                        .unwrap_or_else(|e| panic!("{what}: starting {hooker} again: {e}"));
                    starts_retried += 1;
                }
                (_, "running") => {}
                (answered, s) => panic!("{what}: {hooker} is {s} (start answered: {answered})"),
            }
            assert_eq!(
                String::try_from(try_prop(&c, &hooker_path, "Status").unwrap()).unwrap(),
                "running",
                "{what}: {hooker}"
            );
            if witness_ok {
                let exit: (i32, i32) = call(&c, "WaitContainer", &(&witness,)).unwrap();
                assert_eq!(exit, (witness_code, 0), "{what}: the witness's exit");
                exits_while_down += 1;
            }
            // Everything can be deleted, and then nothing is left.
            let list: List = call(&c, "ListContainers", &()).unwrap();
            for (id, _, _) in &list {
                call::<()>(&c, "DeleteContainer", &(id, true))
                    .unwrap_or_else(|e| panic!("{what}: deleting {id}: {e}"));
            }
            assert_consistent(
                &c,
                &b,
                &ledger,
                &keep,
                &format!("{what}, after deleting all"),
            );
            let left: List = call(&c, "ListContainers", &()).unwrap();
            assert!(left.is_empty(), "{what}: {left:?}");
            let n = counts.ops.load(Ordering::Relaxed);
            ops += n;
            eprintln!(
                "{what}: {n} calls ({} ok, {} failed), {} containers listed after restart, \
                 berthd back in {down:?}",
                counts.ok.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
                list.len()
            );
        }
    }
    eprintln!(
        "crash consistency: {} seeds, {rounds} kill -9 rounds, {ops} client calls, \
         {exits_while_down} exits while berthd was down, {rounds} creates and starts cut short \
         ({starts_retried} before the exec, started again), {:?}",
        plan.seeds.len(),
        started.elapsed()
    );
}
