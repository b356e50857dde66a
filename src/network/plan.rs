//! From a create's options to what its network will be, checked before
//! anything is made: the network exists, the joined container runs, the
//! published ports are free (host port 0 gets a free one).

use std::path::PathBuf;

use berth_net::network::DEFAULT_NETWORK;
use berth_net::{NetworkSpec, PortMapping};

use crate::error::{Error, Result};
use crate::lifecycle::Status;
use crate::options::net::NetworkMode;
use crate::options::CreateOptions;
use crate::store::{ContainerRecord, Store};

use super::NetPaths;

/// The container's network namespace, as its spec will say.
#[derive(Debug, Clone, PartialEq)]
pub enum NsChoice {
    /// A new one made by the runtime (network none).
    New,
    /// A namespace that exists: pinned by berth, or another container's.
    Path(PathBuf),
    /// The host's: no network namespace in the spec.
    Host,
}

/// What the spec gets (filled into CreateOptions::net_spec).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecNet {
    pub ns: NsChoice,
    pub hostname: String,
    /// (file berth wrote, where it appears in the container).
    pub files: Vec<(PathBuf, String)>,
}

#[derive(Debug, Clone)]
pub struct NetPlan {
    pub mode: NetworkMode,
    /// The network to attach to (mode Named).
    pub network: Option<NetworkSpec>,
    /// The container whose namespace is joined (mode Container).
    pub joined: Option<ContainerRecord>,
    pub ports: Vec<PortMapping>,
    pub hostname: String,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub add_hosts: Vec<(String, String)>,
}

/// The plan for container `id`, or None when its spec's own namespaces
/// stay (a bundle created without network options). Run with the
/// networks' lock held: the ports it finds free must still be when the
/// record that takes them is written.
pub fn plan(
    opts: &CreateOptions,
    id: &str,
    from_image: bool,
    store: &Store,
    paths: &NetPaths,
) -> Result<Option<NetPlan>> {
    let net = &opts.net;
    if !from_image && !net.any() {
        return Ok(None);
    }
    let mode = net
        .network
        .clone()
        .unwrap_or_else(|| NetworkMode::Named(DEFAULT_NETWORK.into()));
    let mut plan = NetPlan {
        mode: mode.clone(),
        network: None,
        joined: None,
        ports: Vec::new(),
        hostname: net.hostname.clone().unwrap_or_else(|| default_hostname(id)),
        dns: net.dns.clone(),
        dns_search: net.dns_search.clone(),
        add_hosts: net
            .add_hosts
            .iter()
            .map(|(n, ip)| (n.clone(), ip.to_string()))
            .collect(),
    };
    match &mode {
        NetworkMode::Named(name) => {
            plan.network = Some(super::registry::find_or_default(store, paths, name)?);
            plan.ports = free_ports(&net.ports, store)?;
        }
        NetworkMode::Container(other) => {
            crate::ids::check_lookup(other)?;
            let rec = store.get(other)?.ok_or_else(|| {
                Error::NotFound(format!("network container:{other}: no container {other}"))
            })?;
            if !matches!(
                rec.status,
                Status::Created | Status::Running | Status::Paused
            ) {
                return Err(Error::FailedPrecondition(format!(
                    "network container:{other}: container {other} is {}, its network namespace may be gone",
                    rec.status
                )));
            }
            plan.joined = Some(rec);
        }
        NetworkMode::None | NetworkMode::Host => {}
    }
    Ok(Some(plan))
}

/// A hostname from a container id: its characters a hostname may hold
/// ('-' for the others), at most 63.
fn default_hostname(id: &str) -> String {
    let h: String = id
        .chars()
        .take(63)
        .map(|c| match c.is_ascii_alphanumeric() || c == '-' {
            true => c,
            false => '-',
        })
        .collect();
    match h.starts_with('-') {
        true => format!("c{}", &h[..h.len().min(62)]),
        false => h,
    }
}

/// The asked ports, each checked against every container's (a stopped one
/// keeps its rules until deleted), host port 0 given a free one.
fn free_ports(asked: &[PortMapping], store: &Store) -> Result<Vec<PortMapping>> {
    if asked.is_empty() {
        // Most creates: no walk over every record.
        return Ok(Vec::new());
    }
    let taken: Vec<(String, PortMapping)> = store
        .list()?
        .into_iter()
        .filter_map(|r| r.net.map(|n| (r.id, n.ports)))
        .flat_map(|(id, ports)| ports.into_iter().map(move |p| (id.clone(), p)))
        .collect();
    let mut out: Vec<PortMapping> = Vec::new();
    for p in asked {
        let mut p = p.clone();
        if p.host_port == 0 {
            p.host_port = pick_port(&p, &taken, &out)?;
        }
        if let Some((holder, _)) = taken.iter().find(|(_, t)| t.clashes(&p)) {
            return Err(Error::AlreadyExists(format!(
                "port {}/{} is already published by container {holder}",
                p.host_port, p.protocol
            )));
        }
        if out.iter().any(|o| o.clashes(&p)) {
            return Err(Error::InvalidArgument(format!(
                "port {}/{} is published twice",
                p.host_port, p.protocol
            )));
        }
        out.push(p);
    }
    Ok(out)
}

/// A port the kernel says is free (bound and released at once), and no
/// container holds.
fn pick_port(
    p: &PortMapping,
    taken: &[(String, PortMapping)],
    chosen: &[PortMapping],
) -> Result<u16> {
    let ip = match p.host_ip.as_str() {
        "" => "0.0.0.0",
        ip => ip,
    };
    for _ in 0..32 {
        let port = match p.protocol.as_str() {
            "udp" => std::net::UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()),
            _ => std::net::TcpListener::bind((ip, 0)).and_then(|s| s.local_addr()),
        }
        .map_err(|e| Error::InvalidArgument(format!("cannot find a free port on {ip}: {e}")))?
        .port();
        let cand = PortMapping {
            host_port: port,
            ..p.clone()
        };
        if !taken.iter().any(|(_, t)| t.clashes(&cand)) && !chosen.iter().any(|c| c.clashes(&cand))
        {
            return Ok(port);
        }
    }
    Err(Error::Internal("no free port found in 32 tries".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_from_ids() {
        assert_eq!(default_hostname("web"), "web");
        assert_eq!(default_hostname("a_b.c"), "a-b-c");
        assert_eq!(default_hostname("_x"), "c-x");
        assert_eq!(default_hostname(&"a".repeat(80)).len(), 63);
    }
}
