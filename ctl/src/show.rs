//! Read-only verbs: inspect, events, version, info, and the man pages.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::record::{dict_json, Record};
use crate::when::now_us;
use crate::{connect, format, manager, Failed, Result};

/// JSON as before (an array), or --format's template once per container.
pub fn inspect(ids: &[String], fmt: Option<&str>) -> Result<u8> {
    let template = match fmt {
        None | Some("json") => None,
        Some(t) => Some(format::Template::parse(t)?),
    };
    let (conn, m) = connect()?;
    let mut out = Vec::new();
    let mut code = 0;
    for id in ids {
        match m
            .get_container(id)
            .map_err(Failed::from)
            .and_then(|p| Record::read(&conn, &p))
        {
            Ok(r) => out.push(r.inspect()),
            Err(Failed { msg: e, .. }) => {
                eprintln!("berthctl: {id}: {e}");
                code = crate::EXIT_FAILED;
            }
        }
    }
    match template {
        Some(t) => {
            for v in &out {
                println!("{}", t.render(v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default()),
    }
    Ok(code)
}

pub fn version() -> Result<u8> {
    println!("berthctl {}", env!("CARGO_PKG_VERSION"));
    let server = manager().and_then(|m| Ok(m.version()?));
    match server {
        Ok(v) => println!("berthd   {v}"),
        Err(Failed { msg: e, .. }) => println!("berthd   unreachable: {e}"),
    }
    Ok(0)
}

pub fn info(as_json: bool) -> Result<u8> {
    let m = manager()?;
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
            "ContainerHealth" => msg
                .body()
                .deserialize::<(String, String)>()
                .ok()
                .map(|(id, health)| json!({"type": "health_status", "id": id, "health": health})),
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
                Some("health_status") => format!(" {}", e["health"].as_str().unwrap_or_default()),
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
