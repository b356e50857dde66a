//! Read-only verbs: ps, inspect, logs, stats, events, version, info, and the
//! man pages.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use serde_json::{json, Value as Json};
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::{connect, Failed, Result};
use berth_client::ContainerProxyBlocking;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// "3 seconds ago", "2 hours ago".
fn ago(us: u64) -> String {
    if us == 0 {
        return "-".into();
    }
    let s = now_us().saturating_sub(us) / 1_000_000;
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86399 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A D-Bus value as JSON (numbers, strings, booleans; others as text).
fn to_json(v: &Value<'_>) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Str(s) => json!(s.as_str()),
        Value::ObjectPath(p) => json!(p.as_str()),
        Value::Value(inner) => to_json(inner),
        other => json!(other.to_string()),
    }
}

fn dict_json(d: &HashMap<String, OwnedValue>) -> Json {
    let sorted: BTreeMap<&String, Json> = d.iter().map(|(k, v)| (k, to_json(v))).collect();
    json!(sorted)
}

fn container<'a>(
    conn: &zbus::blocking::Connection,
    path: &'a OwnedObjectPath,
) -> Result<ContainerProxyBlocking<'a>> {
    Ok(ContainerProxyBlocking::builder(conn)
        .path(path.as_ref())?
        .build()?)
}

/// Everything a container object says, as JSON (inspect, ps --json).
fn describe(conn: &zbus::blocking::Connection, path: &OwnedObjectPath) -> Result<Json> {
    let c = container(conn, path)?;
    Ok(json!({
        "Id": c.id()?,
        "Status": c.status()?,
        "Pid": c.pid()?,
        "Image": c.image()?,
        "Bundle": c.bundle()?,
        "Unit": c.unit()?,
        "CreatedAt": c.created_at()?,
        "StartedAt": c.started_at()?,
        "ExitedAt": c.exited_at()?,
        "ExitCode": c.exit_code()?,
        "ExitSignal": c.exit_signal()?,
        "Labels": c.labels()?.into_iter().collect::<BTreeMap<_, _>>(),
        "Path": path.as_str(),
    }))
}

pub fn ps(all: bool, as_json: bool) -> Result<u8> {
    let (conn, m) = connect()?;
    let mut rows = Vec::new();
    for (_, status, path) in m.list_containers()? {
        if !all && status == "stopped" {
            continue;
        }
        // A container removed between the list and the read is skipped.
        if let Ok(d) = describe(&conn, &path) {
            rows.push(d);
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(0);
    }
    println!(
        "{:<20} {:<10} {:>8} {:<16} {:<10} BUNDLE",
        "CONTAINER ID", "STATUS", "PID", "CREATED", "EXIT"
    );
    for r in rows {
        let exit = match r["Status"].as_str() {
            Some("stopped") => r["ExitCode"].to_string(),
            _ => "-".into(),
        };
        println!(
            "{:<20} {:<10} {:>8} {:<16} {:<10} {}",
            r["Id"].as_str().unwrap_or_default(),
            r["Status"].as_str().unwrap_or_default(),
            r["Pid"],
            ago(r["CreatedAt"].as_u64().unwrap_or(0)),
            exit,
            r["Bundle"].as_str().unwrap_or_default()
        );
    }
    Ok(0)
}

pub fn inspect(ids: &[String]) -> Result<u8> {
    let (conn, m) = connect()?;
    let mut out = Vec::new();
    let mut code = 0;
    for id in ids {
        match m
            .get_container(id)
            .map_err(Failed::from)
            .and_then(|p| describe(&conn, &p))
        {
            Ok(d) => out.push(d),
            Err(Failed { msg: e, .. }) => {
                eprintln!("berthctl: {id}: {e}");
                code = crate::EXIT_FAILED;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(code)
}

pub fn logs(id: &str, follow: bool, tail: Option<u32>) -> Result<u8> {
    let (_, m) = connect()?;
    let mut o: HashMap<&str, Value> = HashMap::new();
    o.insert("follow", Value::from(follow));
    if let Some(n) = tail {
        o.insert("tail", Value::from(n));
    }
    let fd: OwnedFd = m.get_logs(id, o)?.into();
    let mut pipe = std::fs::File::from(fd);
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 16384];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    Ok(0)
}

pub fn stats(ids: &[String], as_json: bool) -> Result<u8> {
    let (_, m) = connect()?;
    let mut all = BTreeMap::new();
    for id in ids {
        all.insert(id.clone(), dict_json(&m.get_container_stats(id)?));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(0);
    }
    for (id, s) in all {
        println!("{id}");
        if let Some(map) = s.as_object() {
            for (k, v) in map.iter().filter(|(k, _)| !k.ends_with("_reason")) {
                let why = map.get(&format!("{k}_reason")).and_then(|r| r.as_str());
                match why {
                    Some(r) => println!("  {k:<24} {} ({r})", v.as_str().unwrap_or("unavailable")),
                    None => println!("  {k:<24} {v}"),
                }
            }
        }
    }
    Ok(0)
}

pub fn version() -> Result<u8> {
    println!("berthctl {}", env!("CARGO_PKG_VERSION"));
    let server = connect().and_then(|(_, m)| Ok(m.version()?));
    match server {
        Ok(v) => println!("berthd   {v}"),
        Err(Failed { msg: e, .. }) => println!("berthd   unreachable: {e}"),
    }
    Ok(0)
}

pub fn info(as_json: bool) -> Result<u8> {
    let (_, m) = connect()?;
    let i = dict_json(&m.info()?);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&i).unwrap_or_default());
    } else if let Some(map) = i.as_object() {
        for (k, v) in map {
            println!(
                "{k}: {}",
                v.as_str().map(String::from).unwrap_or(v.to_string())
            );
        }
    }
    Ok(0)
}

/// Follows berthd's signals: the Manager's ContainerNew/Exited/Removed and
/// Status changes of container objects.
pub fn events(as_json: bool) -> Result<u8> {
    let (conn, m) = connect()?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("io.berth.Berth1")?
        .build();
    let iter = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(256))?;
    let mut ids: HashMap<String, String> = m
        .list_containers()?
        .into_iter()
        .map(|(id, _, p)| (p.to_string(), id))
        .collect();
    let mut out = std::io::stdout().lock();
    for msg in iter {
        let Ok(msg) = msg else { break };
        let hdr = msg.header();
        let member = hdr.member().map(|m| m.to_string()).unwrap_or_default();
        let path = hdr.path().map(|p| p.to_string()).unwrap_or_default();
        let event = match member.as_str() {
            "ContainerNew" => msg.body().deserialize::<(String, OwnedObjectPath)>().ok().map(|(id, p)| {
                ids.insert(p.to_string(), id.clone());
                json!({"type": "create", "id": id})
            }),
            "ContainerRemoved" => msg
                .body()
                .deserialize::<(String, OwnedObjectPath)>()
                .ok()
                .map(|(id, _)| json!({"type": "remove", "id": id})),
            "ContainerExited" => msg
                .body()
                .deserialize::<(String, i32, i32)>()
                .ok()
                .map(|(id, code, sig)| json!({"type": "exit", "id": id, "exit_code": code, "exit_signal": sig})),
            "PropertiesChanged" => msg
                .body()
                .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
                .ok()
                .and_then(|(_, changed, _)| {
                    let status: String = changed.get("Status")?.try_clone().ok()?.try_into().ok()?;
                    let id = ids.get(&path).cloned().unwrap_or(path.clone());
                    Some(json!({"type": "status", "id": id, "status": status}))
                }),
            _ => None,
        };
        let Some(mut e) = event else { continue };
        e["time_us"] = json!(now_us());
        let line = if as_json {
            e.to_string()
        } else {
            let extra = match e["type"].as_str() {
                Some("status") => format!(" {}", e["status"].as_str().unwrap_or_default()),
                Some("exit") => format!(" code={} signal={}", e["exit_code"], e["exit_signal"]),
                _ => String::new(),
            };
            format!(
                "{} {} {}{extra}",
                e["time_us"],
                e["type"].as_str().unwrap_or_default(),
                e["id"].as_str().unwrap_or_default()
            )
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    Ok(0)
}

/// berthctl.1 and berthctl-<verb>.1 for every visible verb.
pub fn man_pages(dir: &Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let cmd = crate::cli::Cli::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join("berthctl.1"), &buf)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("berthctl-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.1")), &buf)?;
    }
    Ok(())
}
