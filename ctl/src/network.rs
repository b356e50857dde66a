//! `berthctl network …` and `berthctl port`: io.berth.Berth1.Networks, the
//! Network objects, and a container's Ports property.

use std::collections::HashMap;

use serde_json::json;
use zbus::zvariant::Value;

use crate::cli::NetworkCmd;
use crate::{connect, Failed, Result};
use berth_client::{ContainerProxyBlocking, NetworkProxyBlocking, NetworksProxyBlocking};

fn network<'a>(
    conn: &zbus::blocking::Connection,
    nets: &NetworksProxyBlocking<'a>,
    name: &str,
) -> Result<NetworkProxyBlocking<'static>> {
    let path = nets.get_network(name)?;
    Ok(NetworkProxyBlocking::builder(conn)
        .path(path)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()?)
}

fn inspect_one(
    conn: &zbus::blocking::Connection,
    nets: &NetworksProxyBlocking,
    name: &str,
) -> Result<serde_json::Value> {
    let n = network(conn, nets, name)?;
    let containers: Vec<serde_json::Value> = n
        .containers()?
        .into_iter()
        .map(|(id, ipv4, mac, ipv6)| json!({"Id": id, "IPv4Address": ipv4, "MacAddress": mac, "IPv6Address": ipv6}))
        .collect();
    Ok(json!({
        "Name": n.name()?,
        "Driver": "bridge",
        "NetworkInterface": n.bridge()?,
        "Subnets": [{"Subnet": n.subnet()?, "Gateway": n.gateway()?}],
        "IPv6Subnet": n.subnet6()?,
        "Internal": n.internal()?,
        "Labels": n.labels()?,
        "Created": crate::when::rfc3339(n.created_at()?),
        "Containers": containers,
    }))
}

pub fn run(cmd: NetworkCmd) -> Result<u8> {
    let conn = zbus::blocking::Connection::system()?;
    let nets = NetworksProxyBlocking::new(&conn)?;
    match cmd {
        NetworkCmd::Create {
            subnet,
            gateway,
            ipv6_subnet,
            internal,
            labels,
            name,
        } => {
            let mut o: HashMap<&str, Value> = HashMap::new();
            for (k, v) in [
                ("subnet", subnet),
                ("gateway", gateway),
                ("subnet6", ipv6_subnet),
            ] {
                if let Some(v) = v {
                    o.insert(k, Value::from(v));
                }
            }
            if internal {
                o.insert("internal", Value::from(true));
            }
            if !labels.is_empty() {
                let l = crate::session::key_values(&labels, "label")?;
                o.insert("labels", Value::from(l));
            }
            nets.create_network(&name, o)?;
            println!("{name}");
        }
        NetworkCmd::Ls { quiet, json } => {
            let rows = nets.list_networks()?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, b, s, g, _)| json!({"Name": n, "NetworkInterface": b, "Subnet": s, "Gateway": g}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| Failed::new(e.to_string()))?
                );
            } else if quiet {
                rows.iter().for_each(|r| println!("{}", r.0));
            } else {
                println!(
                    "{:<20} {:<10} {:<18} {:<15}",
                    "NAME", "BRIDGE", "SUBNET", "GATEWAY"
                );
                for (n, b, s, g, _) in rows {
                    println!("{n:<20} {b:<10} {s:<18} {g:<15}");
                }
            }
        }
        NetworkCmd::Inspect { names } => {
            let all = names
                .iter()
                .map(|n| inspect_one(&conn, &nets, n))
                .collect::<Result<Vec<_>>>()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&all).map_err(|e| Failed::new(e.to_string()))?
            );
        }
        NetworkCmd::Rm { force, names } => {
            let mut code = 0;
            for n in names {
                match nets.remove_network(&n, force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("berthctl: {n}: {}", berth_client::describe(&e));
                        code = crate::EXIT_FAILED;
                    }
                }
            }
            return Ok(code);
        }
        NetworkCmd::Prune { force } => {
            if !force && !crate::prune::confirm("all networks not used by at least one container") {
                return Ok(0);
            }
            nets.prune_networks()?.iter().for_each(|n| println!("{n}"));
        }
    }
    Ok(0)
}

/// podman's `port`: `80/tcp -> 0.0.0.0:8080`, a line per published port.
pub fn port(id: &str) -> Result<u8> {
    let (conn, m) = connect()?;
    let path = m.get_container(id)?;
    let c = ContainerProxyBlocking::builder(&conn).path(path)?.build()?;
    for row in c.ports()? {
        println!("{}", berth_net::PortMapping::from(row));
    }
    Ok(0)
}
