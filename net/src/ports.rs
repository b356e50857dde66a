//! Published ports in podman's `-p` syntax:
//! `[[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`, ports or equal-length
//! ranges (`8080-8081:80-81`), an IPv6 host address in brackets, an empty
//! host port (`127.0.0.1::80`, or just `80`) meaning "any free port".

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// "" = every address of the host.
    #[serde(rename = "hostIP", default)]
    pub host_ip: String,
    /// 0 until berthd picked a free port for an empty host port.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PortError {
    #[error("port {spec:?}: {why} (want [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp])")]
    Syntax { spec: String, why: String },
    #[error("port {spec:?}: {port} is out of range 1-65535")]
    OutOfRange { spec: String, port: String },
}

impl PortMapping {
    /// Whether `self` and `other` ask for the same host port: same protocol
    /// and port, and addresses equal or one of them every address.
    pub fn clashes(&self, other: &PortMapping) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && self.host_port != 0
            && (self.host_ip == other.host_ip || any(&self.host_ip) || any(&other.host_ip))
    }
}

impl PortMapping {
    /// The host side as podman shows it: `0.0.0.0` for every address, an
    /// IPv6 one in brackets, then the port.
    pub fn host_side(&self) -> String {
        match self.host_ip.as_str() {
            "" => format!("0.0.0.0:{}", self.host_port),
            v6 if v6.contains(':') => format!("[{v6}]:{}", self.host_port),
            v4 => format!("{v4}:{}", self.host_port),
        }
    }

    /// podman's `ps` PORTS form: `0.0.0.0:8080->80/tcp`.
    pub fn published(&self) -> String {
        format!(
            "{}->{}/{}",
            self.host_side(),
            self.container_port,
            self.protocol
        )
    }
}

/// From the Ports property's rows: (host IP, host port, container port, protocol).
impl From<(String, u16, u16, String)> for PortMapping {
    fn from((host_ip, host_port, container_port, protocol): (String, u16, u16, String)) -> Self {
        PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        }
    }
}

impl std::fmt::Display for PortMapping {
    /// podman's `port` output: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} -> {}",
            self.container_port,
            self.protocol,
            self.host_side()
        )
    }
}

/// Parses one `-p` value into its mappings (several for a range).
pub fn parse(spec: &str) -> Result<Vec<PortMapping>, PortError> {
    let syntax = |why: &str| PortError::Syntax {
        spec: spec.into(),
        why: why.into(),
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p @ ("tcp" | "udp"))) => (r, p),
        Some((_, p)) => return Err(syntax(&format!("protocol {p:?} is not tcp or udp"))),
        None => (spec, "tcp"),
    };
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (host_ip, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (ip, r) = r.split_once("]:").ok_or_else(|| syntax("unclosed ["))?;
            (Some(ip), r)
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match (host_ip, parts.as_slice()) {
        (None, [c]) => ("", "", *c),
        (None, [h, c]) => ("", *h, *c),
        (None, [ip, h, c]) => (*ip, *h, *c),
        (Some(ip), [h, c]) => (ip, *h, *c),
        _ => return Err(syntax("too many ':'")),
    };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(syntax(&format!("{ip:?} is not an IP address")));
    }
    let cports = range(spec, container)?;
    let hports = match host {
        "" => vec![0; cports.len()],
        h => range(spec, h)?,
    };
    if hports.len() != cports.len() {
        return Err(syntax("host and container ranges differ in length"));
    }
    Ok(hports
        .into_iter()
        .zip(cports)
        .map(|(h, c)| PortMapping {
            host_ip: ip.into(),
            host_port: h,
            container_port: c,
            protocol: protocol.into(),
        })
        .collect())
}

fn range(spec: &str, s: &str) -> Result<Vec<u16>, PortError> {
    let port = |p: &str| -> Result<u16, PortError> {
        match p.parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(n as u16),
            Ok(_) => Err(PortError::OutOfRange {
                spec: spec.into(),
                port: p.into(),
            }),
            Err(_) => Err(PortError::Syntax {
                spec: spec.into(),
                why: format!("{p:?} is not a port number"),
            }),
        }
    };
    match s.split_once('-') {
        None => Ok(vec![port(s)?]),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(PortError::Syntax {
                    spec: spec.into(),
                    why: format!("range {a}-{b} runs backwards"),
                });
            }
            Ok((a..=b).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortMapping {
        let v = parse(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn podman_forms() {
        let m = one("8080:80");
        assert_eq!(
            (m.host_ip.as_str(), m.host_port, m.container_port),
            ("", 8080, 80)
        );
        assert_eq!(m.protocol, "tcp");
        let m = one("127.0.0.1:8080:80/udp");
        assert_eq!(
            (m.host_ip.as_str(), m.protocol.as_str()),
            ("127.0.0.1", "udp")
        );
        let m = one("80");
        assert_eq!((m.host_port, m.container_port), (0, 80));
        let m = one("127.0.0.1::80");
        assert_eq!((m.host_ip.as_str(), m.host_port), ("127.0.0.1", 0));
        let m = one("[::1]:8080:80");
        assert_eq!(m.host_ip, "::1");
        let r = parse("8080-8082:80-82").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[2].host_port, r[2].container_port), (8082, 82));
        assert_eq!(m.to_string(), "80/tcp -> [::1]:8080");
        assert_eq!(one("8080:80").published(), "0.0.0.0:8080->80/tcp");
        assert_eq!(one("8080:80").published(), "0.0.0.0:8080->80/tcp");
    }

    #[test]
    fn bad_ports_are_named() {
        assert!(matches!(
            parse("70000:80"),
            Err(PortError::OutOfRange { .. })
        ));
        assert!(matches!(parse("0:80"), Err(PortError::OutOfRange { .. })));
        for bad in [
            "",
            "a:80",
            "80/sctp",
            "1:2:3:4",
            "x.y:1:2",
            "90-80:1-11",
            "1-3:1-2",
            "[::1:8:80",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clashes_on_same_port_and_overlapping_address() {
        let a = one("8080:80");
        assert!(a.clashes(&one("127.0.0.1:8080:81")));
        assert!(!a.clashes(&one("8080:80/udp")));
        assert!(!one("127.0.0.1:8080:80").clashes(&one("127.0.0.2:8080:80")));
        assert!(!one("80").clashes(&one("80")));
    }
}
