//! A container's attachment, made and unmade (blocking: plugins, mounts,
//! files). Detach works from the container id alone — the CNI cache entry
//! and the paths — so a crash's leftovers are torn down with no record.

use std::path::{Path, PathBuf};

use berth_net::cache::{Cache, Entry};
use berth_net::cni;
use berth_net::files::{self, Hosts};
use serde_json::{json, Map};

use crate::error::{Error, Result};
use crate::options::net::NetworkMode;
use crate::store::ContainerRecord;

use super::{NetPaths, NetPlan, NetRecord, NsChoice, SpecNet};

/// The interface inside the container (podman's and docker's name).
const IFNAME: &str = "eth0";

/// Makes container `id`'s network as `plan` says: namespace, CNI ADD, files.
/// On failure, what was made is unmade before the error returns.
pub fn attach(paths: &NetPaths, id: &str, plan: &NetPlan) -> Result<(NetRecord, SpecNet)> {
    let made = attach_inner(paths, id, plan);
    if made.is_err() {
        detach(paths, id);
    }
    made
}

fn attach_inner(paths: &NetPaths, id: &str, plan: &NetPlan) -> Result<(NetRecord, SpecNet)> {
    let mut rec = NetRecord {
        mode: plan.mode.label(),
        hostname: plan.hostname.clone(),
        ports: plan.ports.clone(),
        add_hosts: plan.add_hosts.clone(),
        ..Default::default()
    };
    let ns = match (&plan.mode, &plan.network, &plan.joined) {
        (NetworkMode::Named(_), Some(net), _) => {
            let netns = paths.netns_dir.join(id);
            berth_net::netns::create(&netns).map_err(|e| Error::Network(e.to_string()))?;
            rec.netns = netns.to_string_lossy().into_owned();
            rec.network = net.name.clone();
            rec.ifname = IFNAME.into();
            ensure_masquerade(net)?;
            let mut runtime_config = Map::new();
            if !plan.ports.is_empty() {
                runtime_config.insert("portMappings".into(), json!(plan.ports));
            }
            let cache = Cache::new(&paths.cache_dir);
            let mut entry = Entry {
                container_id: id.into(),
                network: net.name.clone(),
                ifname: IFNAME.into(),
                netns: netns.clone(),
                conflist: net.conflist(&paths.ipam_dir, !plan.ports.is_empty()),
                runtime_config,
                result: None,
            };
            let inv = entry.invocation(&paths.plugin_dirs);
            // Intent first: a crash inside ADD leaves what DEL needs.
            cache
                .put(&entry)
                .map_err(|e| Error::Internal(format!("CNI cache: {e}")))?;
            let result = cni::add(&entry.conflist, &inv)?;
            rec.addresses = cni::addresses(&result);
            rec.host_veth = host_end(&result, &net.bridge);
            entry.result = Some(result);
            cache
                .put(&entry)
                .map_err(|e| Error::Internal(format!("CNI cache: {e}")))?;
            NsChoice::Path(netns)
        }
        (NetworkMode::Container(_), _, Some(other)) => joined_ns(other),
        (NetworkMode::Host, _, _) => NsChoice::Host,
        _ => NsChoice::New,
    };
    // A joined container's files are shared (it owns the namespace and
    // its names); everyone else gets their own.
    let shared = plan
        .joined
        .as_ref()
        .and_then(|o| o.net.as_ref())
        .map(|n| n.files.clone());
    let dir = match shared.filter(|f| !f.is_empty()) {
        Some(f) => PathBuf::from(f),
        None => {
            let dir = paths.files_dir.join(id);
            write_files(paths, &dir, id, &rec, plan)?;
            rec.files = dir.to_string_lossy().into_owned();
            dir
        }
    };
    let spec = SpecNet {
        ns,
        hostname: plan.hostname.clone(),
        files: ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|f| (dir.join(f), format!("/etc/{f}")))
            .collect(),
    };
    Ok((rec, spec))
}

/// The networks whose NAT rule this berthd has checked: once per network per
/// start (a reboot empties the kernel's rules and berthd's memory alike).
static MASQUERADED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn ensure_masquerade(net: &berth_net::NetworkSpec) -> Result<()> {
    let mut done = MASQUERADED.lock().unwrap_or_else(|p| p.into_inner());
    if !done.contains(&net.name) {
        for subnet in net.masqueraded() {
            berth_net::masquerade::ensure(&subnet, &net.name)
                .map_err(|e| Error::Network(format!("network {}: outbound NAT: {e}", net.name)))?;
        }
        done.push(net.name.clone());
    }
    Ok(())
}

/// Forgets network `name` (removed): a network made again under that name
/// gets its rule checked again.
pub fn forget_masquerade(name: &str) {
    let mut done = MASQUERADED.lock().unwrap_or_else(|p| p.into_inner());
    done.retain(|n| n != name);
}

/// The name of the veth's host end in an ADD result: the interface with no
/// sandbox that is not the bridge.
fn host_end(result: &serde_json::Value, bridge: &str) -> String {
    let ifs = result["interfaces"].as_array().cloned().unwrap_or_default();
    ifs.iter()
        .filter(|i| i["sandbox"].as_str().unwrap_or_default().is_empty())
        .filter_map(|i| i["name"].as_str())
        .find(|n| *n != bridge)
        .unwrap_or_default()
        .to_string()
}

/// The namespace of a container joined by `container:<id>`: its pinned file,
/// else its init's (alive: plan checked its status).
fn joined_ns(other: &ContainerRecord) -> NsChoice {
    match other.net.as_ref() {
        Some(n) if !n.netns.is_empty() => NsChoice::Path(n.netns.clone().into()),
        Some(n) if n.mode == "host" => NsChoice::Host,
        _ => NsChoice::Path(format!("/proc/{}/ns/net", other.pid).into()),
    }
}

fn write_files(
    paths: &NetPaths,
    dir: &Path,
    id: &str,
    rec: &NetRecord,
    plan: &NetPlan,
) -> Result<()> {
    let io = |e: std::io::Error| Error::Internal(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let host_resolv = std::fs::read_to_string(&paths.host_resolv).unwrap_or_default();
    let host = matches!(plan.mode, NetworkMode::Host);
    let resolv = files::resolv(&plan.dns, &plan.dns_search, &host_resolv, host);
    files::write_in_place(&dir.join("resolv.conf"), &resolv).map_err(io)?;
    files::write_in_place(&dir.join("hostname"), &format!("{}\n", plan.hostname)).map_err(io)?;
    files::write_in_place(&dir.join("hosts"), &hosts_of(id, rec, &[]).render()).map_err(io)
}

/// Container `id`'s /etc/hosts, with `peers` (name, ip) on its network.
pub fn hosts_of(id: &str, rec: &NetRecord, peers: &[(String, String)]) -> Hosts {
    let a = &rec.addresses;
    Hosts {
        hostname: rec.hostname.clone(),
        name: id.into(),
        own_ips: [&a.ipv4, &a.ipv6]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        extra: rec
            .add_hosts
            .iter()
            .filter_map(|(n, ip)| Some((n.clone(), ip.parse().ok()?)))
            .collect(),
        peers: peers.to_vec(),
    }
}

/// Rewrites the hosts file of every member of `network` among `records`,
/// each listing the others: how containers on a user network find each
/// other by name. Not on the default network (nor none/host: ""), as
/// podman's and docker's default networks resolve no names either: with a
/// thousand containers there, each create would rewrite a thousand files.
pub fn refresh_hosts(network: &str, records: &[ContainerRecord]) {
    if network.is_empty() || network == berth_net::network::DEFAULT_NETWORK {
        return;
    }
    let members: Vec<(&str, &NetRecord)> = records
        .iter()
        .filter_map(|r| r.net.as_ref().map(|n| (r.id.as_str(), n)))
        .filter(|(_, n)| n.network == network && !n.files.is_empty())
        .collect();
    for (id, net) in &members {
        let peers: Vec<(String, String)> = members
            .iter()
            .filter(|(other, n)| other != id && !n.addresses.ipv4.is_empty())
            .map(|(other, n)| (other.to_string(), n.addresses.ipv4.clone()))
            .collect();
        let path = Path::new(&net.files).join("hosts");
        if let Err(e) = files::write_in_place(&path, &hosts_of(id, net, &peers).render()) {
            tracing::warn!(container = %id, "rewriting {}: {e}", path.display());
        }
    }
}

/// Tears down whatever container `id` has of a network: CNI DEL from the
/// cached entry (kept if DEL fails, so the next recovery retries), the
/// pinned namespace, the files. Idempotent; never fails.
pub fn detach(paths: &NetPaths, id: &str) {
    let cache = Cache::new(&paths.cache_dir);
    match cache.get(id) {
        Ok(Some(e)) => {
            let inv = e.invocation(&paths.plugin_dirs);
            match cni::del(&e.conflist, &inv, e.result.as_ref()) {
                Ok(()) => {
                    let _ = cache.remove(id);
                }
                Err(err) => {
                    tracing::warn!(container = %id, "CNI DEL (kept for a retry at the next start): {err}")
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(container = %id, "reading the CNI cache: {e}"),
    }
    if let Err(e) = berth_net::netns::remove(&paths.netns_dir.join(id)) {
        tracing::warn!(container = %id, "removing its network namespace: {e}");
    }
    let _ = std::fs::remove_dir_all(paths.files_dir.join(id));
}
