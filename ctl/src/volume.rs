//! `berthctl volume …`: io.berth.Berth1.Volumes and the Volume objects, in
//! podman's output shapes.

use std::collections::HashMap;

use serde_json::json;
use zbus::zvariant::Value;

use crate::cli::VolumeCmd;
use crate::{Failed, Result};
use berth_client::{VolumeProxyBlocking, VolumesProxyBlocking};

fn inspect_one(
    conn: &zbus::blocking::Connection,
    vols: &VolumesProxyBlocking,
    name: &str,
) -> Result<serde_json::Value> {
    let path = vols.get_volume(name)?;
    let v = VolumeProxyBlocking::builder(conn)
        .path(path)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()?;
    Ok(json!({
        "Name": v.name()?,
        "Driver": v.driver()?,
        "Mountpoint": v.mountpoint()?,
        "CreatedAt": crate::when::rfc3339(v.created_at()?),
        "Labels": v.labels()?,
        "Scope": "local",
        "Options": {},
        "InUse": v.in_use()?,
        "Containers": v.containers()?,
    }))
}

fn pretty(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Failed::new(e.to_string()))
}

pub fn run(cmd: VolumeCmd) -> Result<u8> {
    let conn = zbus::blocking::Connection::system()?;
    let vols = VolumesProxyBlocking::new(&conn)?;
    match cmd {
        VolumeCmd::Create { labels, name } => {
            let mut o: HashMap<&str, Value> = HashMap::new();
            if !labels.is_empty() {
                let l = crate::session::key_values(&labels, "label")?;
                o.insert("labels", Value::from(l));
            }
            vols.create_volume(&name, o)?;
            println!("{name}");
        }
        VolumeCmd::Ls { quiet, json } => {
            let rows = vols.list_volumes()?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, d, m, _)| json!({"Name": n, "Driver": d, "Mountpoint": m}))
                    .collect();
                println!("{}", pretty(&v)?);
            } else if quiet {
                rows.iter().for_each(|r| println!("{}", r.0));
            } else {
                println!("{:<10} VOLUME NAME", "DRIVER");
                for (n, d, _, _) in rows {
                    println!("{d:<10} {n}");
                }
            }
        }
        VolumeCmd::Inspect { names } => {
            let all = names
                .iter()
                .map(|n| inspect_one(&conn, &vols, n))
                .collect::<Result<Vec<_>>>()?;
            println!("{}", pretty(&all)?);
        }
        VolumeCmd::Rm { force, names } => {
            let mut code = 0;
            for n in names {
                match vols.remove_volume(&n, force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("berthctl: {n}: {}", berth_client::describe(&e));
                        code = crate::EXIT_FAILED;
                    }
                }
            }
            return Ok(code);
        }
        VolumeCmd::Prune { force } => {
            if !force && !crate::prune::confirm("all volumes not used by at least one container") {
                return Ok(0);
            }
            vols.prune_volumes()?.iter().for_each(|n| println!("{n}"));
        }
    }
    Ok(0)
}
