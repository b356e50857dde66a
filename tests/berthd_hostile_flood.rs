//! 10,000+ random and hostile D-Bus calls at a running berthd (a real
//! systemd service in a box): every method of both interfaces and the
//! container objects, made-up method and interface names, wrong signatures,
//! ids with `..`, `/`, unicode, control characters and tens of KB, option
//! dicts with unknown keys and wrong types, garbage process objects —
//! pipelined over several connections. Then: berthd still answers, is the
//! same process, every call got an answer (a named error or a result; only
//! the waits may outlast their timeout), nothing it made is left once the
//! few containers the flood did create are deleted (no records, no berth
//! units, no /run/berth dirs, no rewritten bundles), its fds are back to
//! where they were and its memory has not ballooned.
//!
//! Seeded: BERTH_FLOOD_SEED=N replays a run; BERTH_FLOOD_CALLS=N sets the
//! count (default 10,000).

mod common;
#[allow(unused_imports)]
use common::*;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

const MANAGER_METHODS: &[&str] = &[
    "CreateContainer",
    "StartContainer",
    "KillContainer",
    "PauseContainer",
    "ResumeContainer",
    "ExecContainer",
    "WaitExec",
    "WaitContainer",
    "DeleteContainer",
    "GetContainerStats",
    "ListContainers",
    "GetContainer",
    "AttachContainer",
    "AttachExec",
    "ResizeTerminal",
    "GetLogs",
    "Info",
];
const IMAGES_METHODS: &[&str] = &[
    "ImportImage",
    "PullImage",
    "ListImages",
    "InspectImage",
    "TagImage",
    "RemoveImage",
    "PruneImages",
    "SaveImages",
];
const CONTAINER_METHODS: &[&str] = &[
    "Start", "Kill", "Pause", "Resume", "Exec", "Wait", "Delete", "Attach", "Logs",
];
const OPTION_KEYS: &[&str] = &[
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
    "id",
    "attach",
    "tail",
    "follow",
    "name",
    "username",
    "password",
    "plain_http",
];

/// How the outcomes name zbus's own errors (wrong signatures, bad names).
const ZBUS_OWN: &str = "org.freedesktop.zbus.Error (zbus: signature mismatch, bad name)";

/// The container the flood may find alive (its id is one of those drawn).
const VICTIM: &str = "victim";

/// A string a hostile caller sends as an id, an exec id, a name or a path.
fn hostile_string(r: &mut Rng) -> String {
    match r.below(16) {
        0 => String::new(),
        1 => "..".into(),
        2 => "/".into(),
        3 => "../../etc/passwd".into(),
        4 => "a/b".into(),
        5 => "é🙂\u{202e}".into(),
        6 => "x\u{7}\u{1b}[2Jy".into(),
        7 => "a".repeat(129),
        8 => "b".repeat(1 + r.below(40_000)),
        9 => VICTIM.into(),
        10 => format!("flood-{}", r.below(40)),
        11 => ".hidden".into(),
        12 => "-rf".into(),
        13 => "%s%n$(reboot)`id`".into(),
        14 => (0..r.below(24))
            .map(|_| char::from_u32(1 + r.below(0x2FFF) as u32).unwrap_or('?'))
            .collect(),
        _ => format!("{}", r.next()),
    }
}

/// A value of a random type (the right one for some key, wrong for most).
fn hostile_value(r: &mut Rng) -> OwnedValue {
    let v = match r.below(14) {
        0 => Value::from(hostile_string(r)),
        1 => Value::from(r.chance(50)),
        2 => Value::from(r.next()),
        3 => Value::from(r.next() as i64),
        4 => Value::from(r.next() as u32),
        5 => Value::from(f64::from_bits(r.next())),
        6 => Value::from(*r.pick(&[f64::NAN, f64::INFINITY, -1.0, 0.0, 1e308, 0.5])),
        7 => Value::from(
            (0..r.below(6))
                .map(|_| hostile_string(r))
                .collect::<Vec<_>>(),
        ),
        8 => Value::from(
            (0..r.below(6))
                .map(|_| (hostile_string(r), hostile_string(r)))
                .collect::<HashMap<_, _>>(),
        ),
        9 => Value::from(vec![0u8; r.below(64)]),
        10 => Value::from(r.next() as i16),
        11 => Value::Value(Box::new(Value::from(hostile_string(r)))),
        12 => Value::from(("A=1", 7u32, true)),
        _ => Value::from(vec!["sh".to_string(), "-c".into(), "exit 3".into()]),
    };
    OwnedValue::try_from(v).unwrap()
}

fn hostile_options(r: &mut Rng) -> HashMap<String, OwnedValue> {
    (0..r.below(5))
        .map(|_| {
            let key = if r.chance(85) {
                r.pick(OPTION_KEYS).to_string()
            } else {
                hostile_string(r)
            };
            (key, hostile_value(r))
        })
        .collect()
}

/// process_json: garbage, JSON of the wrong shape, or (rarely) a real one.
fn hostile_process(r: &mut Rng) -> String {
    match r.below(8) {
        0 => hostile_string(r),
        1 => "{".into(),
        2 => "[]".into(),
        3 => "null".into(),
        4 => r#"{"args": 7, "cwd": ".."}"#.into(),
        5 => format!(
            r#"{{"args": ["{}"], "cwd": "relative"}}"#,
            "x".repeat(r.below(100))
        ),
        6 => r#"{"args": ["sh"], "env": ["=bad"], "user": {"uid": -1}}"#.into(),
        _ => r#"{"args": ["true"]}"#.into(),
    }
}

/// A reference that cannot reach any registry but a closed loopback port.
fn safe_reference(r: &mut Rng) -> String {
    r.pick(&[
        "",
        "..",
        "UPPER/Case",
        "a@sha256:zz",
        "127.0.0.1:9/none/x:1",
        "[::1]:9/x",
        "localhost:9/x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ":::",
    ])
    .to_string()
}

/// A path to import from or save to: never a device, never outside /tmp
/// for a write.
fn safe_path(r: &mut Rng) -> String {
    match r.below(8) {
        0 => String::new(),
        1 => "relative/dir".into(),
        2 => "/".into(),
        3 => "/etc/passwd".into(),
        4 => "/nonexistent/x".into(),
        5 => format!("/tmp/flood-{}", r.below(1000)),
        6 => "/tmp/../tmp/flood-dots".into(),
        _ => format!("/nonexistent/{}", hostile_string(r).replace('\0', "")),
    }
}

/// One call's body: the right signature with hostile values, or a wrong one
/// (variants named after their D-Bus signatures).
#[allow(clippy::upper_case_acronyms)]
enum Body {
    Unit,
    S(String),
    I(i32),
    B(bool),
    SS(String, String),
    SB(String, bool),
    SI(String, i32),
    SSI(String, String, i32),
    SSA(String, String, HashMap<String, OwnedValue>),
    SA(String, HashMap<String, OwnedValue>),
    A(HashMap<String, OwnedValue>),
    SSQQ(String, String, u16, u16),
    AsS(Vec<String>, String),
    SSS(String, String, String),
    V(OwnedValue),
    UUU(u32, u32, u32),
}

fn right_body(r: &mut Rng, iface: &str, member: &str, bundle: &str) -> Body {
    let id = if r.chance(20) {
        VICTIM.to_string()
    } else {
        hostile_string(r)
    };
    match (iface, member) {
        (_, "CreateContainer") => {
            // Now and then a create that can work, so what follows it
            // (start, kill, exec, delete) meets real containers too.
            let b = if r.chance(15) {
                bundle.to_string()
            } else {
                safe_path(r)
            };
            Body::SSA(id, b, hostile_options(r))
        }
        (_, "StartContainer" | "PauseContainer" | "ResumeContainer" | "WaitContainer")
        | (_, "GetContainerStats" | "GetContainer" | "AttachContainer") => Body::S(id),
        (_, "KillContainer") => Body::SSI(
            id,
            r.pick(&["init", "all", "", "everyone"]).to_string(),
            *r.pick(&[0, 1, 9, 15, 19, 18, -1, 65, 1000, i32::MIN]),
        ),
        (_, "ExecContainer") => Body::SSA(id, hostile_process(r), hostile_options(r)),
        (_, "WaitExec" | "AttachExec") => Body::SS(id, hostile_string(r)),
        (_, "DeleteContainer") => Body::SB(id, r.chance(50)),
        (_, "ResizeTerminal") => {
            Body::SSQQ(id, hostile_string(r), r.next() as u16, r.next() as u16)
        }
        (_, "GetLogs") => Body::SA(id, hostile_options(r)),
        (_, "ListContainers" | "Info" | "ListImages" | "PruneImages") => Body::Unit,
        (_, "ImportImage") => Body::SA(safe_path(r), hostile_options(r)),
        (_, "PullImage") => {
            // Only options that keep it on the loopback.
            let mut o = HashMap::new();
            if r.chance(50) {
                o.insert("plain_http".into(), hostile_value(r));
            }
            Body::SA(safe_reference(r), o)
        }
        (_, "InspectImage" | "RemoveImage") => Body::S(hostile_string(r)),
        (_, "TagImage") => Body::SS(hostile_string(r), hostile_string(r)),
        (_, "SaveImages") => Body::AsS(
            (0..r.below(4)).map(|_| hostile_string(r)).collect(),
            safe_path(r),
        ),
        // The container object's methods (no id).
        (_, "Start" | "Pause" | "Resume" | "Wait" | "Attach") => Body::Unit,
        (_, "Kill") => Body::SI(
            r.pick(&["init", "all", "x"]).to_string(),
            *r.pick(&[0, 9, 15, 99]),
        ),
        (_, "Exec") => Body::SA(hostile_process(r), hostile_options(r)),
        (_, "Delete") => Body::B(r.chance(50)),
        (_, "Logs") => Body::A(hostile_options(r)),
        _ => Body::Unit,
    }
}

fn wrong_body(r: &mut Rng) -> Body {
    match r.below(12) {
        0 => Body::Unit,
        1 => Body::S(hostile_string(r)),
        2 => Body::I(r.next() as i32),
        3 => Body::B(true),
        4 => Body::SS(hostile_string(r), hostile_string(r)),
        5 => Body::SI(hostile_string(r), r.next() as i32),
        6 => Body::A(hostile_options(r)),
        7 => Body::SSS(hostile_string(r), hostile_string(r), hostile_string(r)),
        8 => Body::V(hostile_value(r)),
        9 => Body::UUU(r.next() as u32, 0, u32::MAX),
        10 => Body::AsS(vec![hostile_string(r)], hostile_string(r)),
        _ => Body::SSA(hostile_string(r), hostile_string(r), HashMap::new()),
    }
}

/// Every byte outside [A-Za-z0-9] as _xx, as berthd names container objects.
fn object_path(id: &str) -> String {
    let mut p = String::from("/io/berth/Berth1/container/");
    if id.is_empty() {
        p.push('_');
    }
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

/// (object path, interface, member, body) of one random call.
fn random_call(r: &mut Rng, bundle: &str) -> (String, String, String, Body) {
    let (path, iface, methods): (String, &str, &[&str]) = match r.below(20) {
        0..=10 => (PATH.into(), MANAGER, MANAGER_METHODS),
        11..=13 => (PATH.into(), "io.berth.Berth1.Images", IMAGES_METHODS),
        14..=16 => {
            let id = if r.chance(50) {
                VICTIM.to_string()
            } else {
                hostile_string(r)
            };
            let id: String = id.chars().take(200).collect();
            (
                object_path(&id),
                "io.berth.Berth1.Container",
                CONTAINER_METHODS,
            )
        }
        17 => (
            PATH.into(),
            "org.freedesktop.DBus.Properties",
            &["Get", "GetAll", "Set"],
        ),
        18 => (
            PATH.into(),
            *r.pick(&[
                "io.berth.Berth1.Bogus",
                "org.freedesktop.DBus.Introspectable",
            ]),
            &["Introspect", "Ping"],
        ),
        _ => (
            r.pick(&[
                "/",
                "/io",
                "/io/berth/Berth1/container",
                "/io/berth/Berth1/x",
            ])
            .to_string(),
            MANAGER,
            MANAGER_METHODS,
        ),
    };
    let member = if r.chance(8) {
        // A made-up member name (valid syntax, so it reaches berthd).
        let len = 1 + r.below(30);
        let mut m = String::from("X");
        for _ in 0..len {
            m.push(*r.pick(&['a', 'Z', '_', '9', 'q', 'e']));
        }
        m
    } else {
        r.pick(methods).to_string()
    };
    let body = if r.chance(25) {
        wrong_body(r)
    } else {
        right_body(r, iface, &member, bundle)
    };
    (path, iface.to_string(), member, body)
}

async fn send(
    c: &zbus::Connection,
    path: &str,
    iface: &str,
    member: &str,
    body: &Body,
) -> zbus::Result<zbus::Message> {
    macro_rules! go {
        ($b:expr) => {
            c.call_method(Some(DEST), path, Some(iface), member, $b)
                .await
        };
    }
    match body {
        Body::Unit => go!(&()),
        Body::S(a) => go!(&(a,)),
        Body::I(a) => go!(&(a,)),
        Body::B(a) => go!(&(a,)),
        Body::SS(a, b) => go!(&(a, b)),
        Body::SB(a, b) => go!(&(a, b)),
        Body::SI(a, b) => go!(&(a, b)),
        Body::SSI(a, b, i) => go!(&(a, b, i)),
        Body::SSA(a, b, o) => go!(&(a, b, o)),
        Body::SA(a, o) => go!(&(a, o)),
        Body::A(o) => go!(&(o,)),
        Body::SSQQ(a, b, x, y) => go!(&(a, b, x, y)),
        Body::AsS(l, s) => go!(&(l, s)),
        Body::SSS(a, b, s) => go!(&(a, b, s)),
        Body::V(v) => go!(&(v,)),
        Body::UUU(a, b, x) => go!(&(a, b, x)),
    }
}

/// How the calls ended.
#[derive(Default)]
struct Tally {
    /// error name (or "ok") → count
    outcomes: BTreeMap<String, usize>,
    /// member → count of calls that outlasted their timeout
    timeouts: BTreeMap<String, usize>,
    /// refused before sending (an object path or value zbus will not send)
    unsent: usize,
    /// error name → a few of its messages (for the names that are not ours)
    samples: BTreeMap<String, Vec<String>>,
}

/// (VmRSS kB, open fds) of berthd's main process.
#[test]
fn ten_thousand_hostile_calls_leave_berthd_whole() {
    let Some(b) = berth_box::up_or_skip("ten_thousand_hostile_calls") else {
        return;
    };
    let c = berthd(&b);
    let seed: u64 = std::env::var("BERTH_FLOOD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let calls: usize = std::env::var("BERTH_FLOOD_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    eprintln!("seed {seed} (BERTH_FLOOD_SEED={seed} replays), {calls} calls");
    let bundle = busybox_bundle("flood", &["sleep", "300"]);
    for _ in 0..5 {
        let _: List = call(&c, "ListContainers", &()).unwrap();
    }
    // One container made and deleted first: the exec server, started at
    // berthd's first create, stays (its socket and process handle are
    // berthd's for good, not a leak of the flood's).
    let _: OwnedObjectPath = call(
        &c,
        "CreateContainer",
        &("warm", bundle.path(), no_options()),
    )
    .unwrap();
    let () = call(&c, "DeleteContainer", &("warm", true)).unwrap();
    // Without containers: what berthd holds when the flood's are deleted.
    let idle = berthd_usage(&b);
    let _: OwnedObjectPath = call(
        &c,
        "CreateContainer",
        &(VICTIM, bundle.path(), no_options()),
    )
    .unwrap();
    let () = call(&c, "StartContainer", &(VICTIM,)).unwrap();
    for _ in 0..5 {
        let _: List = call(&c, "ListContainers", &()).unwrap();
        let _ = call::<()>(&c, "KillContainer", &(VICTIM, "nobody", 0));
    }
    let pid = main_pid(&b);
    let before = berthd_usage(&b);
    eprintln!(
        "berthd before: VmRSS {} kB, {} fds ({} fds without containers)",
        before.0, before.1, idle.1
    );

    let addr = format!(
        "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
        b.init_pid()
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let answered = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..6 {
            conns.push(
                zbus::connection::Builder::address(addr.as_str())
                    .unwrap()
                    .build()
                    .await
                    .unwrap(),
            );
        }
        // 48 callers, each its own seeded sequence, until `calls` answered.
        let mut tasks = Vec::new();
        for w in 0..48u64 {
            let conn = conns[w as usize % conns.len()].clone();
            let (tally, answered) = (tally.clone(), answered.clone());
            let bundle = bundle.path().to_string();
            tasks.push(tokio::spawn(async move {
                let mut r = Rng::new(seed ^ (w + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
                while answered.load(Ordering::Relaxed) < calls {
                    let (path, iface, member, body) = random_call(&mut r, &bundle);
                    // The waits block while what they wait for runs.
                    let waits = matches!(member.as_str(), "WaitContainer" | "WaitExec" | "Wait");
                    let limit = Duration::from_secs(if waits { 1 } else { 20 });
                    let outcome =
                        tokio::time::timeout(limit, send(&conn, &path, &iface, &member, &body))
                            .await;
                    let mut t = tally.lock().unwrap();
                    let key = match outcome {
                        Err(_) => {
                            *t.timeouts.entry(member.clone()).or_default() += 1;
                            answered.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Ok(Ok(_)) => format!("ok {member}"),
                        Ok(Err(zbus::Error::MethodError(name, msg, _))) => {
                            // zbus's own replies: to arguments that do not
                            // match the signature (before berthd's code runs),
                            // and its org.freedesktop.DBus.Properties's.
                            if name.as_str() == "org.freedesktop.zbus.Error"
                                && msg.as_deref().is_some_and(|m| {
                                    m.starts_with("Signature mismatch")
                                        || m.starts_with("Invalid interface name")
                                })
                            {
                                *t.outcomes.entry(ZBUS_OWN.into()).or_default() += 1;
                                answered.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let dull = name.starts_with("org.freedesktop.DBus.Error.Unknown")
                                || name.ends_with(".NotFound");
                            let kept = t.samples.get(name.as_str()).map_or(0, Vec::len);
                            if !dull && kept < 400 {
                                let msg: String =
                                    msg.unwrap_or_default().chars().take(200).collect();
                                t.samples
                                    .entry(name.to_string())
                                    .or_default()
                                    .push(format!("{iface}.{member}: {msg}"));
                            }
                            name.to_string()
                        }
                        Ok(Err(zbus::Error::FDO(e))) => format!("fdo {e}"),
                        Ok(Err(
                            zbus::Error::InvalidField
                            | zbus::Error::Variant(_)
                            | zbus::Error::Names(_),
                        )) => {
                            t.unsent += 1;
                            continue;
                        }
                        Ok(Err(e)) => format!("transport: {e}"),
                    };
                    *t.outcomes.entry(key).or_default() += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // The flood kills and deletes the victim now and then: bring it
        // back, so calls keep meeting a live container too.
        let keeper = {
            let conn = conns[0].clone();
            let answered = answered.clone();
            let bundle = bundle.path().to_string();
            tokio::spawn(async move {
                let mut revived = 0;
                while answered.load(Ordering::Relaxed) < calls {
                    let status = match conn
                        .call_method(Some(DEST), PATH, Some(MANAGER), "ListContainers", &())
                        .await
                        .and_then(|m| m.body().deserialize::<List>())
                    {
                        Ok(l) => l.into_iter().find(|c| c.0 == VICTIM).map(|c| c.1),
                        Err(_) => None,
                    };
                    if status.as_deref() != Some("running") && status.as_deref() != Some("paused") {
                        let m = |member: &'static str| {
                            let conn = conn.clone();
                            async move {
                                let _ = match member {
                                    "DeleteContainer" => {
                                        conn.call_method(
                                            Some(DEST),
                                            PATH,
                                            Some(MANAGER),
                                            member,
                                            &(VICTIM, true),
                                        )
                                        .await
                                    }
                                    _ => {
                                        conn.call_method(
                                            Some(DEST),
                                            PATH,
                                            Some(MANAGER),
                                            member,
                                            &(VICTIM,),
                                        )
                                        .await
                                    }
                                };
                            }
                        };
                        if status.is_some() {
                            m("DeleteContainer").await;
                        }
                        let opts: HashMap<String, OwnedValue> = HashMap::new();
                        let _ = conn
                            .call_method(
                                Some(DEST),
                                PATH,
                                Some(MANAGER),
                                "CreateContainer",
                                &(VICTIM, bundle.as_str(), opts),
                            )
                            .await;
                        m("StartContainer").await;
                        revived += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                revived
            })
        };
        for t in tasks {
            t.await.unwrap();
        }
        let revived = keeper.await.unwrap();
        eprintln!("the victim was made anew {revived} times");
    });
    let flood_time = t0.elapsed();
    drop(rt);
    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    let total: usize =
        tally.outcomes.values().sum::<usize>() + tally.timeouts.values().sum::<usize>();
    eprintln!(
        "{total} calls answered in {flood_time:?} ({:.0}/s); {} refused by zbus before sending",
        total as f64 / flood_time.as_secs_f64(),
        tally.unsent
    );
    for (k, n) in &tally.outcomes {
        eprintln!("  {n:6}  {k}");
    }
    for (k, msgs) in &tally.samples {
        let mut seen: Vec<&String> = msgs.iter().collect();
        seen.sort();
        seen.dedup();
        for m in seen.iter().take(40) {
            eprintln!("          {k}: {m}");
        }
    }
    for (k, n) in &tally.timeouts {
        eprintln!("  {n:6}  {k}: still waiting after 1 s (what it waits for runs)");
    }
    assert!(total >= calls, "{total} < {calls}");
    // Only the waits may outlast their limit; every answer is a result or a
    // named error — never the bus saying berthd went away.
    let others: Vec<_> = tally
        .timeouts
        .keys()
        .filter(|m| !matches!(m.as_str(), "WaitContainer" | "WaitExec" | "Wait"))
        .collect();
    assert!(others.is_empty(), "calls that hung: {others:?}");
    let bad: Vec<_> = tally
        .outcomes
        .keys()
        .filter(|k| {
            !(k.starts_with("ok ")
                || k.as_str() == ZBUS_OWN
                || k.starts_with("io.berth.Berth1.Error.")
                || k.starts_with("org.freedesktop.DBus.Error.UnknownMethod")
                || k.starts_with("org.freedesktop.DBus.Error.UnknownObject")
                || k.starts_with("org.freedesktop.DBus.Error.UnknownInterface")
                || k.starts_with("org.freedesktop.DBus.Error.UnknownProperty")
                || k.starts_with("org.freedesktop.DBus.Error.PropertyReadOnly")
                || k.starts_with("org.freedesktop.DBus.Error.InvalidArgs")
                || k.starts_with("org.freedesktop.DBus.Error.AccessDenied"))
        })
        .collect();
    assert!(bad.is_empty(), "answers that are not named errors: {bad:?}");
    assert!(
        !tally.outcomes.keys().any(|k| k.contains("Internal")),
        "Internal errors: {:?}",
        tally.outcomes
    );

    // The same berthd, answering.
    assert_eq!(main_pid(&b), pid, "berthd restarted during the flood");
    let list: List = call(&c, "ListContainers", &()).unwrap();
    eprintln!(
        "made by the flood: {:?}",
        list.iter().map(|l| (&l.0, &l.1)).collect::<Vec<_>>()
    );
    for (id, _, _) in &list {
        let () = call(&c, "DeleteContainer", &(id.as_str(), true))
            .unwrap_or_else(|e| panic!("deleting {id}: {}", error_name(e)));
    }
    let list: List = call(&c, "ListContainers", &()).unwrap();
    assert!(list.is_empty(), "{list:?}");
    let left = b.sh_ok(
        "systemctl list-units --all --no-legend --plain 'berth-*.scope'; \
         ls -A /run/berth | grep -vx -e .seccomp -e .private; ls -A /var/lib/berth/bundles 2>/dev/null; \
         pgrep -a -x 'berth-monitor|berth-shim' | grep -v -- ' --exec-server$'; true",
    );
    assert_eq!(left.trim(), "", "left behind");
    // fds back where they were (journalctl readers of abandoned GetLogs end
    // as their pipes close); memory printed, and not ballooned.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let now = berthd_usage(&b);
        if now.1 <= idle.1 || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "berthd after: VmRSS {} kB ({:+} kB), {} fds ({:+}); whole test {:?}",
        after.0,
        after.0 as i64 - before.0 as i64,
        after.1,
        after.1 as i64 - before.1 as i64,
        t0.elapsed()
    );
    assert_eq!(
        after.1, idle.1,
        "fds leaked (compared with berthd before any container)"
    );
    assert!(
        after.0 < before.0 + 32 * 1024,
        "VmRSS ballooned: {} kB → {} kB",
        before.0,
        after.0
    );
}
