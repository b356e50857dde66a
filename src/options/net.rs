//! CreateContainer's network options: `network` (s), `ports` (as, podman's
//! `-p` syntax), `hostname` (s), `dns`, `dns_search`, `add_hosts` (as).
//! Checked here, before anything is made; the network module turns them
//! into an attachment.

use std::net::IpAddr;

use berth_net::files::{check_dns, check_hostname, check_search, parse_add_host};
use berth_net::PortMapping;
use zbus::zvariant::OwnedValue;

use super::{check_list, typed, OptionError};
use crate::daemon::brief;

pub const KEYS: &[&str] = &[
    "network",
    "ports",
    "hostname",
    "dns",
    "dns_search",
    "add_hosts",
];

/// The `network` option.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkMode {
    /// A namespace of its own with only lo.
    None,
    /// The host's namespace.
    Host,
    /// A berth network by name (the default network is "berth").
    Named(String),
    /// Another container's namespace.
    Container(String),
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<NetworkMode, OptionError> {
        Ok(match s {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            // podman's and docker's names for the default network.
            "bridge" | "default" => NetworkMode::Named(berth_net::network::DEFAULT_NETWORK.into()),
            other => match other.strip_prefix("container:") {
                Some("") => return Err(OptionError::Network(brief(s).into())),
                Some(id) => NetworkMode::Container(id.into()),
                None => {
                    berth_net::network::check_name(other)
                        .map_err(|_| OptionError::Network(brief(s).into()))?;
                    NetworkMode::Named(other.into())
                }
            },
        })
    }

    /// As recorded and shown (`container:<id>` for a shared namespace).
    pub fn label(&self) -> String {
        match self {
            NetworkMode::None => "none".into(),
            NetworkMode::Host => "host".into(),
            NetworkMode::Named(n) => n.clone(),
            NetworkMode::Container(id) => format!("container:{id}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetOptions {
    pub network: Option<NetworkMode>,
    pub ports: Vec<PortMapping>,
    pub hostname: Option<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub add_hosts: Vec<(String, IpAddr)>,
}

impl NetOptions {
    /// Whether any network option was given (a bundle keeps its
    /// config.json's namespaces otherwise).
    pub fn any(&self) -> bool {
        self.network.is_some()
            || !self.ports.is_empty()
            || self.hostname.is_some()
            || !self.dns.is_empty()
            || !self.dns_search.is_empty()
            || !self.add_hosts.is_empty()
    }

    pub fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        let list = |value: &OwnedValue| -> Result<Vec<String>, OptionError> {
            let l: Vec<String> = typed(key, value, "as")?;
            check_list(key, &l)?;
            Ok(l)
        };
        match key {
            "network" => {
                let s: String = typed(key, value, "s")?;
                self.network = Some(NetworkMode::parse(&s)?);
            }
            "ports" => {
                let mut ports = Vec::new();
                for p in list(value)? {
                    ports.extend(berth_net::ports::parse(&p).map_err(OptionError::Port)?);
                }
                self.ports = ports;
            }
            "hostname" => {
                let h: String = typed(key, value, "s")?;
                check_hostname(&h).map_err(OptionError::NetFile)?;
                self.hostname = Some(h);
            }
            "dns" => {
                let l = list(value)?;
                l.iter()
                    .try_for_each(|d| check_dns(d))
                    .map_err(OptionError::NetFile)?;
                self.dns = l;
            }
            "dns_search" => {
                let l = list(value)?;
                l.iter()
                    .try_for_each(|d| check_search(d))
                    .map_err(OptionError::NetFile)?;
                self.dns_search = l;
            }
            "add_hosts" => {
                let l = list(value)?;
                self.add_hosts = l
                    .iter()
                    .map(|h| parse_add_host(h))
                    .collect::<Result<_, _>>()
                    .map_err(OptionError::NetFile)?;
            }
            _ => return Err(OptionError::Unknown(brief(key).into())),
        }
        Ok(())
    }

    /// Options that contradict each other, refused before anything is made.
    pub fn check(&self) -> Result<(), OptionError> {
        match &self.network {
            Some(m @ (NetworkMode::None | NetworkMode::Host | NetworkMode::Container(_)))
                if !self.ports.is_empty() =>
            {
                Err(OptionError::Conflict(format!(
                    "ports need a berth network to publish from; network {} has none",
                    m.label()
                )))
            }
            Some(NetworkMode::Container(_))
                if !self.dns.is_empty()
                    || !self.dns_search.is_empty()
                    || !self.add_hosts.is_empty() =>
            {
                Err(OptionError::Conflict(
                    "dns, dns_search and add_hosts come from the container whose network is joined"
                        .into(),
                ))
            }
            _ => Ok(()),
        }
    }
}
