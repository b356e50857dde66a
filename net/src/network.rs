//! A berth network: a Linux bridge with a private IPv4 subnet (and an
//! optional IPv6 one), host-local addresses, NAT for outbound traffic and
//! published ports — and the CNI conflist that sets exactly that up with
//! Debian's plugins (bridge + host-local, portmap).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::{json, Value};

use crate::cni::CNI_VERSION;

/// The network image containers join unless told otherwise.
pub const DEFAULT_NETWORK: &str = "berth";
pub const DEFAULT_BRIDGE: &str = "berth0";
pub const DEFAULT_SUBNET: &str = "10.90.0.0/16";
/// Subnets given to user networks created without one: the first free /24.
pub const AUTO_POOL: &str = "10.91.0.0/16";
/// Names a network cannot have: they are `network` option values.
pub const RESERVED: &[&str] = &["none", "host", "bridge", "default", "private"];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub subnet6: Option<Ipv6Net>,
    /// No route out and no NAT: containers reach only each other.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Microseconds since the epoch.
    #[serde(default)]
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "network name {0:?}: 1-64 characters of [a-zA-Z0-9_.-], starting with a letter or digit"
    )]
    BadName(String),
    #[error("network name {0:?} is reserved (it is a value of the network option)")]
    Reserved(String),
    #[error("subnet {0:?} is not an IPv4 network in CIDR form (e.g. 10.92.0.0/24)")]
    BadSubnet(String),
    #[error("subnet {given} has host bits set: did you mean {network}?")]
    HostBits { given: String, network: String },
    #[error("subnet {0}: prefix must be /8 to /30 (room for a gateway and containers)")]
    Prefix(String),
    #[error("IPv6 subnet {0:?} is not an IPv6 network in CIDR form with a prefix of /64 to /120")]
    BadSubnet6(String),
    #[error("gateway {gateway:?} is not a host address inside {subnet}")]
    BadGateway { gateway: String, subnet: String },
    #[error("subnet {subnet} overlaps {what}")]
    Overlap { subnet: String, what: String },
    #[error("no free /24 left in {AUTO_POOL} for a new network: give a subnet")]
    PoolExhausted,
}

pub fn check_name(name: &str) -> Result<(), NetworkError> {
    let ok = (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(NetworkError::BadName(name.chars().take(80).collect()));
    }
    if RESERVED.contains(&name) {
        return Err(NetworkError::Reserved(name.into()));
    }
    Ok(())
}

/// Parses a user's IPv4 subnet, refusing host bits and tiny prefixes.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, NetworkError> {
    let net: Ipv4Net = s.parse().map_err(|_| NetworkError::BadSubnet(s.into()))?;
    if net.trunc() != net {
        return Err(NetworkError::HostBits {
            given: s.into(),
            network: net.trunc().to_string(),
        });
    }
    if !(8..=30).contains(&net.prefix_len()) {
        return Err(NetworkError::Prefix(s.into()));
    }
    Ok(net)
}

pub fn parse_subnet6(s: &str) -> Result<Ipv6Net, NetworkError> {
    let net: Ipv6Net = s.parse().map_err(|_| NetworkError::BadSubnet6(s.into()))?;
    if net.trunc() != net || !(64..=120).contains(&net.prefix_len()) {
        return Err(NetworkError::BadSubnet6(s.into()));
    }
    Ok(net)
}

/// The gateway: `given`, checked to be a host of `subnet`, or its first host.
pub fn gateway(subnet: &Ipv4Net, given: Option<&str>) -> Result<Ipv4Addr, NetworkError> {
    let first = subnet.hosts().next().unwrap_or(subnet.network());
    let Some(g) = given else { return Ok(first) };
    let bad = || NetworkError::BadGateway {
        gateway: g.into(),
        subnet: subnet.to_string(),
    };
    let ip: Ipv4Addr = g.parse().map_err(|_| bad())?;
    if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
        return Err(bad());
    }
    Ok(ip)
}

/// Refuses `subnet` when it overlaps another network's or a route of the host.
pub fn check_free(
    subnet: &Ipv4Net,
    others: &[NetworkSpec],
    host_routes: &[Ipv4Net],
) -> Result<(), NetworkError> {
    let overlaps = |a: &Ipv4Net, b: &Ipv4Net| a.contains(&b.network()) || b.contains(&a.network());
    if let Some(o) = others.iter().find(|o| overlaps(&o.subnet, subnet)) {
        return Err(NetworkError::Overlap {
            subnet: subnet.to_string(),
            what: format!("network {:?} ({})", o.name, o.subnet),
        });
    }
    if let Some(r) = host_routes.iter().find(|r| overlaps(r, subnet)) {
        return Err(NetworkError::Overlap {
            subnet: subnet.to_string(),
            what: format!("the host's route to {r}"),
        });
    }
    Ok(())
}

/// The first /24 of the pool that overlaps nothing.
pub fn pick_subnet(
    others: &[NetworkSpec],
    host_routes: &[Ipv4Net],
) -> Result<Ipv4Net, NetworkError> {
    let pool: Ipv4Net = AUTO_POOL.parse().map_err(|_| NetworkError::PoolExhausted)?;
    pool.subnets(24)
        .map_err(|_| NetworkError::PoolExhausted)?
        .find(|s| check_free(s, others, host_routes).is_ok())
        .ok_or(NetworkError::PoolExhausted)
}

/// The host's IPv4 routes but the default one (from /proc/net/route: hex
/// little-endian destination and mask per line).
pub fn host_routes(proc_net_route: &Path) -> Vec<Ipv4Net> {
    let text = std::fs::read_to_string(proc_net_route).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let prefix = u32::from_le(mask).count_ones() as u8;
            let net = Ipv4Net::new(Ipv4Addr::from(u32::from_le(dst).to_be()), prefix).ok()?;
            (prefix > 0).then_some(net)
        })
        .collect()
}

/// The lowest `berthN` bridge name no other network uses (berth0 is the default's).
pub fn pick_bridge(others: &[NetworkSpec]) -> String {
    (1..)
        .map(|n| format!("berth{n}"))
        .find(|b| others.iter().all(|o| &o.bridge != b))
        .unwrap_or_else(|| "berth-x".into())
}

impl NetworkSpec {
    /// The CNI conflist for this network. `data_dir` holds host-local's
    /// leases. portmap is chained only for a container with `ports`: its
    /// ADD and DEL cost iptables runs even with nothing to publish. NAT out
    /// is berth's, one rule per network (masquerade.rs), not the bridge
    /// plugin's chain per container.
    pub fn conflist(&self, data_dir: &Path, ports: bool) -> Value {
        let mut ranges =
            vec![json!([{"subnet": self.subnet.to_string(), "gateway": self.gateway.to_string()}])];
        let mut routes = vec![];
        if let Some(v6) = &self.subnet6 {
            ranges.push(json!([{"subnet": v6.to_string()}]));
        }
        if !self.internal {
            routes.push(json!({"dst": "0.0.0.0/0"}));
            if self.subnet6.is_some() {
                routes.push(json!({"dst": "::/0"}));
            }
        }
        let mut plugins = vec![json!(
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": ranges,
                        "routes": routes,
                        "dataDir": data_dir,
                    }
                }
        )];
        if ports {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        json!({"cniVersion": CNI_VERSION, "name": self.name, "plugins": plugins})
    }

    /// The subnets whose traffic out is masqueraded (none if internal).
    pub fn masqueraded(&self) -> Vec<IpNet> {
        match self.internal {
            true => Vec::new(),
            false => std::iter::once(IpNet::from(self.subnet))
                .chain(self.subnet6.map(IpNet::from))
                .collect(),
        }
    }

    /// Whether `ip` is one of this network's addresses.
    pub fn holds(&self, ip: &IpAddr) -> bool {
        IpNet::from(self.subnet).contains(ip)
            || self.subnet6.is_some_and(|n| IpNet::from(n).contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> NetworkSpec {
        let subnet = parse_subnet(subnet).unwrap();
        NetworkSpec {
            name: name.into(),
            bridge: "berth0".into(),
            gateway: gateway(&subnet, None).unwrap(),
            subnet,
            subnet6: None,
            internal: false,
            labels: Default::default(),
            created_at: 0,
        }
    }

    #[test]
    fn names_and_subnets_are_checked() {
        check_name("web-net_1.x").unwrap();
        for bad in ["", "-a", "a/b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(NetworkError::BadName(_))),
                "{bad}"
            );
        }
        assert_eq!(
            check_name("host"),
            Err(NetworkError::Reserved("host".into()))
        );
        assert!(matches!(
            parse_subnet("10.1.2.3/24"),
            Err(NetworkError::HostBits { .. })
        ));
        assert!(matches!(
            parse_subnet("10.1.2.0/31"),
            Err(NetworkError::Prefix(_))
        ));
        assert!(matches!(
            parse_subnet("10.1.2.0"),
            Err(NetworkError::BadSubnet(_))
        ));
        assert!(matches!(
            parse_subnet("fd00::/64"),
            Err(NetworkError::BadSubnet(_))
        ));
        let s = parse_subnet("10.1.2.0/24").unwrap();
        assert_eq!(gateway(&s, None).unwrap().to_string(), "10.1.2.1");
        assert!(gateway(&s, Some("10.1.3.1")).is_err());
        assert!(gateway(&s, Some("10.1.2.255")).is_err());
        parse_subnet6("fd00:1::/64").unwrap();
        assert!(parse_subnet6("fd00:1::1/64").is_err());
    }

    #[test]
    fn overlaps_are_refused_and_the_pool_skips_them() {
        let others = vec![net("a", "10.91.0.0/24"), net("b", "10.91.1.0/24")];
        let s = parse_subnet("10.91.0.0/16").unwrap();
        assert!(matches!(
            check_free(&s, &others, &[]),
            Err(NetworkError::Overlap { .. })
        ));
        let routes = vec![parse_subnet("10.91.2.0/23").unwrap()];
        assert_eq!(
            pick_subnet(&others, &routes).unwrap().to_string(),
            "10.91.4.0/24"
        );
        assert_eq!(pick_bridge(&[net("x", "10.0.0.0/24")]), "berth1");
    }

    #[test]
    fn host_routes_parse_proc_net_route() {
        let dir = std::env::temp_dir().join(format!("berth-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("route");
        std::fs::write(
            &f,
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n\
eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n",
        )
        .unwrap();
        assert_eq!(
            host_routes(&f),
            vec![parse_subnet("192.168.1.0/24").unwrap()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn conflist_chains_bridge_and_portmap() {
        let c = net("a", "10.91.0.0/24").conflist(Path::new("/d"), true);
        assert_eq!(c["plugins"][0]["type"], "bridge");
        let bare = net("a", "10.91.0.0/24").conflist(Path::new("/d"), false);
        assert_eq!(bare["plugins"].as_array().unwrap().len(), 1);
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["gateway"],
            "10.91.0.1"
        );
        assert_eq!(c["plugins"][1]["capabilities"]["portMappings"], true);
    }
}
