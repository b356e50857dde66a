//! One container as berthd describes it (all of its object's properties in
//! one GetAll), and the shapes podman's users expect: ps rows, inspect.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value as Json};
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::when;
use crate::Result;

/// A D-Bus value as JSON (numbers, strings, booleans, arrays, dicts).
pub fn to_json(v: &Value<'_>) -> Json {
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
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Dict(d) => {
            let m: serde_json::Map<String, Json> = d
                .iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect();
            Json::Object(m)
        }
        other => json!(other.to_string()),
    }
}

pub fn dict_json(d: &HashMap<String, OwnedValue>) -> Json {
    let sorted: BTreeMap<&String, Json> = d.iter().map(|(k, v)| (k, to_json(v))).collect();
    json!(sorted)
}

/// What berthd says of one container.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub id: String,
    pub status: String,
    pub pid: u64,
    pub bundle: String,
    pub unit: String,
    /// "" for a container made from a bundle.
    pub image: String,
    pub command: Vec<String>,
    pub created_at: u64,
    pub started_at: u64,
    pub exited_at: u64,
    pub exit_code: i64,
    pub exit_signal: i64,
    pub labels: BTreeMap<String, String>,
    /// Published ports, as podman words them (`0.0.0.0:8080->80/tcp`).
    pub ports: String,
    /// podman's NetworkSettings: the network and the addresses on it.
    pub network: Json,
    pub path: String,
    /// starting, healthy, unhealthy; "" without a health check.
    pub health: String,
    pub restart_count: u64,
    pub restart_policy: String,
}

impl Record {
    /// Every property in one round trip. Properties this berthd does not
    /// have (an older one: Image, Command; a newer one: Ports) stay empty.
    pub fn read(conn: &zbus::blocking::Connection, path: &OwnedObjectPath) -> Result<Record> {
        let props = zbus::blocking::fdo::PropertiesProxy::builder(conn)
            .destination("io.berth.Berth1")?
            .path(path.as_ref())?
            .build()?;
        let iface =
            zbus::names::InterfaceName::from_static_str_unchecked("io.berth.Berth1.Container");
        let raw = props.get_all(iface).map_err(zbus::Error::from)?;
        let all = dict_json(&raw);
        let s = |k: &str| all[k].as_str().unwrap_or_default().to_string();
        let n = |k: &str| all[k].as_u64().unwrap_or(0);
        let i = |k: &str| all[k].as_i64().unwrap_or(0);
        // podman's wording: 0.0.0.0:8080->80/tcp, 127.0.0.1:8081->80/tcp.
        let ports = raw
            .get("Ports")
            .and_then(|v| v.try_clone().ok())
            .and_then(|v| Vec::<(String, u16, u16, String)>::try_from(v).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|row| berth_net::PortMapping::from(row).published())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Record {
            id: s("Id"),
            status: s("Status"),
            pid: n("Pid"),
            bundle: s("Bundle"),
            unit: s("Unit"),
            image: s("Image"),
            command: serde_json::from_value(all["Command"].clone()).unwrap_or_default(),
            created_at: n("CreatedAt"),
            started_at: n("StartedAt"),
            exited_at: n("ExitedAt"),
            exit_code: i("ExitCode"),
            exit_signal: i("ExitSignal"),
            labels: serde_json::from_value(all["Labels"].clone()).unwrap_or_default(),
            ports,
            network: json!({
                "IPAddress": s("IPAddress"),
                "Gateway": s("Gateway"),
                "MacAddress": s("MACAddress"),
                "GlobalIPv6Address": s("IPv6Address"),
                "Hostname": s("Hostname"),
                "Networks": match s("Network").as_str() {
                    "" => json!({}),
                    mode => json!({ mode: {
                        "IPAddress": s("IPAddress"),
                        "Gateway": s("Gateway"),
                        "MacAddress": s("MACAddress"),
                        "GlobalIPv6Address": s("IPv6Address"),
                    }}),
                },
            }),
            path: path.to_string(),
            health: s("Health"),
            restart_count: n("RestartCount"),
            restart_policy: s("RestartPolicy"),
        })
    }

    /// podman's state word: created, running, paused, exited.
    pub fn state(&self) -> &str {
        match self.status.as_str() {
            "stopped" => "exited",
            other => other,
        }
    }

    /// podman's STATUS column: "Up 3 minutes", "Exited (3) 2 seconds ago".
    pub fn status_text(&self) -> String {
        match self.status.as_str() {
            // podman's "Up 3 minutes (healthy)".
            "running" if !self.health.is_empty() => {
                format!("Up {} ({})", when::since(self.started_at), self.health)
            }
            "running" => format!("Up {}", when::since(self.started_at)),
            "paused" => "Paused".into(),
            "created" => "Created".into(),
            "creating" => "Creating".into(),
            "stopped" => format!("Exited ({}) {}", self.exit_code, when::ago(self.exited_at)),
            other => other.to_string(),
        }
    }

    /// IMAGE: the image's reference, or the bundle for a bundle container.
    pub fn image_or_bundle(&self) -> &str {
        if self.image.is_empty() {
            &self.bundle
        } else {
            &self.image
        }
    }

    /// One `ps` row: podman's JSON fields, plus what templates read as
    /// strings (ID, Names, Command, CreatedAt, RunningFor).
    pub fn ps_row(&self, no_trunc: bool) -> Json {
        let mut command = self.command.join(" ");
        let mut short = self.id.clone();
        if !no_trunc {
            if command.chars().count() > 20 {
                command = command.chars().take(17).collect::<String>() + "...";
            }
            short = short.chars().take(12).collect();
        }
        json!({
            "ID": short,
            "Id": self.id,
            "Image": self.image_or_bundle(),
            "Command": command,
            "CreatedAt": when::ago(self.created_at),
            "Created": self.created_at / 1_000_000,
            "RunningFor": when::since(self.created_at),
            "Status": self.status_text(),
            "State": self.state(),
            "Ports": self.ports,
            "Names": self.id,
            "Labels": self.labels,
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Exited": self.status == "stopped",
            "StartedAt": self.started_at / 1_000_000,
            "ExitedAt": self.exited_at / 1_000_000,
            "Bundle": self.bundle,
            "Unit": self.unit,
            "Health": self.health,
            "Restarts": self.restart_count,
        })
    }

    /// inspect: berthd's own fields (Status, Pid, Bundle, Unit, …, as
    /// before) and podman's (Name, State.*, Config.*, Created).
    pub fn inspect(&self) -> Json {
        json!({
            "Id": self.id,
            "Name": self.id,
            "Image": self.image,
            "ImageName": self.image,
            "Created": when::rfc3339(self.created_at),
            "Args": self.command,
            "State": {
                "Status": self.state(),
                "Running": self.status == "running",
                "Paused": self.status == "paused",
                "Pid": self.pid,
                "ExitCode": self.exit_code,
                "StartedAt": when::rfc3339(self.started_at),
                "FinishedAt": when::rfc3339(self.exited_at),
                "Health": { "Status": self.health },
            },
            "RestartCount": self.restart_count,
            "HostConfig": {
                "RestartPolicy": { "Name": self.restart_policy },
            },
            "Config": {
                "Cmd": self.command,
                "Labels": self.labels,
                "Image": self.image,
            },
            "Status": self.status,
            "Pid": self.pid,
            "Bundle": self.bundle,
            "Unit": self.unit,
            "CreatedAt": self.created_at,
            "StartedAt": self.started_at,
            "ExitedAt": self.exited_at,
            "ExitCode": self.exit_code,
            "ExitSignal": self.exit_signal,
            "Labels": self.labels,
            "Ports": self.ports,
            "NetworkSettings": self.network,
            "Path": self.path,
        })
    }
}

/// Every container berthd has (skipping one removed while we read).
pub fn all(
    conn: &zbus::blocking::Connection,
    m: &berth_client::ManagerProxyBlocking,
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (_, _, path) in m.list_containers()? {
        if let Ok(r) = Record::read(conn, &path) {
            out.push(r);
        }
    }
    // Newest first, as podman lists.
    out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    Ok(out)
}
